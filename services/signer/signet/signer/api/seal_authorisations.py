"""`/v1/seal-authorisations`: standing seal-use authorisations (用印授权) for automatic
and batch sealing with a seal whose keeper is enrolled (`signet.signer.activation.seals`).

Made pending by a service (the portal, for a keeper's page) or an admin; approved by
the keeper's activation for the terms' SHA-256 (`POST /v1/activations` with
``document_sha256: [terms_sha256]``, the code sent to the keeper); revoked by an admin.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from signet.common.contracts.seals import (
    SealAuthorisation,
    SealAuthorisationApproval,
    SealAuthorisationRequest,
)
from signet.signer.api.deps import Service
from signet.signer.service import SignerService

router = APIRouter(prefix="/v1/seal-authorisations", tags=["activation"])
AuthorisationId = Annotated[str, Path(pattern=r"^sa_[A-Za-z0-9_-]{8,60}$")]


def _caller(request: Request) -> str:
    return str(getattr(request.state, "caller", "admin"))


def _create(service: SignerService, body: SealAuthorisationRequest, by: str) -> SealAuthorisation:
    issued = (
        service.ca.signing_material(body.certificate_serial)
        if body.certificate_serial
        else service.ca.signing_material_for_key(body.key_label or "")
    )
    return service.activations.seals.create(body, issued.record, by)


@router.post(
    "",
    status_code=201,
    response_model=SealAuthorisation,
    summary="Ask for a standing seal-use authorisation (pending until the keeper approves)",
)
async def create(
    body: SealAuthorisationRequest, request: Request, service: Service
) -> SealAuthorisation:
    return await run_in_threadpool(_create, service, body, _caller(request))


@router.get("", response_model=list[SealAuthorisation], summary="A seal's authorisations (admin)")
async def for_seal(
    service: Service,
    certificate_serial: Annotated[str, Query(pattern=r"^[0-9a-f]{1,64}$")],
) -> list[SealAuthorisation]:
    return await run_in_threadpool(service.activations.seals.for_seal, certificate_serial)


@router.get("/{authorisation_id}", response_model=SealAuthorisation, summary="One authorisation")
async def get(authorisation_id: AuthorisationId, service: Service) -> SealAuthorisation:
    return await run_in_threadpool(service.activations.seals.get, authorisation_id)


@router.post(
    "/{authorisation_id}/approve",
    response_model=SealAuthorisation,
    summary="The keeper approves, with the code sent for the terms' SHA-256",
)
async def approve(
    authorisation_id: AuthorisationId, body: SealAuthorisationApproval, service: Service
) -> SealAuthorisation:
    return await run_in_threadpool(service.activations.seals.approve, authorisation_id, body)


@router.post(
    "/{authorisation_id}/revoke",
    response_model=SealAuthorisation,
    summary="Revoke (admin)",
)
async def revoke(
    authorisation_id: AuthorisationId, request: Request, service: Service
) -> SealAuthorisation:
    return await run_in_threadpool(
        service.activations.seals.revoke, authorisation_id, _caller(request)
    )
