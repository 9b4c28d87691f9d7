"""The portal's FastAPI application factory (``uvicorn signet.portal.app:create_app``).

One process holds the database (migrated on open), the clients of the signer and
storage (its own caller token), and the ledger drain thread.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from signet.common import fonts
from signet.common.clients import SignerClient, StorageClient
from signet.common.errors import SignetError
from signet.common.gate import GateRules, RequestGate
from signet.common.http import service_app
from signet.common.logging import configure_logging
from signet.common.notify import Channel
from signet.common.notify.messages import Transport
from signet.common.notify.sms import SmsGateway
from signet.common.notify.smtp import SmtpTransport
from signet.common.policies import PolicyDirectory
from signet.portal.accounts.service import Accounts
from signet.portal.accounts.signin import SignIns
from signet.portal.config import PortalSettings
from signet.portal.database import open_portal_database
from signet.portal.envelopes.addressing import current_link_token
from signet.portal.envelopes.attachments import MAX_ATTACHMENT_BYTES
from signet.portal.envelopes.completion import Completion, CompletionSweep
from signet.portal.envelopes.deadlines import DeadlineWatch
from signet.portal.envelopes.filling import FieldFilling
from signet.portal.envelopes.service import EnvelopeService, PortalKeys
from signet.portal.envelopes.signature import SignatureStep
from signet.portal.envelopes.signing import SigningService
from signet.portal.evidence.drain import LedgerDrain
from signet.portal.http import accounts as accounts_api
from signet.portal.http import attachments as attachments_api
from signet.portal.http import envelopes as envelopes_api
from signet.portal.http import links as links_api
from signet.portal.http import outbox as outbox_api
from signet.portal.http import templates as templates_api
from signet.portal.http import webhooks as webhooks_api
from signet.portal.http.access import KeyAuthorizer
from signet.portal.http.deps import Portal
from signet.portal.identity.service import IdentityService
from signet.portal.jobs.queue import Worker
from signet.portal.notifications.dispatch import Dispatcher
from signet.portal.pages import router as pages_router
from signet.portal.periodic import PeriodicThread
from signet.portal.policy import policy_chooser
from signet.portal.templates.service import TemplateService
from signet.portal.webhooks import hook as webhook_hook
from signet.portal.webhooks.wiring import webhook_parts
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import sessionmaker

#: the recipient routes' body limit: the sign request carries a base64 PNG (160 KiB)
LINK_BODY_MAX = 256 * 1024
#: the pages' forms: the signature form carries the PNG as a URL-encoded data URL
PAGE_BODY_MAX = 320 * 1024


def build_portal(settings: PortalSettings) -> Portal:
    settings.home.mkdir(parents=True, exist_ok=True, mode=0o700)
    database = open_portal_database(settings.database())
    sessions = sessionmaker(database.engine, expire_on_commit=False)
    keys = PortalKeys(settings.derived_key("links"), settings.derived_key("codes"))
    envelopes = EnvelopeService(
        sessions,
        policy_chooser(PolicyDirectory(settings.policy_dir)),
        keys,
        portal_url=settings.public_url,
        held=settings.messages_held,
    )
    token = settings.caller_token()
    storage = StorageClient(settings.storage_url, token)
    signer = SignerClient(settings.signer_url, token)
    dispatcher = Dispatcher(
        sessions,
        transports(settings),
        lambda session, recipient_id: current_link_token(session, keys.link_key, recipient_id),
    )
    held = settings.messages_held
    watch = DeadlineWatch(envelopes)
    completion = Completion(
        envelopes, signer, storage,
        seal_label=settings.seal_key_label, font=settings.certificate_font,
    )  # fmt: skip
    sweep = CompletionSweep(completion, grace=timedelta(seconds=settings.completion_grace_seconds))
    webhooks, handlers = webhook_parts(settings, sessions)
    worker = Worker(sessions, handlers, concurrency=settings.job_concurrency)
    return Portal(
        settings=settings,
        accounts=Accounts(sessions),
        signins=SignIns(sessions),
        envelopes=envelopes,
        identity=IdentityService(envelopes, deliver=None if held else dispatcher.deliver_now),
        filling=FieldFilling(envelopes),
        signing=SigningService(envelopes, signer),
        signature=SignatureStep(envelopes, signer, storage),
        completion=completion,
        storage=storage,
        signer=signer,
        drain=LedgerDrain(sessions, storage),
        dispatcher=dispatcher,
        dispatching=None if held else PeriodicThread("outbox-dispatcher", dispatcher.run_due, 1.0),
        deadlines=PeriodicThread("deadlines", watch.look, settings.deadline_check_seconds),
        completions=PeriodicThread("completions", sweep.step, settings.completion_check_seconds),
        webhooks=webhooks,
        templates=TemplateService(envelopes),
        worker=worker,
        jobs=PeriodicThread("jobs", worker.step, settings.job_check_seconds),
    )


def transports(settings: PortalSettings) -> dict[Channel, Transport]:
    """The gateways the admin configured; a channel without one fails its messages
    with that reason (never pretends to send)."""
    found: dict[Channel, Transport] = {}
    if settings.smtp is not None:
        found[Channel.EMAIL] = SmtpTransport(settings.smtp)
    if settings.sms is not None:
        found[Channel.SMS] = SmsGateway(settings.sms)
    return found


def create_app(settings: PortalSettings | None = None) -> FastAPI:
    settings = settings or PortalSettings()
    configure_logging(settings.log_level)
    # httpx logs every request at INFO: the readiness probes' calls would fill the log
    logging.getLogger("httpx").setLevel(logging.WARNING)
    portal = build_portal(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        portal.drain.start()
        if portal.dispatching is not None:
            portal.dispatching.start()
        portal.deadlines.start()
        portal.completions.start()
        portal.jobs.start()
        webhook_hook.wake_on_commit(portal.jobs.wake)
        if settings.certificate_font.is_file():  # decoded now, not in the first completion
            font = str(settings.certificate_font)
            threading.Thread(target=fonts.master, args=(font,), daemon=True).start()
        yield
        webhook_hook.wake_on_commit(portal.jobs.wake, remove=True)
        portal.jobs.stop()
        portal.worker.close()
        portal.completions.stop()
        portal.deadlines.stop()
        if portal.dispatching is not None:
            portal.dispatching.stop()
        portal.drain.stop()
        portal.storage.close()
        portal.signer.close()

    app = service_app("Signet portal", lifespan, service="portal")
    app.state.portal = portal
    for router in (envelopes_api.router, links_api.router, accounts_api.router, outbox_api.router,
                   attachments_api.router, webhooks_api.router, templates_api.router):  # fmt: skip
        app.include_router(router)
    app.include_router(pages_router)
    upload = settings.max_documents * settings.max_document_bytes + 1024 * 1024
    app.add_middleware(
        RequestGate,
        authorize=KeyAuthorizer(portal.accounts),
        rules=GateRules(
            default_limit=64 * 1024,
            limits={
                "/api/v1/envelopes": upload,
                "/api/v1/templates": upload,
                "/api/v1/links/*": LINK_BODY_MAX,
                "/api/v1/attachments/*": MAX_ATTACHMENT_BYTES + 64 * 1024,
                "/s/*": PAGE_BODY_MAX,
            },
        ),
    )

    @app.get("/readyz", tags=["health"])
    async def readyz() -> JSONResponse:
        """Ready when the database answers and the signer and storage are reachable."""
        report: dict[str, object] = {"start_nonce": os.environ.get("SIGNET_START_NONCE")}
        problems = []

        def database() -> None:
            with portal.envelopes.sessions() as session:
                session.execute(text("SELECT 1"))

        try:
            await run_in_threadpool(database)
            report["database"] = "ready"
        except SQLAlchemyError as exc:
            report["database"] = "unavailable"
            problems.append(f"database: {type(exc).__name__}")
        for name, client in (("signer", portal.signer), ("storage", portal.storage)):
            try:
                await run_in_threadpool(client.request, "GET", "/healthz")
                report[name] = "reachable"
            except SignetError as exc:
                report[name] = "unreachable"
                problems.append(exc.detail)
        if problems:
            report |= {"status": "unavailable", "reason": "; ".join(problems)}
            return JSONResponse(report, status_code=503)
        return JSONResponse(report | {"status": "ready"})

    return app
