"""The CA's mechanics: HSM keys with their purpose, certificates built and recorded.

`Issuer` makes a key (its purpose recorded first) and issues a certificate of a kind
(`signet.signer.pki.profiles`) for it, recording it in the registry; which certificates
are made, for whom and when, is `signet.signer.pki.ca.CertificateAuthority`'s policy.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from asn1crypto import keys, x509
from signet.common.contracts.signer import CertificateKind, Contact, KeyPurpose
from signet.common.errors import Conflict
from signet.hsm import Hsm, KeyAlgorithm, KeyExists, KeyNotFound
from signet.signer import metrics
from signet.signer.pki.issued import Issued, now, serial_hex
from signet.signer.pki.keys import HsmKey
from signet.signer.pki.profiles import VALIDITY, certificate_profile, ledger_profile
from signet.signer.pki.purposes import KeyPurposes
from signet.signer.pki.x509 import build_certificate, random_serial
from signet.signer.registry import CertificateRecord, Registry, verification_json


@dataclass(frozen=True)
class CaSettings:
    #: Base URL validators use to reach this signer's CRL/OCSP (baked into certificates).
    public_url: str
    organization: str = "Signet"
    country: str | None = None
    #: How long a TSA certificate is valid (the ceremony's and each rollover's; see
    #: `signet.signer.pki.rotation`): shorter than the retention, so preservation renews.
    tsa_validity: timedelta = VALIDITY[CertificateKind.TSA]


class Issuer:
    def __init__(self, hsm: Hsm, registry: Registry, settings: CaSettings) -> None:
        self.hsm, self.registry, self.settings = hsm, registry, settings
        self.purposes = KeyPurposes(registry)

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
        not_after = not_before + (validity or VALIDITY[kind])
        if issuer is not None:
            not_after = min(not_after, issuer.record.not_after)
        extensions = certificate_profile(
            kind,
            public_key,
            issuer.certificate if issuer else None,
            self.settings.public_url,
            email,
            verification,
            contact,
        )
        if ledger:
            extensions = ledger_profile(extensions)
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
