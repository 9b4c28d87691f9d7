"""Wires the storage service from settings; one instance per process.

The vault is opened lazily and retried while it is down, so the service
starts, answers /healthz and reports *why* it is not ready (an unreachable
object store, a bucket without Object Lock) instead of crash-looping.

Tree-head publication is a one-at-a-time duty: with `lease_name` set (the
operator's replicas) only the replica holding that Kubernetes Lease publishes
(`signet.storage.lease`); without it (the embedded default) this one process
does, and the Kubernetes client is never loaded.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from signet.common.contracts.preservation import PreservationRole
from signet.common.contracts.storage import PublisherRole, StorageReadiness
from signet.common.errors import ServiceUnavailable, SignetError
from signet.common.policies import PolicyDirectory
from signet.storage import metrics
from signet.storage.config import StorageSettings
from signet.storage.fs_vault import FilesystemVault
from signet.storage.ledger import Ledger
from signet.storage.preservation_runner import PreservationRunner
from signet.storage.s3_vault import S3Vault
from signet.storage.signer_client import SignerClient
from signet.storage.vault import Vault

if TYPE_CHECKING:
    from signet.storage.lease import LeaseElector

log = logging.getLogger(__name__)


class StorageService:
    def __init__(self, settings: StorageSettings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._vault: Vault | None = None
        self._ledger: Ledger | None = None
        self._signer: SignerClient | None = None
        self._publisher: threading.Thread | None = None
        self._elector: LeaseElector | None = None
        #: Why the Lease could not be set up (then this replica never publishes).
        self._lease_problem: str | None = None
        self._elector_started = False
        self._stop = threading.Event()
        self.policies = PolicyDirectory(settings.policy_dir)
        #: The preservation job, run by the same replica that publishes (one Lease).
        self.preservation = PreservationRunner(self, self.lease_role)
        # Read at scrape time (one process: the ledger has one writer, see `signet up`).
        metrics.LEDGER_SIZE.set_function(self._ledger_size)
        metrics.TREE_HEAD_SIZE.set_function(self._tree_head_size)

    def _ledger_size(self) -> float:
        return float(self._ledger.size) if self._ledger is not None else 0.0

    def _tree_head_size(self) -> float:
        head = self._ledger.latest_head() if self._ledger is not None else None
        return float(head.tree_size) if head is not None else 0.0

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
                token = self.settings.signer_token_value()
                if token is None:
                    raise ServiceUnavailable("no token to reach the signer")
                self._signer = SignerClient(
                    self.settings.signer_url,
                    token,
                    key_label=self.settings.ledger_key_label,
                )
            return self._signer

    def readiness(self) -> StorageReadiness:
        """What the operator reads: the vault's kind, its Object Lock mode and retention.

        A standby replica is as ready as the leader: it serves every request, only
        the tree-head publication waits for the Lease.
        """
        status = self.vault.status()
        policies = self.policies.current()
        ledger = self.ledger
        head = ledger.latest_head()
        size = ledger.size  # read once: the log may grow meanwhile
        covered = head.tree_size if head else 0
        return StorageReadiness(
            tree_head_size=head.tree_size if head else None,
            tree_head_time=head.time if head else None,
            unsigned_since=ledger.appended_at(covered) if size > covered else None,
            policies=policies.versions(),
            policy_problems=sorted(policies.problems.values()),
            status="ready",
            vault=status.backend,
            object_lock=status.object_lock,
            retention_years=status.retention_years,
            # What this process runs with, which the operator judges against (during a
            # rollout, or while the Appliance's spec is refused, not what the spec asks).
            configured_retention_years=self.settings.retention_years,
            tree_head_interval_seconds=self.settings.tree_head_interval,
            ledger_size=size,
            tree_head_publisher=self.publisher_role(),
            tree_head_publisher_problem=self._lease_problem,
            preservation=self.preservation.status(),
        )

    def publisher_role(self) -> PublisherRole | None:
        """`single` (no Lease), `leader` or `standby`, or `unavailable` when the Lease could
        not be set up (this replica then never publishes); None while no publisher runs."""
        if self._publisher is None:
            return None
        if not self.settings.lease_name:
            return "single"
        if self._elector is None:
            return "unavailable"
        return "leader" if self._elector.is_leader() else "standby"

    def lease_role(self) -> PreservationRole:
        """This replica's part in the singleton duties: `single` (no Lease), `leader`,
        `standby`, or `unavailable` (the Lease could not be set up)."""
        if not self.settings.lease_name:
            return "single"
        if self._elector is None:
            return "unavailable"
        return "leader" if self._elector.is_leader() else "standby"

    def _ensure_elector(self) -> None:
        """Become a candidate for the Lease once (with `lease_name`)."""
        lease = self.settings.lease_name
        if lease and not self._elector_started:
            self._elector_started = True
            self._elector = self._start_elector(lease)

    def start_preservation(self) -> None:
        """The periodic preservation passes (`signet.storage.preservation_runner`); the
        Lease too, so that a pass asked for by hand knows whether this replica leads."""
        self._ensure_elector()
        self.preservation.start()

    def start_publisher(self) -> None:
        """Sign a tree head every `tree_head_interval` seconds while the log grows.

        The first one at once, and again at once whenever this replica becomes the
        leader: after a restart or a take-over, entries appended before it may already
        have waited an interval, and waiting another (plus the Lease) would report them
        Stale for nothing.  (`_publish_tree_head` signs only when entries are uncovered.)

        With `lease_name`, only while this replica leads (asked at every tick, right
        before publishing; a standby asks every `lease_retry_period`): a replica that
        cannot renew its Lease stops publishing before another may take the Lease over.
        A publication that outlives the Lease by a moment is harmless: the vault keeps
        one head per tree size.
        """
        interval = self.settings.tree_head_interval
        if interval <= 0 or self._publisher is not None:
            return
        lease = self.settings.lease_name
        self._ensure_elector()
        poll = min(interval, self.settings.lease_retry_period) if lease else interval

        def loop() -> None:
            leading = False
            due = time.monotonic()  # at once
            while not self._stop.is_set():
                if lease:
                    now_leading = self._elector is not None and self._elector.is_leader()
                    if now_leading and not leading:
                        due = time.monotonic()  # just took over: cover what waits at once
                    leading = now_leading
                if leading or not lease:
                    if time.monotonic() >= due:
                        self._publish_tree_head()
                        due = time.monotonic() + interval
                    self._stop.wait(max(0.0, min(poll, due - time.monotonic())))
                else:
                    self._stop.wait(poll)

        self._publisher = threading.Thread(target=loop, name="tree-head-publisher", daemon=True)
        self._publisher.start()

    def _publish_tree_head(self) -> None:
        try:
            ledger = self.ledger
            latest = ledger.latest_head()
            if ledger.size and (latest is None or latest.tree_size != ledger.size):
                ledger.publish_head(self.signer)
                metrics.TREE_HEADS.labels("ok").inc()
        except SignetError as exc:
            metrics.TREE_HEADS.labels(exc.code).inc()
            log.warning("tree head not published: %s", exc.detail)

    def _start_elector(self, lease_name: str) -> LeaseElector | None:
        """The Lease candidate; None when it cannot be set up: logged, and reported by
        readiness as the `unavailable` role with the reason (never as a standby, which
        would look like a healthy replica waiting its turn)."""
        # Imported here: the embedded default, without a Lease, never loads the Kubernetes client.
        from signet.storage.lease import (
            LeaseElector,
            LeaseTiming,
            coordination_api,
            current_namespace,
        )

        settings = self.settings
        try:
            namespace = current_namespace(settings.lease_namespace)
            api = coordination_api(settings.kube_api_url)
        except Exception as exc:  # no namespace, no in-cluster config, no kubeconfig
            self._lease_problem = f"Lease {lease_name} unusable: {exc}"[:500]
            log.error("tree heads will not be published by this replica: %s", self._lease_problem)
            return None
        elector = LeaseElector(
            api,
            name=lease_name,
            namespace=namespace,
            timing=LeaseTiming(
                lease_duration=settings.lease_duration,
                renew_deadline=settings.lease_renew_deadline,
                retry_period=settings.lease_retry_period,
            ),
        )
        elector.start()
        return elector

    def close(self) -> None:
        self._stop.set()
        self.preservation.close(timeout=self.settings.lease_renew_deadline)
        if self._elector is not None:
            # Release the Lease only once our publisher has stopped: otherwise let it expire.
            publisher = self._publisher
            if publisher is not None:
                publisher.join(timeout=self.settings.lease_renew_deadline)
            self._elector.stop(release=publisher is None or not publisher.is_alive())
        if self._ledger is not None:
            self._ledger.close()
        if self._signer is not None:
            self._signer.close()
