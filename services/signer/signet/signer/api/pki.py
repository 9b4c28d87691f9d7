"""Public PKI endpoints: CA certificates, CRLs, OCSP and the TSA.

No bearer token here: validators (Acrobat, pdfsig, openssl) must reach them.
They reveal nothing secret — certificates and revocation status are public
by design.
"""

from __future__ import annotations

import base64
from typing import Annotated
from urllib.parse import unquote

from fastapi import APIRouter, Depends, Path, Request, Response
from fastapi.concurrency import run_in_threadpool
from signet.common.errors import NotFound
from signet.signer.api.deps import Service, read_body_limited
from signet.signer.pki.names import INSTALLATION_ID_LENGTH

router = APIRouter(tags=["pki"])
_SMALL = 64 * 1024


async def this_installation(
    installation: Annotated[
        str,
        Path(
            min_length=INSTALLATION_ID_LENGTH,
            max_length=INSTALLATION_ID_LENGTH,
            pattern="^[0-9A-F]+$",
            description="the installation id in this signer's CA names",
        ),
    ],
    service: Service,
) -> None:
    """The ``/i/<installation>`` paths answer for this installation only: another's id
    (its certificates point at the same address) is a 404, never our CRL or OCSP."""
    if installation != service.ca.installation:
        raise NotFound(f"installation {installation} is not served here")


#: The status paths certificates name (`signet.signer.pki.profiles.status_base`).
installation_router = APIRouter(
    prefix="/i/{installation}", tags=["pki"], dependencies=[Depends(this_installation)]
)


@router.get("/ca/crl", summary="CRL of the issuing CA (signer and TSA certificates)")
@router.get("/ca/issuing.crl", include_in_schema=False)
async def issuing_crl(service: Service) -> Response:
    der = await run_in_threadpool(service.ca.crl, "issuing")
    return Response(der, media_type="application/pkix-crl")


@router.get("/ca/root.crl", summary="CRL of the root CA (the issuing CA certificate)")
async def root_crl(service: Service) -> Response:
    der = await run_in_threadpool(service.ca.crl, "root")
    return Response(der, media_type="application/pkix-crl")


@router.get("/ca/root.cer", summary="The root CA certificate (the trust anchor), DER")
async def root_certificate(service: Service) -> Response:
    return Response(service.ca.root.certificate.dump(), media_type="application/pkix-cert")


@router.get("/ca/issuing.cer", summary="The issuing CA certificate, DER")
async def issuing_certificate(service: Service) -> Response:
    return Response(service.ca.issuing.certificate.dump(), media_type="application/pkix-cert")


@router.get("/ca/tsa.cer", summary="The TSA certificate that stamps now, DER")
async def tsa_certificate(service: Service) -> Response:
    """After a rollover (`signet ca rotate-tsa`) this is the new certificate; storage's
    preservation job renews every document whose last timestamp is by another."""
    der = await run_in_threadpool(lambda: service.tsa.identity.certificate.dump())
    return Response(der, media_type="application/pkix-cert")


@router.post("/ocsp", summary="RFC 6960 OCSP responder")
async def ocsp(request: Request, service: Service) -> Response:
    body = await read_body_limited(request, _SMALL)
    der = await run_in_threadpool(service.ocsp.respond, body)
    return Response(der, media_type="application/ocsp-response")


@router.get("/ocsp/{encoded:path}", summary="RFC 6960 A.1 OCSP over GET (base64 in the path)")
async def ocsp_get(encoded: str, service: Service) -> Response:
    try:
        body = base64.b64decode(unquote(encoded), validate=False)
    except ValueError:
        body = b""
    der = await run_in_threadpool(service.ocsp.respond, body)
    return Response(der, media_type="application/ocsp-response")


@router.post("/tsa", summary="RFC 3161 Time-Stamp Authority")
async def timestamp(request: Request, service: Service) -> Response:
    body = await read_body_limited(request, _SMALL)
    # Fast enough (well under a millisecond) to run on the event loop.
    return Response(service.tsa.respond(body), media_type="application/timestamp-reply")


# The same answers under this installation's own prefix (what its certificates name).
for _path, _endpoint, _method, _summary in (
    ("/ca/crl", issuing_crl, "GET", "CRL of the issuing CA, for this installation only"),
    ("/ca/root.crl", root_crl, "GET", "CRL of the root CA, for this installation only"),
    ("/ca/root.cer", root_certificate, "GET", "The root CA certificate, this installation's"),
    ("/ca/issuing.cer", issuing_certificate, "GET", "The issuing CA certificate, this one's"),
    ("/ocsp", ocsp, "POST", "RFC 6960 OCSP responder, for this installation only"),
    ("/ocsp/{encoded:path}", ocsp_get, "GET", "RFC 6960 A.1 OCSP over GET, this installation"),
):
    installation_router.add_api_route(_path, _endpoint, methods=[_method], summary=_summary)
