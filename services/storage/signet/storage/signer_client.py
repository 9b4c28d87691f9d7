"""The storage service's view of the signer: tree heads signed, timestamped, and PKI data.

Over HTTP only (the storage service holds no keys and no HSM).  Timestamp
replies are checked before use: status granted, our nonce echoed, our digest
in the imprint.
"""

from __future__ import annotations

import base64
import secrets

import httpx
from asn1crypto import tsp, x509
from signet.common.contracts.signer import DigestSignature
from signet.common.errors import ServiceUnavailable


class SignerClient:
    def __init__(self, base_url: str, token: str, *, key_label: str, timeout: float = 30) -> None:
        self.key_label = key_label
        self._http = httpx.Client(
            base_url=base_url, timeout=timeout, headers={"Authorization": f"Bearer {token}"}
        )

    def sign_digest(self, digest: bytes) -> tuple[bytes, str, list[str]]:
        response = self._post(
            "/v1/digests/sign", json={"key_label": self.key_label, "digest": digest.hex()}
        )
        signed = DigestSignature.model_validate_json(response.content)
        return (
            base64.b64decode(signed.signature),
            signed.signature_algorithm,
            signed.certificate_chain,
        )

    def timestamp(self, digest: bytes) -> bytes:
        nonce = secrets.randbits(63)
        query = tsp.TimeStampReq(
            {
                "version": 1,
                "message_imprint": {
                    "hash_algorithm": {"algorithm": "sha256"},
                    "hashed_message": digest,
                },
                "nonce": nonce,
                "cert_req": True,
            }
        ).dump()
        response = self._post(
            "/tsa", content=query, headers={"Content-Type": "application/timestamp-query"}
        )
        reply = tsp.TimeStampResp.load(response.content)
        if reply["status"]["status"].native != "granted":
            raise ServiceUnavailable(f"the TSA refused: {reply['status'].native}")
        token = reply["time_stamp_token"]
        info = token["content"]["encap_content_info"]["content"].parsed
        if (
            info["nonce"].native != nonce
            or info["message_imprint"]["hashed_message"].native != digest
        ):
            raise ServiceUnavailable("the TSA's reply does not answer our request")
        return bytes(token.dump())

    def pki(self) -> dict[str, bytes]:
        """CA certificates and current CRLs, for evidence packages (DER)."""
        return {
            name: self._get(path).content
            for name, path in (
                ("root.cer", "/ca/root.cer"),
                ("issuing.cer", "/ca/issuing.cer"),
                ("issuing.crl", "/ca/crl"),
                ("root.crl", "/ca/root.crl"),
            )
        }

    def renew(self, pdf: bytes) -> bytes:
        """`POST /v1/documents/renew`: the PDF with one more archive timestamp (the
        preservation job, `signet.storage.preservation`)."""
        files = {"document": ("document.pdf", pdf, "application/pdf")}
        return self._post("/v1/documents/renew", files=files, timeout=300).content

    def tsa_certificate(self) -> x509.Certificate:
        """The signer's current TSA certificate (`GET /ca/tsa.cer`)."""
        return x509.Certificate.load(self._get("/ca/tsa.cer").content)

    def _post(self, path: str, **kwargs: object) -> httpx.Response:
        try:
            response = self._http.post(path, **kwargs)  # type: ignore[arg-type]
        except httpx.HTTPError as exc:
            raise ServiceUnavailable(f"the signer is unreachable: {exc}") from exc
        if response.status_code != 200:
            raise ServiceUnavailable(
                f"the signer answered {response.status_code}: {response.text[:300]}"
            )
        return response

    def _get(self, path: str) -> httpx.Response:
        try:
            response = self._http.get(path)
        except httpx.HTTPError as exc:
            raise ServiceUnavailable(f"the signer is unreachable: {exc}") from exc
        if response.status_code != 200:
            raise ServiceUnavailable(f"the signer answered {response.status_code} for {path}")
        return response

    def close(self) -> None:
        self._http.close()
