"""SMS through an HTTP gateway speaking Twilio's Messages API.

Twilio's REST API (``POST /2010-04-01/Accounts/{AccountSid}/Messages.json``, form
fields ``To``, ``From``, ``Body``, ``StatusCallback``, HTTP basic auth with the account
SID and auth token; ``201`` with a JSON resource whose ``sid`` and ``status`` say what
happened; errors as ``{"code", "message", "status"}``; delivery receipts POSTed to the
``StatusCallback`` URL with ``MessageSid`` and ``MessageStatus``) is the most widely
copied SMS gateway protocol, so one adapter serves Twilio and the gateways compatible
with it; a site with another gateway points `base_url` at a small translating relay.
"""

from __future__ import annotations

from collections.abc import Mapping

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from signet.common.logging import register_secret
from signet.common.notify.messages import Channel, Delivery, DeliveryState, Message

#: Twilio's message states, mapped to the outbox's.
_STATES = {
    "accepted": DeliveryState.ACCEPTED,
    "queued": DeliveryState.ACCEPTED,
    "sending": DeliveryState.ACCEPTED,
    "sent": DeliveryState.ACCEPTED,  # handed to the carrier: not yet a receipt
    "delivered": DeliveryState.DELIVERED,
    "undelivered": DeliveryState.FAILED,
    "failed": DeliveryState.FAILED,
}


class SmsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str = Field(pattern=r"^https?://", examples=["https://sms-gateway.internal"])
    account_sid: str = Field(min_length=1, max_length=64)
    auth_token: SecretStr
    sender: str = Field(min_length=1, max_length=32, examples=["+8610000000", "Signet"])
    #: Where the gateway POSTs delivery receipts (the portal's receipt route), if any.
    status_callback: str | None = None
    timeout_seconds: float = Field(default=10.0, gt=0, le=60)


class SmsGateway:
    channel = Channel.SMS

    def __init__(self, settings: SmsSettings, *, client: httpx.Client | None = None) -> None:
        self.settings = settings
        register_secret(settings.auth_token.get_secret_value())
        self._client = client or httpx.Client(timeout=settings.timeout_seconds)

    @property
    def endpoint(self) -> str:
        base = self.settings.base_url.rstrip("/")
        return f"{base}/2010-04-01/Accounts/{self.settings.account_sid}/Messages.json"

    def send(self, message: Message) -> Delivery:
        form = {"To": message.to, "From": self.settings.sender, "Body": message.body}
        if self.settings.status_callback:
            form["StatusCallback"] = self.settings.status_callback
        auth = (self.settings.account_sid, self.settings.auth_token.get_secret_value())
        try:
            answer = self._client.post(self.endpoint, data=form, auth=auth)
        except httpx.HTTPError as exc:
            return Delivery(DeliveryState.FAILED, f"gateway unreachable: {exc}", retryable=True)
        try:
            body = answer.json()
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        if answer.status_code in (200, 201) and isinstance(body.get("sid"), str):
            state = _STATES.get(str(body.get("status")), DeliveryState.ACCEPTED)
            detail = str(body.get("error_message") or f"gateway status {body.get('status')}")
            return Delivery(state, detail, body["sid"], retryable=False)
        reason = body.get("message") or answer.text[:200] or answer.reason_phrase
        code = f" (code {body['code']})" if "code" in body else ""
        retryable = answer.status_code == 429 or answer.status_code >= 500
        return Delivery(
            DeliveryState.FAILED, f"{answer.status_code} {reason}{code}", retryable=retryable
        )


def receipt(form: Mapping[str, str]) -> tuple[str, Delivery] | None:
    """A delivery receipt (the gateway's StatusCallback form) as (message sid, what
    happened), or None when the form is not one.  Authenticating the callback is the
    receiving route's job (Twilio signs it with ``X-Twilio-Signature``)."""
    sid, status = form.get("MessageSid"), form.get("MessageStatus")
    if not sid or status not in _STATES:
        return None
    state = _STATES[status]
    detail = f"gateway status {status}"
    if form.get("ErrorCode"):
        detail += f" (error {form['ErrorCode']})"
    return sid, Delivery(state, detail, sid)
