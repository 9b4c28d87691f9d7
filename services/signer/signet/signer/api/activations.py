"""Signature activation: enrolments (admin), activations (the portal), the outbox (admin).

`POST /v1/activations` makes a code and sends it to the key's bound contact; the
answer never holds the code.  `GET /v1/activations/{id}` is the evidence of an
activation for the ledger and the certificate of completion.  Enrolments and the
outbox hold contacts and (on the embedded default) readable codes: admin only.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from signet.common.contracts.signer import (
    ActivationChallenge,
    ActivationRecord,
    ActivationRequest,
    EnrolmentInfo,
    KeyEnrolment,
    SignerOutboxEntry,
)
from signet.signer.api.deps import Service

router = APIRouter(prefix="/v1", tags=["activation"])


@router.post("/activations", status_code=201, response_model=ActivationChallenge)
async def request_activation(request: ActivationRequest, service: Service) -> ActivationChallenge:
    return await run_in_threadpool(service.activations.request, request)


@router.get("/activations/{activation_id}", response_model=ActivationRecord)
async def activation(activation_id: str, service: Service) -> ActivationRecord:
    return await run_in_threadpool(service.activations.record, activation_id)


@router.post("/enrolments", status_code=201, response_model=EnrolmentInfo)
async def enrol(enrolment: KeyEnrolment, request: Request, service: Service) -> EnrolmentInfo:
    caller = str(getattr(request.state, "caller", "admin"))
    return await run_in_threadpool(service.activations.enrol, enrolment, caller)


@router.get("/enrolments/{serial}", response_model=EnrolmentInfo)
async def enrolment(serial: str, service: Service) -> EnrolmentInfo:
    return await run_in_threadpool(service.activations.enrolment, serial)


@router.get("/outbox", response_model=list[SignerOutboxEntry])
async def outbox(
    service: Service,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    activation_id: Annotated[str | None, Query(max_length=64)] = None,
) -> list[SignerOutboxEntry]:
    return await run_in_threadpool(service.activations.outbox.entries, limit, activation_id)
