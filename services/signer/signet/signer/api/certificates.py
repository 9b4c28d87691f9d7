"""Issuing, reading and revoking certificates (`/v1/certificates`)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from signet.common.contracts.signer import CertificateInfo, IssueCertificateRequest, RevokeRequest
from signet.common.errors import NotFound
from signet.signer.api.deps import Service

router = APIRouter(prefix="/v1/certificates", tags=["certificates"])


@router.post("", status_code=201, response_model=CertificateInfo)
async def issue(request: IssueCertificateRequest, service: Service) -> CertificateInfo:
    issued = await run_in_threadpool(service.ca.issue, request)
    if request.contact is not None and issued.record.kind == "event":
        # the event key's codes go only to the contact its certificate names
        await run_in_threadpool(
            service.activations.bind_event_contact, issued.record.serial, request.contact
        )
    return service.ca.info(issued.record)


@router.get("/{serial}", response_model=CertificateInfo)
async def read(serial: str, service: Service) -> CertificateInfo:
    record = service.registry.get(serial.lower())
    if record is None:
        raise NotFound(f"no certificate with serial {serial}")
    return service.ca.info(record)


@router.post("/{serial}/revoke", response_model=CertificateInfo)
async def revoke(serial: str, request: RevokeRequest, service: Service) -> CertificateInfo:
    record = await run_in_threadpool(service.ca.revoke, serial.lower(), request.reason)
    return service.ca.info(record)
