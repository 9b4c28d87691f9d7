"""An RFC 6960 OCSP responder for the certificates our CAs issued.

Responses are signed directly by the CA that issued the certificate in
question (RFC 6960 §2.6 "CA-signed"), so validators need no delegated
responder certificate.  Every request answers: malformed input gets
`malformedRequest`, a certificate we did not issue gets `unknown`.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from asn1crypto import core, ocsp
from signet.signer import metrics
from signet.signer.pki.ca import CertificateAuthority, Issued, serial_hex

RESPONSE_VALIDITY = timedelta(hours=12)
CLOCK_SKEW = timedelta(minutes=5)

_log = logging.getLogger(__name__)
#: Which status a response about several certificates is counted under (the worst).
_SEVERITY = {"good": 0, "unknown": 1, "revoked": 2}


def _key_hash(issued: Issued, algorithm: str) -> bytes:
    public_key = issued.certificate.public_key["public_key"].contents[1:]
    return hashlib.new(algorithm, public_key).digest()


class _Malformed(ValueError):
    """A request that parses but is not one we can answer (its message is the reason)."""


def _parse(request_der: bytes) -> tuple[list[ocsp.CertId], Any]:
    """The request's CertIDs and nonce extension, every field read now, not lazily later."""
    if not request_der:
        raise _Malformed("empty body")
    request = ocsp.OCSPRequest.load(request_der, strict=True)  # trailing bytes refused
    tbs = request["tbs_request"]
    if tbs["version"].native != "v1":
        raise _Malformed("not a v1 request")
    cert_ids = [item["req_cert"] for item in tbs["request_list"]]
    if not cert_ids:
        raise _Malformed("no certificate named")
    for cert_id in cert_ids:
        _ = cert_id.native  # forces the whole CertID to parse (hash OID, hashes, serial)
        if not isinstance(cert_id["serial_number"].native, int):
            raise _Malformed("serial number is not an integer")
    # Echo the nonce extension byte for byte (RFC 8954).
    nonce = next(
        (
            ocsp.ResponseDataExtension.load(ext.dump())
            for ext in tbs["request_extensions"]
            if ext["extn_id"].native == "nonce"
        ),
        None,
    )
    if nonce is not None:
        _ = nonce.native
    _ = request.native  # and everything else (signature, extensions)
    return cert_ids, nonce


class OcspResponder:
    def __init__(self, ca: CertificateAuthority) -> None:
        self.ca = ca

    def respond(self, request_der: bytes) -> bytes:
        """The DER OCSPResponse for `request_der`; never raises on what a client sent.

        Anything that does not parse completely as a v1 OCSPRequest naming at least one
        certificate answers ``malformedRequest`` (RFC 6960 §2.3), logged on one line with
        its size and the parser's complaint, never its bytes.
        """
        try:
            cert_ids, nonce = _parse(request_der)
        except Exception as exc:  # asn1crypto raises many kinds on hostile DER
            reason = type(exc).__name__ if not isinstance(exc, _Malformed) else str(exc)
            _log.info("ocsp: malformed request (%d bytes): %s", len(request_der), reason)
            metrics.OCSP_RESPONSES.labels("malformed_request").inc()
            malformed: bytes = ocsp.OCSPResponse({"response_status": "malformed_request"}).dump()
            return malformed

        issuers = {"issuing": self.ca.issuing, "root": self.ca.root}
        signer: Issued | None = None
        singles = []
        now = datetime.now(UTC).replace(microsecond=0)
        for cert_id in cert_ids:
            algorithm = cert_id["hash_algorithm"]["algorithm"].native
            issuer = next(
                (
                    i
                    for i in issuers.values()
                    if algorithm in ("sha1", "sha256", "sha384", "sha512")
                    and _key_hash(i, algorithm) == cert_id["issuer_key_hash"].native
                ),
                None,
            )
            signer = signer or issuer
            status = self._status(cert_id, issuer if issuer is signer else None)
            # thisUpdate backdated like certificates' notBefore: validators that check
            # status at the signing time reject a status "known" only after it.
            singles.append(
                {
                    "cert_id": cert_id,
                    "cert_status": status,
                    "this_update": now - CLOCK_SKEW,
                    "next_update": now + RESPONSE_VALIDITY,
                }
            )
        signer = signer or issuers["issuing"]
        data: dict[str, object] = {
            "responder_id": ocsp.ResponderId(name="by_key", value=_key_hash(signer, "sha1")),
            "produced_at": now,
            "responses": singles,
        }
        if nonce is not None:
            data["response_extensions"] = [nonce]
        response_data = ocsp.ResponseData(data)
        basic = ocsp.BasicOCSPResponse(
            {
                "tbs_response_data": response_data,
                "signature_algorithm": signer.key.signature_algorithm,
                "signature": signer.key.sign(response_data.dump()),
                "certs": [signer.certificate],
            }
        )
        response: bytes = ocsp.OCSPResponse(
            {
                "response_status": "successful",
                "response_bytes": {"response_type": "basic_ocsp_response", "response": basic},
            }
        ).dump()
        worst = max((s["cert_status"].name for s in singles), key=_SEVERITY.__getitem__)
        metrics.OCSP_RESPONSES.labels(worst).inc()
        return response

    def _status(self, cert_id: ocsp.CertId, issuer: Issued | None) -> ocsp.CertStatus:
        if issuer is None:
            return ocsp.CertStatus(name="unknown", value=core.Null())
        record = self.ca.registry.get(serial_hex(cert_id["serial_number"].native))
        if record is None or record.issuer_serial != issuer.record.serial:
            return ocsp.CertStatus(name="unknown", value=core.Null())
        if record.revoked_at is not None:
            return ocsp.CertStatus(
                name="revoked",
                value={
                    "revocation_time": record.revoked_at,
                    "revocation_reason": record.revocation_reason or "unspecified",
                },
            )
        return ocsp.CertStatus(name="good", value=core.Null())
