"""A template row: its definition (roles, fields, message) and its documents' vault
references (content-addressed: envelopes made from it share the stored originals)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from signet.portal.schema import Base, IdColumn, new_id, utc_now
from sqlalchemy import JSON, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column


class Template(Base):
    __tablename__ = "templates"

    id: Mapped[str] = mapped_column(IdColumn, primary_key=True, default=new_id)
    organisation_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    #: `TemplateCreate` as JSON (roles, fields, title, message, policy)
    definition: Mapped[dict[str, Any]] = mapped_column(JSON)
    #: [{name, sha256, size, pages}] in order, as stored in the vault
    documents: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    created_by: Mapped[str] = mapped_column(IdColumn)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
