"""``signet outbox``: the messages the appliance holds or has sent, for an administrator.

On the embedded default no mail or SMS gateway is configured, so one-time codes and
signing links wait in the portal's outbox: this is how a newcomer reads them.  It reads
the portal's database directly (no running portal and no API key needed, only this
user's ``$SIGNET_HOME``), newest first.  With a gateway configured the stored bodies are
masked, so nothing secret is shown here either.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from signet.cli.embedded import portal_settings
from signet.portal.database import open_portal_database
from signet.portal.notifications.models import OutboxMessage
from sqlalchemy import select

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
    if as_json:
        for m in messages:
            print(
                json.dumps(
                    {
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
                        "created_at": m.created_at.isoformat(),
                    },
                    ensure_ascii=False,
                )
            )
        return
    if not messages:
        console.print("The outbox is empty: nothing has been sent yet.")
        return
    table = Table(show_lines=True)
    for column in ("when (UTC)", "to", "state", "message"):
        table.add_column(column)
    for m in messages:
        state = m.state if not m.detail else f"{m.state}\n{m.detail}"
        table.add_row(
            m.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            f"{m.to}\n({m.channel})",
            state,
            f"{m.subject}\n{m.body}",
        )
    console.print(table)
