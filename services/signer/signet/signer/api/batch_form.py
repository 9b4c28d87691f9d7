"""The multipart body of ``POST /v1/batches``, parsed as it arrives into an `Upload`.

A parsed form (Starlette's) first copies every part into a temporary file of its
own; for a thousand one-page documents that copy, and the one from there into the
batch's spool, cost more than a third of the whole upload.  Here each ``documents``
part goes straight from the request stream into the spool (`Upload.write`: hashed
on the way, written 1 MiB at a time from a thread), and only ``options`` and
``image`` are kept in memory, each under its own limit.

Parts may come in any order.  After an error (too many documents, one too large,
an oversized image) the rest of the body is still read and thrown away, so the
client gets the answer instead of a reset connection, as it did with a parsed form.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from signet.common.errors import InvalidRequest, PayloadTooLarge, SignetError
from signet.signer.batch_uploads import WRITE_BUFFER, Upload

#: The largest ``options`` part (JSON `SignOptions`, with any prepared fields).
OPTIONS_LIMIT = 1024 * 1024
#: The longest part header name or value we keep (whatever the parser's own limits).
HEADER_LIMIT = 8 * 1024


@dataclass
class BatchForm:
    """What a batch request carried beside its documents (which are in the `Upload`)."""

    options: str | None = None
    image: bytes | None = None


@dataclass
class _Part:
    kind: str = "ignored"  # "document", "options", "image" or "ignored"
    disposition: bytes = b""
    header_name: bytes = b""
    header_value: bytes = b""
    data: bytearray = field(default_factory=bytearray)


class _Receiver:
    """python-multipart callbacks that route each part; the first error is kept."""

    def __init__(self, upload: Upload, max_documents: int, image_limit: int) -> None:
        self.upload, self.max_documents, self.image_limit = upload, max_documents, image_limit
        self.form = BatchForm()
        self.error: SignetError | None = None
        self._part = _Part()
        self._documents = 0
        #: The closing boundary was seen: python-multipart's `finalize` checks nothing,
        #: so a body cut off between parts would otherwise pass as a shorter batch.
        self.complete = False

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self._begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._data,
            "on_part_end": self._end,
            "on_end": self._complete,
        }

    def _complete(self) -> None:
        self.complete = True

    def _begin(self) -> None:
        self._part = _Part()

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        if self.error is None:
            self._part.header_name += data[start:end]
            self._check_header()

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        if self.error is None:
            self._part.header_value += data[start:end]
            self._check_header()

    def _check_header(self) -> None:
        if max(len(self._part.header_name), len(self._part.header_value)) > HEADER_LIMIT:
            self.error = InvalidRequest(f"a part header is longer than {HEADER_LIMIT} bytes")

    def _header_end(self) -> None:
        if self._part.header_name.lower() == b"content-disposition":
            self._part.disposition = self._part.header_value
        self._part.header_name, self._part.header_value = b"", b""

    def _headers_finished(self) -> None:
        if self.error is not None:
            return
        _, params = parse_options_header(self._part.disposition)
        name = params.get(b"name", b"").decode("utf-8", "replace")
        if name == "documents":
            self._documents += 1
            if self._documents > self.max_documents:
                self.error = InvalidRequest(f"at most {self.max_documents} documents per batch")
                return
            filename = params.get(b"filename")
            self.upload.begin(filename.decode("utf-8", "replace") if filename else None)
            self._part.kind = "document"
        elif name in ("options", "image"):
            self._part.kind = name

    def _data(self, data: bytes, start: int, end: int) -> None:
        part = self._part
        if self.error is not None or part.kind == "ignored":
            return
        try:
            if part.kind == "document":
                self.upload.write(memoryview(data)[start:end])
                return
            part.data += data[start:end]
            if part.kind == "options" and len(part.data) > OPTIONS_LIMIT:
                raise InvalidRequest(f"options are larger than {OPTIONS_LIMIT} bytes")
            if part.kind == "image" and len(part.data) > self.image_limit:
                raise PayloadTooLarge(
                    f"the image is larger than the limit of {self.image_limit} bytes"
                )
        except SignetError as exc:
            self.error = exc

    def _end(self) -> None:
        part = self._part
        if self.error is not None:
            return
        if part.kind == "document":
            self.upload.end()
        elif part.kind == "options":
            self.form.options = part.data.decode("utf-8", "replace")
        elif part.kind == "image":
            self.form.image = bytes(part.data)


async def receive_batch(
    request: Request, upload: Upload, *, max_documents: int, image_limit: int
) -> BatchForm:
    """Read the whole body into `upload`; the options and image it carried.

    Raises the first error the body caused (400 for a body that is not multipart, too
    many documents, a header too long, a body cut off anywhere before its closing
    boundary, 413 for a document or image over its limit),
    once the body has been read to its end.
    """
    content_type = request.headers.get("content-type", "")
    kind, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise InvalidRequest("the body must be multipart/form-data with a boundary")
    receiver = _Receiver(upload, max_documents, image_limit)
    parser = MultipartParser(boundary, receiver.callbacks())  # type: ignore[arg-type]
    malformed = False
    async for chunk in request.stream():
        if malformed:
            continue  # read to the end, answer then
        try:
            parser.write(chunk)
        except FormParserError:
            malformed = True
            continue
        if upload.pending >= WRITE_BUFFER:
            await run_in_threadpool(upload.flush)
    if not malformed:
        try:
            parser.finalize()
        except FormParserError:
            malformed = True
    if receiver.error is not None:
        raise receiver.error
    if malformed:
        raise InvalidRequest("the multipart body is malformed")
    if not receiver.complete:
        raise InvalidRequest("the multipart body was cut off before its closing boundary")
    return receiver.form
