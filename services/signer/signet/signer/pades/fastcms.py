"""CMS SignedData for PAdES from cached DER: the signer's hot path.

pyHanko builds every signature's CMS with asn1crypto, which re-serialises the
certificate chain and the signing-certificate-v2 attribute each time: about
85% of a signature's cost, for bytes that never change between signatures
made with one certificate.  `CmsTemplate` encodes those parts once, with
asn1crypto (the reference for every structure), and each signature only
splices in what is new: the document digest, the HSM's signature value and,
at B-T and above, the timestamp token.

`FastCmsSigner` plugs the template into pyHanko's own signing flow (PDF
field, byte ranges, appearance, DocMDP, DSS and document timestamps stay
pyHanko's), replacing only `async_sign` for the attribute set pyHanko would
itself produce for a PAdES signature.  Anything else (CAdES extras, dry runs
for size estimation, non-PDF CMS) goes to pyHanko unchanged.  A differential
test (tests/signer/test_fast_cms.py) builds both and compares them field by
field, so the fast path can never change what a signature means.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from asn1crypto import algos, cms, core, tsp, x509
from pyhanko.sign.general import as_signing_certificate_v2
from pyhanko.sign.signers.pdf_cms import PdfCMSSignedAttributes
from pyhanko.sign.timestamps import TimeStamper
from signet.signer import der
from signet.signer.pki.keys import HsmKey
from signet.signer.pki.tsa import TimeStampAuthority

_SIGNED_DATA_OID = core.ObjectIdentifier("1.2.840.113549.1.7.2").dump()
_MESSAGE_DIGEST_OID = core.ObjectIdentifier("1.2.840.113549.1.9.4").dump()
_TIMESTAMP_TOKEN_OID = core.ObjectIdentifier("1.2.840.113549.1.9.16.2.14").dump()


@dataclass(frozen=True)
class CmsTemplate:
    """The constant DER of one signer's PAdES CMS, and the splice that completes it."""

    digest_algorithm: str
    content_type_attribute: bytes
    signing_certificate_attribute: bytes
    signer_info_head: bytes
    signature_algorithm: bytes
    version_and_digests: bytes
    encapsulated_content: bytes
    certificates: bytes

    @classmethod
    def build(
        cls, key: HsmKey, certificate: x509.Certificate, chain: list[x509.Certificate]
    ) -> CmsTemplate:
        """Encode the constant parts with asn1crypto, exactly as pyHanko would."""
        digest_algorithm = key.digest_algorithm
        digest = algos.DigestAlgorithm({"algorithm": digest_algorithm}).dump()
        sid = cms.SignerIdentifier(
            name="issuer_and_serial_number",
            value={"issuer": certificate.issuer, "serial_number": certificate.serial_number},
        )
        ess_attribute = cms.CMSAttribute(
            {"type": "signing_certificate_v2", "values": [as_signing_certificate_v2(certificate)]}
        ).dump()
        # pyHanko embeds the whole chain, root included, and the signing certificate.
        unique: dict[bytes, None] = {}
        for cert in (*chain, certificate):
            unique.setdefault(cert.dump(), None)
        return cls(
            digest_algorithm=digest_algorithm,
            content_type_attribute=cms.CMSAttribute(
                {"type": "content_type", "values": ["data"]}
            ).dump(),
            signing_certificate_attribute=ess_attribute,
            signer_info_head=der.integer(1) + sid.dump() + digest,
            signature_algorithm=key.signature_algorithm.dump(),
            version_and_digests=der.integer(1) + der.set_of([digest]),
            encapsulated_content=cms.EncapsulatedContentInfo({"content_type": "data"}).dump(),
            certificates=der.tlv(0xA0, b"".join(unique)),
        )

    def signed_attributes(self, document_digest: bytes) -> list[bytes]:
        """The signed attributes in DER SET OF order (what the HSM signs)."""
        message_digest = der.sequence(
            _MESSAGE_DIGEST_OID, der.set_of([der.octet_string(document_digest)])
        )
        return sorted(
            (self.content_type_attribute, message_digest, self.signing_certificate_attribute)
        )

    def assemble(
        self, attributes: list[bytes], signature: bytes, timestamp_token: bytes | None = None
    ) -> bytes:
        """DER ContentInfo(SignedData) around a signature over `attributes`."""
        unsigned = b""
        if timestamp_token is not None:
            unsigned = der.tlv(
                0xA1, der.sequence(_TIMESTAMP_TOKEN_OID, der.set_of([timestamp_token]))
            )
        signer_info = der.sequence(
            self.signer_info_head,
            der.tlv(0xA0, b"".join(attributes)),
            self.signature_algorithm,
            der.octet_string(signature),
            unsigned,
        )
        signed_data = der.sequence(
            self.version_and_digests,
            self.encapsulated_content,
            self.certificates,
            der.set_of([signer_info]),
        )
        return der.sequence(_SIGNED_DATA_OID, der.explicit(0, signed_data))

    def sign(
        self,
        key: HsmKey,
        document_digest: bytes,
        *,
        tsa: TimeStampAuthority | None = None,
    ) -> bytes:
        """A complete PAdES CMS over `document_digest`; with `tsa`, a B-T timestamp too."""
        attributes = self.signed_attributes(document_digest)
        signature = key.sign_with(der.set_of(attributes), self.digest_algorithm)
        token = None
        if tsa is not None:
            token = tsa.stamp(
                signature_imprint(signature, self.digest_algorithm),
                nonce=secrets.randbits(63),
                include_certs=True,
            )
        return self.assemble(attributes, signature, token)


def signature_imprint(signature: bytes, digest_algorithm: str) -> tsp.MessageImprint:
    """What a signature timestamp covers: the SignerInfo's signature value (RFC 3161 App. A)."""
    return tsp.MessageImprint(
        {
            "hash_algorithm": {"algorithm": digest_algorithm},
            "hashed_message": hashlib.new(digest_algorithm, signature).digest(),
        }
    )


def fast_path_applies(
    *,
    dry_run: bool,
    use_pades: bool,
    is_pdf_sig: bool,
    encap_content_info: object,
    settings: PdfCMSSignedAttributes | None,
) -> bool:
    """Whether pyHanko would emit exactly the attribute set `CmsTemplate` emits."""
    if dry_run or not use_pades or not is_pdf_sig or encap_content_info is not None:
        return False
    if settings is None:
        return True
    return settings.cades_signed_attrs is None and settings.adobe_revinfo_attr is None


async def external_timestamp(
    timestamper: TimeStamper, signature: bytes, digest_algorithm: str
) -> bytes:
    """A token from any pyHanko timestamper (an upstream TSA over HTTP)."""
    digest = hashlib.new(digest_algorithm, signature).digest()
    token = await timestamper.async_timestamp(digest, digest_algorithm)
    return bytes(token.dump())
