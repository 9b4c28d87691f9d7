"""An RFC 6960 OCSP responder for the certificates our CAs issued.

Responses are signed directly by the CA that issued the certificate in
question (RFC 6960 §2.6 "CA-signed"), so validators need no delegated
responder certificate.  Every request answers: malformed input gets
`malformedRequest`, a certificate we did not issue gets `unknown`.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from asn1crypto import core, ocsp
from signet.signer import metrics
from signet.signer.pki.ca import CertificateAuthority, Issued, serial_hex

RESPONSE_VALIDITY = timedelta(hours=12)
CLOCK_SKEW = timedelta(minutes=5)
#: Which status a response about several certificates is counted under (the worst).
_SEVERITY = {"good": 0, "unknown": 1, "revoked": 2}


def _key_hash(issued: Issued, algorithm: str) -> bytes:
    public_key = issued.certificate.public_key["public_key"].contents[1:]
    return hashlib.new(algorithm, public_key).digest()


class OcspResponder:
    def __init__(self, ca: CertificateAuthority) -> None:
        self.ca = ca

    def respond(self, request_der: bytes) -> bytes:
        try:
            request = ocsp.OCSPRequest.load(request_der)
            tbs = request["tbs_request"]
            cert_ids = [item["req_cert"] for item in tbs["request_list"]]
            # Echo the nonce extension byte for byte (RFC 8954).
            nonce = next(
                (
                    ocsp.ResponseDataExtension.load(ext.dump())
                    for ext in tbs["request_extensions"]
                    if ext["extn_id"].native == "nonce"
                ),
                None,
            )
            if not cert_ids:
                raise ValueError("empty request")
        except (ValueError, TypeError, KeyError):
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
