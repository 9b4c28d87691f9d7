"""Signer attachments over HTTP: the recipient uploads through their link
(`POST /api/v1/attachments/{token}/{field_id}`, under its own body limit: the other
recipient routes stay at 256 KiB), the sender downloads
(`GET /api/v1/envelopes/{id}/attachments/{field_id}`)."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, File, Path, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import BaseModel
from signet.common.errors import InvalidRequest, NotFound, PayloadTooLarge
from signet.portal.envelopes.attachments import MAX_ATTACHMENT_BYTES, Attachments
from signet.portal.envelopes.models import FieldKind
from signet.portal.http.deps import OriginDep, PortalDep, PrincipalDep
from signet.portal.http.envelopes import _own

router = APIRouter(tags=["attachments"])
Token = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{20,64}$", description="the link's token")]
FieldId = Annotated[str, Path(pattern=r"^[0-9a-f-]{36}$", description="the field's id")]
EnvelopeId = Annotated[str, Path(pattern=r"^[0-9a-f-]{36}$")]


class AttachmentOut(BaseModel):
    field_id: str
    name: str
    sha256: str
    content_type: str
    size: int


@router.post("/api/v1/attachments/{token}/{field_id}", response_model=AttachmentOut)
async def upload_attachment(
    portal: PortalDep,
    origin: OriginDep,
    token: Token,
    field_id: FieldId,
    file: Annotated[
        UploadFile | None, File(description="a PDF, PNG or JPEG of at most 10 MiB")
    ] = None,
) -> AttachmentOut:
    """A recipient's upload for one of their attachment fields, in turn and after the
    identity check; stored in the vault, its hash in the ledger and, once they sign, in
    the signed revision and the certificate of completion.  The link is checked before
    the upload is looked at (an unknown link is 404 whatever it sends)."""
    attachments = Attachments(portal.envelopes, portal.storage)
    data = await file.read(MAX_ATTACHMENT_BYTES + 1) if file is not None else None
    if data is None or len(data) > MAX_ATTACHMENT_BYTES:
        await run_in_threadpool(attachments.check, token, field_id)  # the link first
        if data is None:
            raise InvalidRequest("body.file: Field required (the file, as a multipart part)")
        raise PayloadTooLarge(f"an attachment is at most {MAX_ATTACHMENT_BYTES} bytes")
    field = await run_in_threadpool(
        attachments.upload, token, field_id, data, file.filename if file else None, origin
    )
    portal.drain.poke()
    value = field.value or {}
    return AttachmentOut(
        field_id=field.id, name=value["name"], sha256=value["sha256"],
        content_type=value["content_type"], size=int(value["size"]),
    )  # fmt: skip


@router.get(
    "/api/v1/envelopes/{envelope_id}/attachments/{field_id}",
    response_class=Response,
    responses={200: {"content": {"application/pdf": {}, "image/png": {}, "image/jpeg": {}}}},
)
async def download_attachment(
    portal: PortalDep, principal: PrincipalDep, envelope_id: EnvelopeId, field_id: FieldId
) -> Response:
    """The file a recipient uploaded for this field (the sender's or an admin's key)."""
    envelope = await run_in_threadpool(
        portal.envelopes.get, principal.organisation_id, envelope_id, _own(principal)
    )
    field = next((f for f in envelope.fields if f.id == field_id), None)
    value = (field.value or {}) if field is not None else {}
    if field is None or field.kind != FieldKind.ATTACHMENT.value or not value.get("sha256"):
        raise NotFound(f"no uploaded attachment for field {field_id}")
    data = await run_in_threadpool(portal.storage.get, value["sha256"])
    name = value["name"]
    fallback = name.encode("ascii", "replace").decode().replace('"', "_") or "attachment"
    disposition = f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name)}"
    headers = {"Content-Disposition": disposition, "X-Signet-Sha256": value["sha256"]}
    return Response(data, media_type=value["content_type"], headers=headers)
