"""An RFC 3161 Time-Stamp Authority whose key lives in the HSM.

Serial numbers are unique and increasing across worker processes and
restarts: each process reserves a block of serials from the registry (one
atomic UPDATE per block) and hands them out in order; a block is never reused.

The token is a CMS SignedData over a TSTInfo with an ESS signing-certificate-v2
attribute (required by RFC 5816 for SHA-2, checked by `openssl ts -verify`).

Every stamp first asks the time check (`signet.signer.pki.timesource.TimeGuard`):
a token claims the accuracy of the settings (``tsa_accuracy_ms``) only while the clock
can show it; otherwise `ClockUnsynchronised` (HTTP 503 ``clock_unsynchronised``).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime

from asn1crypto import algos, cms, core, tsp, x509
from signet.signer import der, metrics
from signet.signer.pki.keys import HsmKey
from signet.signer.pki.timesource import TimeGuard, TimeStatus, TimeTrust
from signet.signer.registry import Registry

#: The TSA's policy (under Signet's UUID arc, see `signet.signer.pki.ca`).
TSA_POLICY_OID = "2.25.258957351307187465095418553474553367133.2.1"
ACCEPTED_DIGESTS = {"sha256": 32, "sha384": 48, "sha512": 64, "sha3_256": 32, "sha3_512": 64}
SERIAL_BLOCK = 4096
log = logging.getLogger(__name__)
_TST_INFO_OID = core.ObjectIdentifier("1.2.840.113549.1.9.16.1.4").dump()
_SIGNED_DATA_OID = core.ObjectIdentifier("1.2.840.113549.1.7.2").dump()
_MESSAGE_DIGEST_OID = core.ObjectIdentifier("1.2.840.113549.1.9.4").dump()


class SerialAllocator:
    """Monotonic serials from reserved blocks; thread-safe within a process."""

    def __init__(self, registry: Registry, block: int = SERIAL_BLOCK) -> None:
        self._registry, self._block = registry, block
        self._lock = threading.Lock()
        self._next = self._end = 0

    def next(self) -> int:
        with self._lock:
            if self._next >= self._end:
                self._next = self._registry.reserve("tsa-serial", self._block, floor=1)
                self._end = self._next + self._block
            value = self._next
            self._next += 1
            return value


@dataclass(frozen=True)
class TsaIdentity:
    certificate: x509.Certificate
    key: HsmKey
    #: Certificates to add when the requester sets certReq (TSA cert first).
    chain: tuple[x509.Certificate, ...]


class TimeStampAuthority:
    def __init__(
        self,
        identity: TsaIdentity,
        serials: SerialAllocator,
        *,
        accuracy_ms: int = 500,
        time: TimeGuard | None = None,
    ) -> None:
        self.identity = identity
        self.serials = serials
        self.accuracy_ms = accuracy_ms
        #: The check before every stamp; its accuracy is the one the tokens claim.
        self.time = time or TimeGuard(TimeTrust.KERNEL, accuracy_ms)
        if self.time.accuracy_ms != accuracy_ms:
            raise ValueError("the time check must enforce the accuracy the tokens claim")
        cert = identity.certificate
        ess = tsp.SigningCertificateV2(
            {
                "certs": [
                    {
                        "hash_algorithm": {"algorithm": "sha256"},
                        "cert_hash": hashlib.sha256(cert.dump()).digest(),
                        "issuer_serial": {
                            "issuer": [x509.GeneralName(name="directory_name", value=cert.issuer)],
                            "serial_number": cert.serial_number,
                        },
                    }
                ]
            }
        )
        sid = cms.SignerIdentifier(
            name="issuer_and_serial_number",
            value={"issuer": cert.issuer, "serial_number": cert.serial_number},
        )
        digest = algos.DigestAlgorithm({"algorithm": identity.key.digest_algorithm}).dump()
        # Constant DER, encoded once by asn1crypto (see signet.signer.der).
        self._tst_head = der.integer(1) + core.ObjectIdentifier(TSA_POLICY_OID).dump()
        self._accuracy = tsp.Accuracy({"millis": accuracy_ms}).dump()
        self._tsa_name = der.explicit(
            0, x509.GeneralName(name="directory_name", value=cert.subject).dump()
        )
        self._content_type_attr = cms.CMSAttribute(
            {"type": "content_type", "values": ["tst_info"]}
        ).dump()
        self._ess_attr = cms.CMSAttribute(
            {"type": "signing_certificate_v2", "values": [ess]}
        ).dump()
        self._signer_info_head = der.integer(1) + sid.dump() + digest
        self._signature_algorithm = identity.key.signature_algorithm.dump()
        self._version_and_digests = der.integer(3) + der.set_of([digest])
        self._certificates = der.tlv(0xA0, b"".join(c.dump() for c in identity.chain))

    def respond(self, request_der: bytes) -> bytes:
        """DER TimeStampResp for a DER TimeStampReq; rejections are replies too.

        Raises `ClockUnsynchronised` (no reply at all: the caller gets HTTP 503) when the
        clock cannot show the declared accuracy."""
        try:
            request = tsp.TimeStampReq.load(request_der, strict=True)
            request.native  # noqa: B018 - forces a full parse so garbage is caught here
        except Exception:  # asn1crypto raises several kinds on garbage; all mean "not DER"
            return _rejection("bad_data_format", "request is not a DER TimeStampReq")
        if request["version"].native != "v1":  # asn1crypto names the one version there is
            return _rejection("bad_request", f"version {request['version'].native} is not 1")
        for extension in request["extensions"].native or ():
            if extension["critical"]:
                return _rejection(
                    "unaccepted_extensions",
                    f"critical extension {extension['extn_id']} is not supported",
                )
        imprint = request["message_imprint"]
        algorithm = imprint["hash_algorithm"]["algorithm"].native
        expected_length = ACCEPTED_DIGESTS.get(algorithm)
        if expected_length is None:
            return _rejection("bad_alg", f"hash algorithm {algorithm} is not accepted")
        if len(imprint["hashed_message"].native) != expected_length:
            return _rejection("bad_data_format", "hashed message has the wrong length")
        policy = request["req_policy"].native
        if policy is not None and policy != TSA_POLICY_OID:
            return _rejection("unaccepted_policy", f"policy {policy} is not offered")
        token = self.stamp(
            imprint, nonce=request["nonce"].native, include_certs=bool(request["cert_req"].native)
        )
        status = tsp.PKIStatusInfo({"status": "granted"}).dump()
        return der.sequence(status, token)

    def stamp(
        self, imprint: tsp.MessageImprint, *, nonce: int | None, include_certs: bool
    ) -> bytes:
        """DER ContentInfo of a timestamp token over `imprint`.

        Counted in ``signet_timestamps_total`` (granted, or failed when the HSM or
        the serial allocation fails), both for ``POST /tsa`` and inside signatures.
        Refused with `ClockUnsynchronised` (counted as ``clock_unsynchronised``) when the
        time check says the clock cannot show the accuracy.
        """
        self.time.require()
        try:
            token = self._token(imprint, nonce, include_certs)
        except Exception:
            metrics.FAILED.inc()
            raise
        metrics.GRANTED.inc()
        return token

    def time_status(self) -> TimeStatus:
        """The time check's current verdict (cached like the one each stamp asks for)."""
        return self.time.status()

    def _token(self, imprint: tsp.MessageImprint, nonce: int | None, include_certs: bool) -> bytes:
        parts = [
            self._tst_head,
            imprint.dump(),
            der.integer(self.serials.next()),
            core.GeneralizedTime(datetime.now(UTC)).dump(),
            self._accuracy,
        ]
        if nonce is not None:
            parts.append(der.integer(nonce))
        parts.append(self._tsa_name)
        content = der.sequence(*parts)
        key = self.identity.key
        digest = hashlib.new(key.digest_algorithm, content).digest()
        message_digest = der.sequence(_MESSAGE_DIGEST_OID, der.set_of([der.octet_string(digest)]))
        attributes = sorted((self._content_type_attr, message_digest, self._ess_attr))
        signature = key.sign(der.set_of(attributes))
        signer_info = der.sequence(
            self._signer_info_head,
            der.tlv(0xA0, b"".join(attributes)),
            self._signature_algorithm,
            der.octet_string(signature),
        )
        encap = der.sequence(_TST_INFO_OID, der.explicit(0, der.octet_string(content)))
        signed_data = der.sequence(
            self._version_and_digests,
            encap,
            self._certificates if include_certs else b"",
            der.set_of([signer_info]),
        )
        return der.sequence(_SIGNED_DATA_OID, der.explicit(0, signed_data))


def _rejection(failure: str, text: str) -> bytes:
    """A rejection reply, counted as ``signet_timestamps_total{outcome="rejected"}``."""
    # asn1crypto encodes an unknown bit name as no bit at all, silently: refuse that here.
    assert failure in tsp.PKIFailureInfo._map.values(), failure
    metrics.REJECTED.inc()
    log.info("TSA request rejected: %s: %s", failure, text)
    # asn1crypto's TimeStampResp insists on a token, which a rejection never has.
    status = tsp.PKIStatusInfo(
        {
            "status": "rejection",
            "status_string": [text],
            "fail_info": tsp.PKIFailureInfo({failure}),
        }
    )
    return der.sequence(status.dump())
