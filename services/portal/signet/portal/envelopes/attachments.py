"""Signer attachments: files a recipient is asked to upload (an ID copy, a supporting
document) through an ``attachment`` field of theirs.

The file is checked by its content (a PDF, PNG or JPEG, whatever the browser calls
it), stored in the vault under the envelope (write once, retained), and recorded as
one ledger event whose document hashes name it: so the evidence package holds the
file and the certificate of completion lists its SHA-256.  The field's value names
the file and its hash and is stamped into the revision the recipient then signs, so
the signature covers which file was given.  Uploading again replaces the field's
value (the earlier file stays in the vault and the ledger: nothing is deleted).
"""

from __future__ import annotations

import hashlib
import io
import unicodedata

from signet.common.clients import StorageClient
from signet.common.contracts.storage import ObjectKind
from signet.common.errors import NotFound, SignetError
from signet.portal.envelopes.documents import DocumentRefused, page_count
from signet.portal.envelopes.models import EnvelopeField, FieldKind
from signet.portal.envelopes.service import EnvelopeService
from signet.portal.evidence.record import NOWHERE, Origin, record_event
from sqlalchemy.orm import Session

#: The largest attachment; the recipient routes' gate allows this much for the upload.
MAX_ATTACHMENT_BYTES = 10 * 1024 * 1024
#: The largest image attachment, read from its header before any pixel is decoded.
MAX_IMAGE_PIXELS = 40_000_000
#: What an attachment may be, told by its first bytes (never by the declared type).
_MAGIC = (
    (b"%PDF-", "application/pdf"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
)


class AttachmentRefused(SignetError):
    status_code = 422
    code = "attachment_refused"


def content_type_of(data: bytes) -> str:
    """The attachment's type, once it reads as one: a damaged file is refused now, not
    found unreadable years later in the evidence package."""
    content_type = next((kind for magic, kind in _MAGIC if data.startswith(magic)), None)
    if content_type is None:
        raise AttachmentRefused("an attachment is a PDF, a PNG or a JPEG file")
    if content_type == "application/pdf":
        try:
            page_count(data, "the attachment")
        except DocumentRefused as refused:
            raise AttachmentRefused(refused.detail) from None
        return content_type
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.width * image.height > MAX_IMAGE_PIXELS:
                raise AttachmentRefused("the image is too large (over 40 megapixels)")
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise AttachmentRefused("the image is damaged and cannot be read") from exc
    return content_type


def clean_name(name: str | None) -> str:
    """The file's name as the certificate prints it: no path, no control characters."""
    base = (name or "attachment").replace("\\", "/").rsplit("/", 1)[-1]
    kept = "".join(c for c in base if unicodedata.category(c)[0] != "C").strip()
    return kept[:120] or "attachment"


class Attachments:
    def __init__(self, envelopes: EnvelopeService, storage: StorageClient) -> None:
        self.envelopes, self.storage = envelopes, storage

    def upload(
        self, token: str, field_id: str, data: bytes, name: str | None,
        origin: Origin = NOWHERE,
    ) -> EnvelopeField:  # fmt: skip
        envelope_id = self.check(token, field_id)
        if not data:
            raise AttachmentRefused("the file is empty")
        if len(data) > MAX_ATTACHMENT_BYTES:
            raise AttachmentRefused(f"an attachment is at most {MAX_ATTACHMENT_BYTES} bytes")
        content_type = content_type_of(data)
        filename = clean_name(name)
        # stored before the field names it: a crash leaves a retained, unnamed object,
        # never a field naming a file the vault does not have
        info = self.storage.put(
            data, ObjectKind.ATTACHMENT, envelope_id=envelope_id, content_type=content_type
        )
        sha256 = hashlib.sha256(data).hexdigest()
        assert info.sha256 == sha256
        service = self.envelopes
        with service.sessions.begin() as session:
            recipient, envelope = service.by_link(session, token)
            field = self._field(session, recipient.id, field_id)
            service.require_turn(envelope, recipient)
            field.value = {
                "value": f"{filename} · SHA-256 {sha256[:16]}",
                "name": filename,
                "sha256": sha256,
                "content_type": content_type,
                "size": str(len(data)),
            }
            record_event(
                session, envelope.id, "attachment.uploaded", f"recipient:{recipient.id}",
                origin, document_hashes=[sha256],
                details={"field": field.id, "name": filename, "content_type": content_type,
                         "size": str(len(data))},
            )  # fmt: skip
            session.flush()
            session.expunge(field)
            return field

    def check(self, token: str, field_id: str) -> str:
        """Everything but the upload, checked first (an unknown link is refused whatever
        it sends) and before the file is stored: a refused request stores nothing."""
        service = self.envelopes
        with service.sessions() as session:
            recipient, envelope = service.by_link(session, token)
            service.require_turn(envelope, recipient)
            self._field(session, recipient.id, field_id)
            return envelope.id

    @staticmethod
    def _field(session: Session, recipient_id: str, field_id: str) -> EnvelopeField:
        field = session.get(EnvelopeField, field_id)
        if field is None or field.recipient_id != recipient_id:
            raise NotFound(f"no field {field_id} for this recipient")
        if field.kind != FieldKind.ATTACHMENT.value:
            raise AttachmentRefused(f"field {field_id} is a {field.kind} field, not an attachment")
        return field


def missing_attachments(fields: list[EnvelopeField], recipient_id: str) -> list[str]:
    """The labels (or ids) of this recipient's required attachments not yet uploaded."""
    return [
        f.label or f.id
        for f in fields
        if f.recipient_id == recipient_id
        and f.kind == FieldKind.ATTACHMENT.value
        and f.required
        and not (f.value or {}).get("sha256")
    ]
