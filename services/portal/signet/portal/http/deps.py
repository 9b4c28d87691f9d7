"""FastAPI dependencies of the portal's routes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from signet.common.clients import SignerClient, StorageClient
from signet.common.errors import Unauthorized
from signet.portal.accounts.service import Accounts, Principal
from signet.portal.accounts.signin import SignIns
from signet.portal.config import PortalSettings
from signet.portal.envelopes.completion import Completion
from signet.portal.envelopes.filling import FieldFilling
from signet.portal.envelopes.service import EnvelopeService
from signet.portal.envelopes.signature import SignatureStep
from signet.portal.envelopes.signing import SigningService
from signet.portal.evidence.drain import LedgerDrain
from signet.portal.evidence.record import Origin
from signet.portal.identity.service import IdentityService
from signet.portal.jobs.queue import Worker
from signet.portal.notifications.dispatch import Dispatcher
from signet.portal.periodic import PeriodicThread
from signet.portal.templates.service import TemplateService
from signet.portal.webhooks.service import WebhookService


@dataclass
class Portal:
    """Everything a request may need, made once per process by the app factory."""

    settings: PortalSettings
    accounts: Accounts
    #: the pages' sign-in with a password, and their sessions
    signins: SignIns
    envelopes: EnvelopeService
    identity: IdentityService
    filling: FieldFilling
    signing: SigningService
    signature: SignatureStep
    completion: Completion
    storage: StorageClient
    signer: SignerClient
    drain: LedgerDrain
    dispatcher: Dispatcher
    #: the thread that sends queued messages; None when messages are held
    dispatching: PeriodicThread | None
    #: expiry at the deadline and the policy's reminders
    deadlines: PeriodicThread
    #: finishes every envelope left completing (a crash, a service away)
    completions: PeriodicThread
    webhooks: WebhookService
    templates: TemplateService
    #: the jobs table's worker (webhook deliveries), and the thread that runs it
    worker: Worker
    jobs: PeriodicThread


def get_portal(request: Request) -> Portal:
    portal: Portal = request.app.state.portal
    return portal


def get_principal(request: Request) -> Principal:
    principal: Principal | None = getattr(request.state, "principal", None)
    if principal is None:  # the gate sets it for every keyed route
        raise Unauthorized("an API key is required")
    return principal


def get_origin(request: Request) -> Origin:
    client = request.client.host if request.client else None
    return Origin.of(client, request.headers.get("user-agent"))


PortalDep = Annotated[Portal, Depends(get_portal)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
OriginDep = Annotated[Origin, Depends(get_origin)]
