"""Wires the signer's layers together from settings; one instance per process.

The HSM is connected lazily and re-tried on every use while it is down, so
the service starts (and answers /healthz, and 503s with a reason) even
when the HSM is unreachable, and recovers by itself when it comes back.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import BinaryIO

from signet.common.contracts.signer import SignOptions
from signet.common.errors import InvalidRequest
from signet.common.notify import Channel, Transport
from signet.common.notify.sms import SmsGateway
from signet.common.notify.smtp import SmtpTransport
from signet.hsm import Hsm, HsmConfig, HsmUnavailable, load_pin
from signet.signer import metrics
from signet.signer.activation.outbox import Outbox
from signet.signer.activation.service import ActivationService, load_pepper
from signet.signer.activation.store import ActivationStore
from signet.signer.batch.guard import BatchStoreGuard
from signet.signer.batch.store import BatchStore
from signet.signer.config import SignerSettings
from signet.signer.database import open_registry
from signet.signer.pades.engine import LocalTimeStamper, PadesEngine
from signet.signer.pki.ca import CaSettings, CertificateAuthority, Issued, serial_hex
from signet.signer.pki.ocsp import OcspResponder
from signet.signer.pki.rotation import TsaWatch, forget_tsa, rotate_tsa
from signet.signer.pki.timesource import ReferenceWatch, TimeGuard, TimeJournal, TimeTrust
from signet.signer.pki.tsa import SerialAllocator, TimeStampAuthority, TsaIdentity
from signet.signer.registry import Registry


@dataclass(frozen=True)
class DocumentSigned:
    issued: Issued
    #: the holder's activation that allowed it (person and event keys, a seal's
    #: approval of this document), else None
    activation_id: str | None
    #: the standing seal-use authorisation it was made under, if any
    seal_authorisation: str | None = None


class SignerService:
    def __init__(self, settings: SignerSettings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._hsm: Hsm | None = None
        self._ca: CertificateAuthority | None = None
        self._tsa: TimeStampAuthority | None = None
        self._engine: PadesEngine | None = None

    @cached_property
    def registry(self) -> Registry:
        self.settings.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        return open_registry(self.settings.resolved_database_url())

    @property
    def hsm(self) -> Hsm:
        with self._lock:
            if self._hsm is None:
                with metrics.hsm_operation("connect"):
                    try:
                        pin = self.settings.hsm_pin or load_pin(pin_file=self.settings.hsm_pin_file)
                    except (OSError, ValueError) as exc:
                        raise HsmUnavailable(f"no usable HSM PIN: {exc}") from exc
                    self._hsm = Hsm(
                        HsmConfig(
                            self.settings.hsm_module,
                            self.settings.hsm_token_label,
                            pin,
                            self.settings.hsm_pool_size,
                        )
                    )
            return self._hsm

    @property
    def ca(self) -> CertificateAuthority:
        if self._ca is None:
            self._ca = CertificateAuthority(
                self.hsm,
                self.registry,
                CaSettings(
                    public_url=self.settings.public_url,
                    organization=self.settings.organization,
                    tsa_validity=timedelta(seconds=self.settings.tsa_validity_s),
                ),
            )
        return self._ca

    @cached_property
    def references(self) -> ReferenceWatch | None:
        """The NTP references' watch (started here), or None when none are named."""
        if not self.settings.time_references:
            return None
        watch = ReferenceWatch(
            self.settings.time_references, interval_s=self.settings.time_reference_interval_s
        )
        watch.start()
        return watch

    @cached_property
    def time(self) -> TimeGuard:
        """The TSA's time check (no HSM needed: readiness reports it even while that is down)."""
        settings = self.settings
        return TimeGuard(
            TimeTrust(settings.time_trust),
            settings.tsa_accuracy_ms,
            references=self.references,
            reference_expiry_s=settings.time_reference_expiry_s,
            interval_s=settings.time_check_interval_s,
            record=self.time_journal.record,
        )

    @cached_property
    def time_journal(self) -> TimeJournal:
        """Where the time check's verdicts are kept (the registry, opened when first used)."""
        return TimeJournal(lambda: self.registry)

    @cached_property
    def tsa_watch(self) -> TsaWatch:
        return TsaWatch(self.registry)

    @property
    def tsa(self) -> TimeStampAuthority:
        """The built-in TSA with the current TSA key; after a rollover (this process or
        another: `signet ca rotate-tsa`) the next stamp uses the new key."""
        if self._tsa is not None and self.tsa_watch.rotated(
            serial_hex(self._tsa.identity.certificate.serial_number)
        ):
            forget_tsa(self.ca)
            self._tsa = None
        if self._tsa is None:
            tsa = self.ca.tsa
            self._tsa = TimeStampAuthority(
                TsaIdentity(tsa.certificate, tsa.key, (tsa.certificate, *self.ca.chain())),
                SerialAllocator(self.registry),
                accuracy_ms=self.settings.tsa_accuracy_ms,
                time=self.time,
            )
        return self._tsa

    def rotate_tsa(self, validity: timedelta | None = None) -> Issued:
        """Roll the TSA key over (`signet.signer.pki.rotation`); this process stamps with
        the new key from its next stamp on."""
        issued = rotate_tsa(self.ca, validity=validity)
        self._tsa = None
        return issued

    @property
    def batch_directory(self) -> Path:
        """In a cluster, the volume the operator claims for batches (never the pod's own
        disk: a restart would lose every batch's documents)."""
        return self.settings.batch_directory or self.settings.home / "batches"

    @cached_property
    def batches(self) -> BatchStore:
        return BatchStore(self.registry, self.batch_directory)

    @cached_property
    def batch_store(self) -> BatchStoreGuard:
        """Whether `batch_directory` is the one the database's batches were written to;
        batch work and the batch API wait on it (`signet.signer.batch.guard`)."""
        return BatchStoreGuard(self.registry, self.batch_directory)

    @cached_property
    def ocsp(self) -> OcspResponder:
        return OcspResponder(self.ca)

    @property
    def engine(self) -> PadesEngine:
        tsa = self.tsa
        stamper = self._engine.timestamper if self._engine is not None else None
        if isinstance(stamper, LocalTimeStamper) and stamper.tsa is not tsa:
            self._engine = None  # rolled over: a new engine stamps with the new key
        if self._engine is None:
            self._engine = PadesEngine.create(
                self.ca,
                tsa,
                self.settings.external_tsa_url,
                self.settings.timestamp_authorities,
            )
        return self._engine

    @cached_property
    def activations(self) -> ActivationService:
        settings = self.settings
        found: dict[Channel, Transport] = {}
        if settings.smtp is not None:
            found[Channel.EMAIL] = SmtpTransport(settings.smtp)
        if settings.sms is not None:
            found[Channel.SMS] = SmsGateway(settings.sms)
        configured = settings.activation_pepper
        pepper = load_pepper(configured.get_secret_value() if configured else None, settings.home)
        return ActivationService(
            ActivationStore(self.registry, pepper), Outbox(self.registry, found), lambda: self.ca
        )

    def material(self, options: SignOptions) -> Issued:
        ca = self.ca
        if options.certificate_serial:
            return ca.signing_material(options.certificate_serial)
        return ca.signing_material_for_key(options.key_label or "")

    def sign_document(
        self,
        document: BinaryIO,
        output: BinaryIO,
        options: SignOptions,
        image: bytes | None = None,
        *,
        caller: str | None = None,
    ) -> DocumentSigned:
        """Sign one document, with the holder's activation when the key needs one, or
        under a standing seal-use authorisation naming `caller`.

        The activation is checked before any signing work; the document's SHA-256 is
        read from its spool in 1 MiB chunks (never into memory whole)."""
        issued = self.material(options)
        record = issued.record
        if not self.activations.needs_activation(record):
            if options.seal_authorisation is not None:
                raise InvalidRequest(
                    "seal_authorisation is for a seal whose keeper is enrolled; this key "
                    "signs on the caller's token"
                )
            self.engine.sign_stream(document, output, issued, options, image)
            return DocumentSigned(issued, None)
        if options.seal_authorisation is not None and options.activation is None:
            seals = self.activations.seals
            used = seals.use(options.seal_authorisation, record, caller, 1)
            try:
                self.engine.sign_stream(document, output, issued, options, image)
            except BaseException:
                seals.give_back(used.id, 1)
                raise
            return DocumentSigned(issued, None, used.id)
        start = document.tell()
        digest = hashlib.sha256()
        while chunk := document.read(1024 * 1024):
            digest.update(chunk)
        document.seek(start)
        sha256 = digest.hexdigest()
        activation = self.activations.authorise(record, options.activation, sha256)
        try:
            self.engine.sign_stream(document, output, issued, options, image)
        except BaseException:
            self.activations.failed(activation, sha256)
            raise
        self.activations.signed(record, activation.activation_id, sha256)
        return DocumentSigned(issued, activation.activation_id)

    def check_ready(self) -> None:
        """Raise unless the HSM answers and the CA is initialised."""
        hsm = self.hsm
        with metrics.hsm_operation("ping"):
            hsm.ping()
        self.ca.root  # noqa: B018 - raises ServiceUnavailable when not initialised

    def close(self) -> None:
        if "references" in self.__dict__ and self.references is not None:
            self.references.stop()
        if self._hsm is not None:
            self._hsm.close()
