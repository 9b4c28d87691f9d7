"""FastAPI dependencies of the signer's routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, UploadFile
from signet.common.auth import PUBLIC_HEALTH, Rule, Scope, rule
from signet.common.errors import PayloadTooLarge
from signet.signer.service import SignerService


def get_service(request: Request) -> SignerService:
    service: SignerService = request.app.state.service
    return service


Service = Annotated[SignerService, Depends(get_service)]


async def read_limited(upload: UploadFile, limit: int, what: str) -> bytes:
    """Read an uploaded part, refusing more than `limit` bytes with a 413."""
    if upload.size is not None and upload.size > limit:
        raise PayloadTooLarge(f"{what} is {upload.size} bytes; the limit is {limit}")
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge(f"{what} is larger than the limit of {limit} bytes")
    return data


async def read_body_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body is {declared} bytes; the limit is {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body is larger than the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


#: Who may call which signer route (`signet.common.auth`); anything else needs admin.
#: CRLs, OCSP, the TSA and the CA certificates are public: validators must reach them.
ROUTES: tuple[Rule, ...] = (
    *PUBLIC_HEALTH,
    rule("GET", r"/ca/(crl|issuing\.crl|root\.crl|root\.cer|issuing\.cer|tsa\.cer)", None),
    rule("POST", r"/ocsp", None),
    rule("GET", r"/ocsp/.+", None),
    # the same under an installation's prefix (what its certificates name; another
    # installation's id is a 404 from the route itself)
    rule("GET", r"/i/[^/]+/ca/(crl|root\.crl|root\.cer|issuing\.cer)", None),
    rule("POST", r"/i/[^/]+/ocsp", None),
    rule("GET", r"/i/[^/]+/ocsp/.+", None),
    # RFC 3161 clients (validators' tools, other systems) carry no token, as for OCSP;
    # a stamp proves a time, not who asked, and the gate bounds each request's body
    rule("POST", r"/tsa", None),
    rule("POST", r"/v1/digests/sign", Scope.DIGEST_SIGN),
    rule("POST", r"/v1/certificates", Scope.CERTIFICATE_ISSUE),
    rule("GET", r"/v1/certificates/[^/]+", Scope.CERTIFICATE_READ),
    rule("POST", r"/v1/certificates/[^/]+/revoke", Scope.CERTIFICATE_REVOKE),
    rule("POST", r"/v1/sign", Scope.DOCUMENT_SIGN),
    # the portal asks for a holder's activation and reads its record (never the code);
    # enrolments and the outbox (contacts, held codes) are left to admin
    rule("POST", r"/v1/activations", Scope.DOCUMENT_SIGN),
    rule("GET", r"/v1/activations/[^/]+", Scope.DOCUMENT_SIGN),
    rule("POST", r"/v1/complete", Scope.DOCUMENT_SIGN),
    # standing seal-use authorisations: made pending and approved (with the keeper's
    # code) by a service; listed and revoked by admin
    rule("POST", r"/v1/seal-authorisations", Scope.DOCUMENT_SIGN),
    rule("GET", r"/v1/seal-authorisations/sa_[^/]+", Scope.DOCUMENT_SIGN),
    rule("POST", r"/v1/seal-authorisations/sa_[^/]+/approve", Scope.DOCUMENT_SIGN),
    rule("POST", r"/v1/documents/renew", Scope.DOCUMENT_RENEW),
    rule("POST", r"/v1/verify", Scope.DOCUMENT_VERIFY),
    rule("POST", r"/v1/batches", Scope.BATCH),
    rule("GET", r"/v1/batches/[^/]+(/results)?", Scope.BATCH),
)
