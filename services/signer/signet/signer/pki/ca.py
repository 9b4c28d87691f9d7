"""The internal CA: the key ceremony, certificate profiles, issuance and revocation.

Hierarchy: a root CA, one issuing CA, and the TSA certificate issued by the
issuing CA.  Signer certificates (person, seal, event) are issued by the
issuing CA and carry the URLs of our CRL and OCSP responder, so validators
inside the company network can check their status without the internet.
All private keys live in the HSM; certificates and revocations in `Registry`.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from asn1crypto import crl as asn1_crl
from asn1crypto import keys, x509
from asn1crypto import pem as asn1_pem
from signet.common.contracts.signer import (
    LEDGER_SEAL_EKU,
    LEDGER_SEAL_POLICY_OID,
    POLICY_ARC,
    CertificateInfo,
    CertificateKind,
    Contact,
    ContactChannel,
    IssueCertificateRequest,
    KeyPurpose,
    RevocationReason,
    SubjectIdentity,
)
from signet.common.errors import Conflict, InvalidRequest, NotFound, ServiceUnavailable
from signet.hsm import Hsm, KeyAlgorithm, KeyExists, KeyNotFound
from signet.signer import metrics
from signet.signer.pki.keys import HsmKey
from signet.signer.pki.purposes import KeyPurposes
from signet.signer.pki.tsa import TSA_POLICY_OID
from signet.signer.pki.x509 import (
    build_certificate,
    build_crl,
    extension,
    key_identifier,
    random_serial,
)
from signet.signer.registry import CertificateRecord, Registry, verification_json

ROOT_LABEL, ISSUING_LABEL, TSA_LABEL = "signet-root-ca", "signet-issuing-ca", "signet-tsa"
#: RFC 9336 id-kp-documentSigning, plus emailProtection which NSS-based validators
#: (poppler, Firefox-lineage tools) require for signing certificates.
DOCUMENT_SIGNING_EKU = ("1.3.6.1.5.5.7.3.36", "email_protection")
EVENT_POLICY_OID = f"{POLICY_ARC}.1.1"
LONG_TERM_POLICY_OID = f"{POLICY_ARC}.1.2"

#: The purpose a key must have for each kind of certificate the API can ask for.
_PURPOSE_OF_KIND = {
    CertificateKind.PERSON: KeyPurpose.PERSON,
    CertificateKind.SEAL: KeyPurpose.SEAL,
    CertificateKind.EVENT: KeyPurpose.EVENT,
}
#: Keys that sign documents; a CA, TSA or ledger key never does.
DOCUMENT_PURPOSES = (KeyPurpose.SEAL, KeyPurpose.PERSON, KeyPurpose.EVENT)

_VALIDITY = {
    CertificateKind.ROOT: timedelta(days=20 * 365),
    CertificateKind.ISSUING: timedelta(days=10 * 365),
    CertificateKind.TSA: timedelta(days=6 * 365),
    CertificateKind.PERSON: timedelta(days=2 * 365),
    CertificateKind.SEAL: timedelta(days=3 * 365),
    CertificateKind.EVENT: timedelta(days=1),
}


@dataclass(frozen=True)
class CaSettings:
    #: Base URL validators use to reach this signer's CRL/OCSP (baked into certificates).
    public_url: str
    organization: str = "Signet"
    country: str | None = None
    #: How long a TSA certificate is valid (the ceremony's and each rollover's; see
    #: `signet.signer.pki.rotation`): shorter than the retention, so preservation renews.
    tsa_validity: timedelta = _VALIDITY[CertificateKind.TSA]


@dataclass(frozen=True)
class Issued:
    """A certificate with the HSM key that belongs to it."""

    certificate: x509.Certificate
    key: HsmKey
    record: CertificateRecord


def fingerprint(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.dump()).hexdigest()


def serial_hex(serial: int) -> str:
    return format(serial, "x")


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


#: Seconds a seal's or person's certificate status is reused between database reads.
MATERIAL_TTL = 2.0


class CertificateAuthority:
    def __init__(self, hsm: Hsm, registry: Registry, settings: CaSettings) -> None:
        self.hsm, self.registry, self.settings = hsm, registry, settings
        self.purposes = KeyPurposes(registry)
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
        org = self.settings.organization
        root_key = self._new_key(ROOT_LABEL, algorithm, KeyPurpose.ROOT)
        root = self._issue(CertificateKind.ROOT, self._name(f"{org} Root CA"), root_key, None)
        issuing_key = self._new_key(ISSUING_LABEL, algorithm, KeyPurpose.ISSUING)
        issuing = self._issue(
            CertificateKind.ISSUING, self._name(f"{org} Issuing CA 1"), issuing_key, root
        )
        tsa_key = self._new_key(TSA_LABEL, algorithm, KeyPurpose.TSA)
        tsa = self._issue(
            CertificateKind.TSA,
            self._name(f"{org} Time-Stamping Authority"),
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
        name: dict[str, str] = {"common_name": subject.common_name}
        if subject.organization:
            name["organization_name"] = subject.organization
        if subject.organizational_unit:
            name["organizational_unit_name"] = subject.organizational_unit
        if subject.country:
            name["country_name"] = subject.country
        if subject.email:
            name["email_address"] = subject.email
        validity = timedelta(days=request.validity_days) if request.validity_days else None
        verification = (
            request.identity_verification.model_dump(mode="json")
            if request.identity_verification
            else None
        )
        return self._issue(
            kind,
            x509.Name.build(name),
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
            and _has_eku(x509.Certificate.load(record.der), LEDGER_SEAL_EKU)
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
        cert = x509.Certificate.load(record.der)
        status = (
            "revoked"
            if record.revoked_at
            else ("expired" if record.not_after < datetime.now(UTC) else "good")
        )
        pem = asn1_pem.armor("CERTIFICATE", record.der).decode()
        return CertificateInfo(
            serial=record.serial,
            kind=CertificateKind(record.kind),
            subject=record.subject,
            issuer=cert.issuer.human_friendly,
            key_label=record.key_label,
            not_before=record.not_before,
            not_after=record.not_after,
            fingerprint_sha256=fingerprint(cert),
            status=status,  # type: ignore[arg-type]
            revoked_at=record.revoked_at,
            revocation_reason=record.revocation_reason,
            key_destroyed=record.key_destroyed_at is not None,
            pem=pem,
        )

    # -- internals ------------------------------------------------------------------------

    def _name(self, common_name: str) -> x509.Name:
        attrs = {"common_name": common_name, "organization_name": self.settings.organization}
        if self.settings.country:
            attrs["country_name"] = self.settings.country
        return x509.Name.build(attrs)

    def _key_exists(self, label: str) -> bool:
        try:
            with metrics.hsm_operation("lookup"):
                self.hsm.find_key(label)
        except KeyNotFound:
            return False
        return True

    def _new_key(self, label: str, algorithm: KeyAlgorithm, purpose: KeyPurpose) -> HsmKey:
        """A new HSM key, its purpose recorded first: no key of ours exists without one."""
        self.purposes.claim(label, purpose)
        try:
            with metrics.hsm_operation("generate_key"):
                info = self.hsm.generate_key(label, algorithm)
        except KeyExists as exc:
            raise Conflict(str(exc)) from exc
        return HsmKey(self.hsm, info.label, info.algorithm)

    def _issue(
        self,
        kind: CertificateKind,
        subject: x509.Name,
        key: HsmKey,
        issuer: Issued | None,
        *,
        email: str | None = None,
        validity: timedelta | None = None,
        verification: dict[str, Any] | None = None,
        ledger: bool = False,
        contact: Contact | None = None,
    ) -> Issued:
        with metrics.hsm_operation("lookup"):
            public_key = keys.PublicKeyInfo.load(self.hsm.find_key(key.label).public_key_der)
        serial = random_serial()
        not_before = now() - timedelta(minutes=5)  # tolerate validators' clock skew
        not_after = not_before + (validity or _VALIDITY[kind])
        if issuer is not None:
            not_after = min(not_after, issuer.record.not_after)
        extensions = self._profile(kind, public_key, issuer, email, verification, contact)
        if ledger:
            extensions = _ledger_profile(extensions)
        cert = build_certificate(
            subject=subject,
            public_key=public_key,
            issuer=issuer.certificate.subject if issuer else subject,
            issuer_key=issuer.key if issuer else key,
            serial=serial,
            not_before=not_before,
            not_after=not_after,
            extensions=extensions,
        )
        record = CertificateRecord(
            serial=serial_hex(serial),
            kind=kind.value,
            subject=subject.human_friendly,
            issuer_serial=issuer.record.serial if issuer else None,
            key_label=key.label,
            not_before=not_before,
            not_after=not_after,
            der=cert.dump(),
            created_at=now(),
            identity_verification=verification_json(verification),
        )
        self.registry.add(record)
        metrics.CERTIFICATES_ISSUED.labels(kind.value).inc()
        return Issued(cert, key, record)

    def _profile(
        self,
        kind: CertificateKind,
        public_key: keys.PublicKeyInfo,
        issuer: Issued | None,
        email: str | None,
        verification: dict[str, Any] | None,
        contact: Contact | None = None,
    ) -> list[dict[str, Any]]:
        ski = key_identifier(public_key)
        exts = [extension("key_identifier", ski)]
        if issuer is not None:
            exts.append(
                extension(
                    "authority_key_identifier",
                    {"key_identifier": issuer.certificate.key_identifier_value.native},
                )
            )
            crl_name = "crl" if kind not in (CertificateKind.ISSUING,) else "root.crl"
            base = self.settings.public_url.rstrip("/")
            exts.append(
                extension(
                    "crl_distribution_points",
                    [
                        {
                            "distribution_point": x509.DistributionPointName(
                                name="full_name", value=[_uri(f"{base}/ca/{crl_name}")]
                            )
                        }
                    ],
                )
            )
            parent = "root" if kind is CertificateKind.ISSUING else "issuing"
            exts.append(
                extension(
                    "authority_information_access",
                    [
                        {"access_method": "ocsp", "access_location": _uri(f"{base}/ocsp")},
                        {
                            "access_method": "ca_issuers",
                            "access_location": _uri(f"{base}/ca/{parent}.cer"),
                        },
                    ],
                )
            )
        if kind in (CertificateKind.ROOT, CertificateKind.ISSUING):
            constraints: dict[str, Any] = {"ca": True}
            if kind is CertificateKind.ISSUING:
                constraints["path_len_constraint"] = 0
            exts.append(extension("basic_constraints", constraints, critical=True))
            exts.append(extension("key_usage", {"key_cert_sign", "crl_sign"}, critical=True))
            return exts
        exts.append(extension("basic_constraints", {"ca": False}, critical=True))
        exts.append(extension("key_usage", {"digital_signature", "non_repudiation"}, critical=True))
        if kind is CertificateKind.TSA:
            exts.append(extension("extended_key_usage", ["time_stamping"], critical=True))
            # the policy its tokens are issued under (TSTInfo.policy), for relying parties
            exts.append(extension("certificate_policies", [{"policy_identifier": TSA_POLICY_OID}]))
            return exts
        exts.append(extension("extended_key_usage", list(DOCUMENT_SIGNING_EKU)))
        if alt_names := _alt_names(email, contact):
            exts.append(extension("subject_alt_name", alt_names))
        policy: dict[str, Any] = {"policy_identifier": LONG_TERM_POLICY_OID}
        if kind is CertificateKind.EVENT and verification:
            notice = (
                f"Event certificate for one signature. Identity verified by "
                f"{verification['method']} at {verification['verified_at']}"
                + (f" (ref {verification['reference']})" if verification.get("reference") else "")
            )
            policy = {
                "policy_identifier": EVENT_POLICY_OID,
                "policy_qualifiers": [
                    {
                        "policy_qualifier_id": "user_notice",
                        "qualifier": {
                            "explicit_text": x509.DisplayText(
                                name="utf8_string", value=notice[:200]
                            )
                        },
                    }
                ],
            }
        exts.append(extension("certificate_policies", [policy]))
        return exts


def _alt_names(email: str | None, contact: Contact | None) -> list[x509.GeneralName]:
    """The subject's e-mail, and an event certificate's activation contact: whoever
    validates the signature sees where the signer sent the code (a mobile as a
    ``tel:`` URI, RFC 3966)."""
    names = [x509.GeneralName(name="rfc822_name", value=email)] if email else []
    if contact is not None and contact.channel is ContactChannel.SMS:
        names.append(
            x509.GeneralName(name="uniform_resource_identifier", value=f"tel:{contact.address}")
        )
    elif contact is not None and contact.address.lower() != (email or "").lower():
        names.append(x509.GeneralName(name="rfc822_name", value=contact.address))
    return names


def _ledger_profile(extensions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A seal profile turned into the ledger seal's: its own EKU (critical, and nothing
    else: the ledger seal never signs documents) and its own policy."""
    kept = [
        e
        for e in extensions
        if e["extn_id"] not in ("extended_key_usage", "certificate_policies", "subject_alt_name")
    ]
    return [
        *kept,
        extension("extended_key_usage", [LEDGER_SEAL_EKU], critical=True),
        extension("certificate_policies", [{"policy_identifier": LEDGER_SEAL_POLICY_OID}]),
    ]


def _has_eku(cert: x509.Certificate, oid: str) -> bool:
    usage = cert.extended_key_usage_value
    return usage is not None and oid in [u.dotted for u in usage]


def _uri(url: str) -> x509.GeneralName:
    return x509.GeneralName(name="uniform_resource_identifier", value=url)
