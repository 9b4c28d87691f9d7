"""The internal CA: the key ceremony, what is issued to whom, revocation.

Hierarchy: a root CA, one issuing CA, and the TSA certificate issued by the
issuing CA.  Signer certificates (person, seal, event) are issued by the
issuing CA and carry the URLs of our CRL and OCSP responder, so validators
inside the company network can check their status without the internet.
All private keys live in the HSM; certificates and revocations in `Registry`.
How keys and certificates are made is `signet.signer.pki.issuance`, what each kind
carries `signet.signer.pki.profiles`, their names `signet.signer.pki.names`; what the CA
hands out (`Issued`, the API's view of a record) is `signet.signer.pki.issued`.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

from asn1crypto import crl as asn1_crl
from asn1crypto import x509
from signet.common.contracts.signer import (
    LEDGER_SEAL_EKU,
    CertificateInfo,
    CertificateKind,
    IssueCertificateRequest,
    KeyPurpose,
    RevocationReason,
    SubjectIdentity,
)
from signet.common.errors import Conflict, InvalidRequest, NotFound, ServiceUnavailable
from signet.hsm import Hsm, KeyAlgorithm, KeyNotFound
from signet.signer import metrics
from signet.signer.pki.issuance import CaSettings, Issuer
from signet.signer.pki.issued import Issued, certificate_info, fingerprint, now, serial_hex
from signet.signer.pki.keys import HsmKey
from signet.signer.pki.names import ca_name, installation_of, new_installation_id, subject_name
from signet.signer.pki.profiles import has_eku
from signet.signer.pki.x509 import build_crl
from signet.signer.registry import CertificateRecord, Registry

__all__ = [
    "ISSUING_LABEL",
    "MATERIAL_TTL",
    "ROOT_LABEL",
    "TSA_LABEL",
    "CaSettings",
    "CertificateAuthority",
    "Issued",
    "fingerprint",
    "now",
    "serial_hex",
]

ROOT_LABEL, ISSUING_LABEL, TSA_LABEL = "signet-root-ca", "signet-issuing-ca", "signet-tsa"
#: The purpose a key must have for each kind of certificate the API can ask for.
_PURPOSE_OF_KIND = {
    CertificateKind.PERSON: KeyPurpose.PERSON,
    CertificateKind.SEAL: KeyPurpose.SEAL,
    CertificateKind.EVENT: KeyPurpose.EVENT,
}
#: Keys that sign documents; a CA, TSA or ledger key never does.
DOCUMENT_PURPOSES = (KeyPurpose.SEAL, KeyPurpose.PERSON, KeyPurpose.EVENT)


#: Seconds a seal's or person's certificate status is reused between database reads.
MATERIAL_TTL = 2.0


class CertificateAuthority(Issuer):
    """The CA's policy over `Issuer`'s mechanics: the ceremony and hierarchy, what may be
    issued to whom, which material may sign, revocation and its CRLs."""

    def __init__(self, hsm: Hsm, registry: Registry, settings: CaSettings) -> None:
        super().__init__(hsm, registry, settings)
        self._lock = threading.Lock()
        self._cache: dict[CertificateKind, Issued] = {}
        self._crls: dict[str, tuple[datetime, bytes]] = {}
        #: serial -> (monotonic time read, material) for long-term keys; see signing_material
        self._material: dict[str, tuple[float, Issued]] = {}

    # -- the ceremony ---------------------------------------------------------------------

    def is_initialised(self) -> bool:
        return all(
            self.registry.latest(k)
            for k in (CertificateKind.ROOT, CertificateKind.ISSUING, CertificateKind.TSA)
        )

    def ceremony(
        self, algorithm: KeyAlgorithm = KeyAlgorithm.EC_P256, *, force: bool = False
    ) -> list[Issued]:
        """Create root CA, issuing CA and TSA keys in the HSM and their certificates.

        Idempotent: when everything exists it only returns it.  It refuses to
        replace existing keys unless `force` is given (which invalidates every
        certificate issued so far — a new trust anchor must be distributed).
        """
        if self.is_initialised() and not force:
            return [self.root, self.issuing, self.tsa]
        existing = [
            label for label in (ROOT_LABEL, ISSUING_LABEL, TSA_LABEL) if self._key_exists(label)
        ]
        if existing and not force:
            raise Conflict(
                f"HSM already holds {', '.join(existing)} but the CA is incomplete; "
                "rerun with force to replace these keys"
            )
        for label in existing:
            self.hsm.destroy_key(label)
        self._cache.clear()
        self._crls.clear()
        # a new hierarchy is a new installation to validators: never the old one's names
        installation = new_installation_id()
        root_key = self._new_key(ROOT_LABEL, algorithm, KeyPurpose.ROOT)
        root_name = self._named("Root CA", installation)
        root = self._issue(CertificateKind.ROOT, root_name, root_key, None)
        issuing_key = self._new_key(ISSUING_LABEL, algorithm, KeyPurpose.ISSUING)
        issuing_name = self._named("Issuing CA 1", installation)
        issuing = self._issue(CertificateKind.ISSUING, issuing_name, issuing_key, root)
        tsa_key = self._new_key(TSA_LABEL, algorithm, KeyPurpose.TSA)
        tsa = self._issue(
            CertificateKind.TSA,
            self._named("Time-Stamping Authority", installation),
            tsa_key,
            issuing,
            validity=self.settings.tsa_validity,
        )
        return [root, issuing, tsa]

    # -- the hierarchy ------------------------------------------------------------------------

    @property
    def root(self) -> Issued:
        return self._current(CertificateKind.ROOT, ROOT_LABEL)

    @property
    def issuing(self) -> Issued:
        return self._current(CertificateKind.ISSUING, ISSUING_LABEL)

    @property
    def tsa(self) -> Issued:
        return self._current(CertificateKind.TSA, TSA_LABEL)

    def chain(self) -> list[x509.Certificate]:
        """Issuing CA and root, in that order (what a signature embeds after its signer)."""
        return [self.issuing.certificate, self.root.certificate]

    def _current(self, kind: CertificateKind, label: str) -> Issued:
        cached = self._cache.get(kind)
        if cached is None:
            record = self.registry.latest(kind)
            if record is None:
                raise ServiceUnavailable("the CA is not initialised: run `signet ca init`")
            # the record's own label: a rolled-over TSA key is not the ceremony's `label`
            key = HsmKey.lookup(self.hsm, record.key_label or label)
            cached = Issued(x509.Certificate.load(record.der), key, record)
            self._cache[kind] = cached
        return cached

    # -- issuance ---------------------------------------------------------------------------

    def issue(self, request: IssueCertificateRequest) -> Issued:
        kind = CertificateKind(request.kind)
        purpose = _PURPOSE_OF_KIND[kind]
        algorithm = KeyAlgorithm(request.key_algorithm.value)
        if request.key_label is not None:
            # before the HSM is asked: a CA, TSA or ledger label is refused, found or not
            self.purposes.claim(request.key_label, purpose)
            try:
                key = HsmKey.lookup(self.hsm, request.key_label)
            except KeyNotFound as exc:
                raise NotFound(f"no HSM key labelled {request.key_label!r}") from exc
        else:
            label = f"signet-{kind.value}-{uuid.uuid4().hex[:20]}"
            key = self._new_key(label, algorithm, purpose)
        subject = request.subject
        validity = timedelta(days=request.validity_days) if request.validity_days else None
        verification = (
            request.identity_verification.model_dump(mode="json")
            if request.identity_verification
            else None
        )
        return self._issue(
            kind,
            subject_name(subject),
            key,
            self.issuing,
            email=subject.email,
            validity=validity,
            verification=verification,
            contact=request.contact if kind is CertificateKind.EVENT else None,
        )

    def revoke(self, serial: str, reason: RevocationReason) -> CertificateRecord:
        record = self.registry.get(serial)
        if record is None:
            raise NotFound(f"no certificate with serial {serial}")
        if record.kind in (CertificateKind.ROOT, CertificateKind.ISSUING):
            raise InvalidRequest("CA certificates are replaced by a new ceremony, not revoked")
        if not self.registry.revoke(serial, reason.value, now()):
            raise Conflict(f"certificate {serial} is already revoked")
        metrics.CERTIFICATES_REVOKED.inc()
        with self._lock:
            self._crls.clear()
            self._material.pop(serial, None)
        revoked = self.registry.get(serial)
        assert revoked is not None
        return revoked

    def signing_material(self, serial: str) -> Issued:
        """The certificate and key for a signature, refusing revoked, expired or spent ones.

        Seal and person material is reused for `MATERIAL_TTL` seconds: a database read
        per signature costs more than the signature.  A revocation made through this
        process takes effect at once; one made through another worker process within
        `MATERIAL_TTL`.  Event certificates are never cached: their single use is
        checked against the database every time.
        """
        cached = self._material.get(serial)
        if cached is not None:
            read_at, issued = cached
            if time.monotonic() - read_at < MATERIAL_TTL and (
                issued.record.not_after > datetime.now(UTC)
            ):
                return issued
        issued = self._load_material(serial)
        if issued.record.kind != CertificateKind.EVENT:
            with self._lock:
                if len(self._material) > 4096:
                    self._material.clear()
                self._material[serial] = (time.monotonic(), issued)
        return issued

    def _load_material(self, serial: str, *purposes: KeyPurpose) -> Issued:
        record = self.registry.get(serial)
        if record is None or record.kind not in (
            CertificateKind.PERSON,
            CertificateKind.SEAL,
            CertificateKind.EVENT,
        ):
            raise NotFound(f"no signing certificate with serial {serial}")
        if record.revoked_at is not None:
            raise Conflict(f"certificate {serial} was revoked on {record.revoked_at:%Y-%m-%d}")
        if record.key_destroyed_at is not None:
            raise Conflict(f"certificate {serial} was an event certificate and is already used")
        if not record.not_before <= datetime.now(UTC) <= record.not_after:
            raise Conflict(f"certificate {serial} is not valid now (expired or not yet valid)")
        self.purposes.require(record.key_label, *(purposes or DOCUMENT_PURPOSES))
        key = HsmKey.lookup(self.hsm, record.key_label)
        return Issued(x509.Certificate.load(record.der), key, record)

    def signing_material_for_key(self, key_label: str) -> Issued:
        record = self.registry.latest_for_key(key_label)
        if record is None:
            raise NotFound(f"no certificate for HSM key {key_label!r}")
        return self.signing_material(record.serial)

    def ensure_seal(self, label: str, common_name: str) -> Issued:
        """The current certificate of the seal key `label`; key and certificate are made on
        first use, and a new certificate when the last one was revoked or expired."""
        record = self.registry.latest_for_key(label)
        if record is not None and record.revoked_at is None and record.not_after > now():
            return self.signing_material(record.serial)
        if not self._key_exists(label):
            self._new_key(label, KeyAlgorithm.EC_P256, KeyPurpose.SEAL)
        return self.issue(
            IssueCertificateRequest(
                kind=CertificateKind.SEAL,
                key_label=label,
                subject=SubjectIdentity(
                    common_name=common_name, organization=self.settings.organization
                ),
            )
        )

    def ensure_ledger_seal(self, label: str, common_name: str = "Evidence Ledger") -> Issued:
        """The evidence ledger's seal: a key of its own purpose whose certificate carries
        the ledger EKU and policy (`LEDGER_SEAL_EKU`), which `verify-evidence` pins.

        Made on first use; a new certificate when the last one was revoked, expired, or
        made before the ledger had its own profile (an upgraded installation)."""
        if not self._key_exists(label):
            self._new_key(label, KeyAlgorithm.EC_P256, KeyPurpose.LEDGER_SEAL)
        self.purposes.claim(label, KeyPurpose.LEDGER_SEAL)
        record = self.registry.latest_for_key(label)
        if (
            record is not None
            and record.revoked_at is None
            and record.not_after > now()
            and has_eku(x509.Certificate.load(record.der), LEDGER_SEAL_EKU)
        ):
            return self.digest_material(label)
        key = HsmKey.lookup(self.hsm, label)
        subject = x509.Name.build(
            {"common_name": f"{self.settings.organization} {common_name}"[:64],
             "organization_name": self.settings.organization}
        )  # fmt: skip
        issued = self._issue(CertificateKind.SEAL, subject, key, self.issuing, ledger=True)
        return self.digest_material(label, issued.record.serial)

    def digest_material(self, key_label: str, serial: str | None = None) -> Issued:
        """The ledger seal's current certificate and key, for raw digests only."""
        self.purposes.require(key_label, KeyPurpose.LEDGER_SEAL)
        if serial is None:
            record = self.registry.latest_for_key(key_label)
            if record is None:
                raise NotFound(f"no certificate for HSM key {key_label!r}")
            serial = record.serial
        return self._load_material(serial, KeyPurpose.LEDGER_SEAL)

    def spend_event_key(self, record: CertificateRecord) -> None:
        """Destroy an event key when its event is over (sole control ends with it): its
        activation signed every document it named, or expired.  A key already gone
        (a sweep that ran twice) is recorded as destroyed all the same."""
        if record.kind == CertificateKind.EVENT and record.key_destroyed_at is None:
            with metrics.hsm_operation("destroy_key"), contextlib.suppress(KeyNotFound):
                self.hsm.destroy_key(record.key_label)
            self.registry.mark_key_destroyed(record.serial, now())

    # -- revocation data ------------------------------------------------------------------

    def crl(self, which: str = "issuing") -> bytes:
        """DER CRL of the issuing CA (signer, TSA certificates) or the root (issuing CA).

        Cached until a revocation happens or an hour passes; valid for a day.
        """
        with self._lock:
            cached = self._crls.get(which)
            if cached and cached[0] > datetime.now(UTC):
                return cached[1]
            issuer = self.issuing if which == "issuing" else self.root
            issued_at = now()
            entries = [
                (int(r.serial, 16), r.revoked_at or issued_at, r.revocation_reason)
                for r in self.registry.revoked_by(issuer.record.serial)
            ]
            number = self.registry.reserve(f"crl-{which}", 1, floor=int(issued_at.timestamp()))
            der: bytes = build_crl(
                issuer=issuer.certificate,
                issuer_key=issuer.key,
                number=number,
                this_update=issued_at,
                next_update=issued_at + timedelta(days=1),
                revoked=entries,
            ).dump()
            self._crls[which] = (issued_at + timedelta(hours=1), der)
            return der

    def crls(self) -> list[asn1_crl.CertificateList]:
        return [asn1_crl.CertificateList.load(self.crl(w)) for w in ("issuing", "root")]

    def info(self, record: CertificateRecord) -> CertificateInfo:
        return certificate_info(record)

    # -- internals ------------------------------------------------------------------------

    def own_name(self, role: str) -> x509.Name:
        """The name of one of this installation's CAs or TSAs (`signet.signer.pki.names`),
        under the current root's installation id (none for a root made before ids)."""
        return self._named(role, installation_of(self.root.certificate))

    def _named(self, role: str, installation: str | None) -> x509.Name:
        return ca_name(role, self.settings.organization, installation, self.settings.country)

    @property
    def installation(self) -> str | None:
        """This installation's id, read from its root certificate (None: made before ids)."""
        return installation_of(self.root.certificate)
