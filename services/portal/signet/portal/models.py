"""Every table of the portal, for migrations and tests (importing this registers them)."""

from signet.portal.accounts.models import ApiKey, Organisation, User, WebSession
from signet.portal.envelopes.models import Document, Envelope, EnvelopeField, Recipient
from signet.portal.evidence.models import LedgerEvent
from signet.portal.identity.models import IdentityCode
from signet.portal.jobs.models import Job
from signet.portal.notifications.models import OutboxMessage
from signet.portal.schema import Base
from signet.portal.templates.models import Template
from signet.portal.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookSubscription

__all__ = [
    "ApiKey",
    "Base",
    "Document",
    "Envelope",
    "EnvelopeField",
    "IdentityCode",
    "Job",
    "LedgerEvent",
    "Organisation",
    "OutboxMessage",
    "Recipient",
    "Template",
    "User",
    "WebSession",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookSubscription",
]
