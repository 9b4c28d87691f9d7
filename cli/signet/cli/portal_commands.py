"""``signet outbox``: the messages the appliance holds or has sent, for an administrator.

On the embedded default no mail or SMS gateway is configured, so one-time codes and
signing links wait in the portal's outbox, and activation codes (the code a signer
types to confirm a signature) in the signer's: this is how a newcomer reads them.  It
reads both databases directly (no running service and no API key needed, only this
user's ``$SIGNET_HOME``), newest first; each row says which service holds it.  With a
gateway configured the stored bodies are masked, so nothing secret is shown here either.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from signet.cli.embedded import portal_settings, signer_settings
from signet.portal.database import open_portal_database
from signet.portal.notifications.models import OutboxMessage
from signet.signer.activation.tables import OutboxRow
from signet.signer.database import open_registry
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

console = Console()


def outbox(
    envelope: Annotated[str | None, typer.Option(help="only this envelope's messages")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="at most this many")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per line")] = False,
) -> None:
    """Show the outbox: every message with its real state (held, accepted, failed, …)."""
    settings = portal_settings()
    database = open_portal_database(settings.database())
    try:
        query = select(OutboxMessage).order_by(OutboxMessage.created_at.desc(), OutboxMessage.id)
        if envelope is not None:
            query = query.where(OutboxMessage.envelope_id == envelope)
        with database.session() as session:
            messages = list(session.scalars(query.limit(limit)))
    finally:
        database.engine.dispose()
    rows = [_portal_row(m) for m in messages]
    if envelope is None:
        rows = sorted(
            [*rows, *_signer_rows(limit)], key=lambda r: str(r["created_at"]), reverse=True
        )
    rows = rows[:limit]
    if as_json:
        for row in rows:
            print(json.dumps(row, ensure_ascii=False))
        return
    if not rows:
        console.print("The outbox is empty: nothing has been sent yet.")
        return
    table = Table(show_lines=True)
    for column in ("when (UTC)", "service", "to", "state", "message"):
        table.add_column(column)
    for row in rows:
        state = row["state"] if not row["detail"] else f"{row['state']}\n{row['detail']}"
        table.add_row(
            str(row["created_at"])[:19].replace("T", " "),
            str(row["service"]),
            f"{row['to']}\n({row['channel']})",
            str(state),
            f"{row['subject']}\n{row['body']}",
        )
    console.print(table)


def _portal_row(m: OutboxMessage) -> dict[str, object]:
    return {
        "service": "portal",
        "id": m.id,
        "envelope_id": m.envelope_id,
        "recipient_id": m.recipient_id,
        "notice": m.notice,
        "channel": m.channel,
        "to": m.to,
        "subject": m.subject,
        "body": m.body,
        "state": m.state,
        "detail": m.detail,
        "attempts": m.attempts,
        "created_at": m.created_at.replace(tzinfo=None).isoformat(),
    }


def _signer_rows(limit: int) -> list[dict[str, object]]:
    """The signer's activation codes (`signet.signer.activation.outbox`); none when its
    database does not exist yet or predates activation."""
    url = signer_settings().resolved_database_url()
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return []  # no signer has run here yet: nothing to show, nothing to create
    try:
        registry = open_registry(url)
    except (SQLAlchemyError, OSError):
        return []
    try:
        with registry.session() as session:
            found = list(
                session.scalars(select(OutboxRow).order_by(OutboxRow.id.desc()).limit(limit))
            )
    except SQLAlchemyError:
        return []
    return [
        {
            "service": "signer",
            "id": str(row.id),
            "activation_id": row.activation_id,
            "notice": "intent_code",
            "channel": row.channel,
            "to": row.to,
            "subject": row.subject,
            "body": row.body,
            "state": row.state,
            "detail": row.detail,
            "attempts": 1,
            "created_at": row.created_at.replace(tzinfo=None).isoformat(),
        }
        for row in found
    ]
