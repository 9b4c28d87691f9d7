"""The portal's client of the signer: certificates for people, signatures, verification.

Signing a person's or a seal's turn needs the person's activation (DESIGN.md
"Signature activation"): the client passes what the person typed, never a code of
its own making; the signer decides.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import quote

from signet.common.clients.base import ServiceClient
from signet.common.contracts.signer import (
    ActivationChallenge,
    ActivationRecord,
    ActivationRequest,
    CertificateInfo,
    CompleteOptions,
    IssueCertificateRequest,
    SignOptions,
    VerifyResponse,
)


@dataclass(frozen=True)
class Signed:
    """A signed revision and what the signer said about it."""

    pdf: bytes
    certificate_serial: str
    level: str
    #: the activation that allowed it (X-Signet-Activation), for the ledger
    activation_id: str | None = None


class SignerClient(ServiceClient):
    service = "signer"

    def issue_certificate(self, request: IssueCertificateRequest) -> CertificateInfo:
        response = self.request(
            "POST", "/v1/certificates", json=request.model_dump(mode="json", exclude_none=True)
        )
        return CertificateInfo.model_validate_json(response.content)

    def sign(self, pdf: bytes, options: SignOptions, image: bytes | None = None) -> Signed:
        files: dict[str, tuple[str, bytes, str]] = {
            "document": ("document.pdf", pdf, "application/pdf")
        }
        if image is not None:
            files["image"] = ("signature.png", image, "image/png")
        response = self.request(
            "POST",
            "/v1/sign",
            files=files,
            data={"options": json.dumps(options.model_dump(mode="json", exclude_none=True))},
        )
        return Signed(
            response.content,
            response.headers.get("X-Signet-Certificate-Serial", ""),
            response.headers.get("X-Signet-Signature-Level", ""),
            response.headers.get("X-Signet-Activation"),
        )

    def request_activation(self, request: ActivationRequest) -> ActivationChallenge:
        """Ask the signer to send the key holder a code for these documents; the
        signer sends it to the key's bound contact itself."""
        response = self.request(
            "POST", "/v1/activations", json=request.model_dump(mode="json", exclude_none=True)
        )
        return ActivationChallenge.model_validate_json(response.content)

    def activation(self, activation_id: str) -> ActivationRecord:
        """The evidence of a used activation (never the code)."""
        response = self.request("GET", f"/v1/activations/{quote(activation_id, safe='')}")
        return ActivationRecord.model_validate_json(response.content)

    def verify(self, pdf: bytes) -> VerifyResponse:
        response = self.request(
            "POST", "/v1/verify", files={"document": ("document.pdf", pdf, "application/pdf")}
        )
        return VerifyResponse.model_validate_json(response.content)

    def complete(self, pdf: bytes, options: CompleteOptions) -> bytes:
        """The finished document made B-LTA (`POST /v1/complete`): every signature's
        validation data and a document timestamp, as one more revision."""
        response = self.request(
            "POST",
            "/v1/complete",
            files={"document": ("document.pdf", pdf, "application/pdf")},
            data={"options": options.model_dump_json(exclude_none=True)},
        )
        return response.content
