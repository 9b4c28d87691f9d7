"""Wires the storage service from settings; one instance per process.

The vault is opened lazily and retried while it is down, so the service
starts, answers /healthz and reports *why* it is not ready (an unreachable
object store, a bucket without Object Lock) instead of crash-looping.
"""

from __future__ import annotations

import logging
import threading

from signet.common.contracts.storage import StorageReadiness
from signet.common.errors import ServiceUnavailable, SignetError
from signet.storage.config import StorageSettings
from signet.storage.fs_vault import FilesystemVault
from signet.storage.ledger import Ledger
from signet.storage.s3_vault import S3Vault
from signet.storage.signer_client import SignerClient
from signet.storage.vault import Vault

log = logging.getLogger(__name__)


class StorageService:
    def __init__(self, settings: StorageSettings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._vault: Vault | None = None
        self._ledger: Ledger | None = None
        self._signer: SignerClient | None = None
        self._publisher: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def vault(self) -> Vault:
        with self._lock:
            if self._vault is None:
                self._vault = self._open_vault()
            return self._vault

    def _open_vault(self) -> Vault:
        settings = self.settings
        if settings.vault == "filesystem":
            return FilesystemVault(
                settings.vault_path or settings.home / "vault", settings.retention_years
            )
        try:
            access = settings.secret(
                settings.s3_access_key, settings.s3_access_key_file, "S3 access key"
            )
            secret = settings.secret(
                settings.s3_secret_key, settings.s3_secret_key_file, "S3 secret key"
            )
        except (OSError, ValueError) as exc:
            raise ServiceUnavailable(f"object store credentials: {exc}") from exc
        return S3Vault(
            endpoint=settings.s3_endpoint,
            access_key=access,
            secret_key=secret,
            bucket=settings.s3_bucket,
            retention_years=settings.retention_years,
            secure=settings.s3_secure,
            staging=settings.home / "staging",
        )

    @property
    def ledger(self) -> Ledger:
        vault = self.vault
        with self._lock:
            if self._ledger is None:
                self._ledger = Ledger(vault, log_id=self.settings.log_id)
            return self._ledger

    @property
    def signer(self) -> SignerClient:
        with self._lock:
            if self._signer is None:
                token = self.settings.service_token
                if token is None:
                    raise ServiceUnavailable("no service token to reach the signer")
                self._signer = SignerClient(
                    self.settings.signer_url,
                    token.get_secret_value(),
                    key_label=self.settings.ledger_key_label,
                )
            return self._signer

    def readiness(self) -> StorageReadiness:
        """What the operator reads: the vault's kind, its Object Lock mode and retention."""
        status = self.vault.status()
        return StorageReadiness(
            status="ready",
            vault=status.backend,
            object_lock=status.object_lock,
            retention_years=status.retention_years,
            ledger_size=self.ledger.size,
        )

    def start_publisher(self) -> None:
        """Sign a tree head every `tree_head_interval` seconds while the log grows.

        A one-at-a-time duty: in a cluster only the replica holding the Lease runs it
        (operator issue); the embedded default has one process.
        """
        interval = self.settings.tree_head_interval
        if interval <= 0 or self._publisher is not None:
            return

        def loop() -> None:
            while not self._stop.wait(interval):
                try:
                    ledger = self.ledger
                    latest = ledger.latest_head()
                    if ledger.size and (latest is None or latest.tree_size != ledger.size):
                        ledger.publish_head(self.signer)
                except SignetError as exc:
                    log.warning("tree head not published: %s", exc.detail)

        self._publisher = threading.Thread(target=loop, name="tree-head-publisher", daemon=True)
        self._publisher.start()

    def close(self) -> None:
        self._stop.set()
        if self._ledger is not None:
            self._ledger.close()
        if self._signer is not None:
            self._signer.close()
