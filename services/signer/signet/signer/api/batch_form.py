"""The multipart body of ``POST /v1/batches``, parsed as it arrives into an `Upload`.

A parsed form (Starlette's) first copies every part into a temporary file of its
own; for a thousand one-page documents that copy, and the one from there into the
batch's spool, cost more than a third of the whole upload.  Here each ``documents``
part goes straight from the request stream into the spool (`Upload.write`: hashed
on the way, written 1 MiB at a time from a thread), and only ``options`` and
``image`` are kept in memory, each under its own limit.

The parser is `multipart`'s `PushMultipartParser` (the sans-I/O parser of Bottle's
author), not python-multipart's, which FastAPI uses for ``/v1/sign``: it finds
boundaries and header ends with ``bytes.find`` and hands over one event per part
header, per body chunk and per part end, where python-multipart walks every header
byte in Python and calls back about twelve times per part.  Receiving the 1,000
one-page documents of the benchmark (4.9 MB, 64 KiB chunks) took 64-66 ms of CPU
with python-multipart and 47-48 ms with this parser (least of 10 runs, interleaved,
on a loaded 2-core machine; the parser alone: 14 and 9 ms); `streaming-form-data`,
whose C scanner is quick on large parts, parses every header line with
`email.parser` and took 660 ms.  This parser also tells a body that ended before its
closing boundary (`PushMultipartParser.close`), which python-multipart's
``finalize`` did not.

Parts may come in any order.  After an error (too many documents, one too large,
an oversized image, a malformed body) the rest of the body is still read and thrown
away, so the client gets the answer instead of a reset connection, as it did with a
parsed form.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from multipart import (
    MultipartError,
    MultipartSegment,
    ParserLimitReached,
    PushMultipartParser,
    parse_options_header,
)
from signet.common.errors import InvalidRequest, PayloadTooLarge, SignetError
from signet.signer.batch.uploads import WRITE_BUFFER, Upload

#: The largest ``options`` part (JSON `SignOptions`, with any prepared fields).
OPTIONS_LIMIT = 1024 * 1024
#: The longest part header line, name and value (a part's headers are held until their
#: blank line, so this bounds them: a client cannot make us buffer an endless header).
HEADER_LIMIT = 8 * 1024
#: The most header lines one part may have (RFC 7578 defines three).
HEADER_COUNT = 16


@dataclass
class BatchForm:
    """What a batch request carried beside its documents (which are in the `Upload`)."""

    options: str | None = None
    image: bytes | None = None


def _latin1_to_utf8(value: str | None) -> str | None:
    """A header parameter as the client meant it: the parser decodes header bytes as
    Latin-1 (which never fails), clients send UTF-8; bytes that are not UTF-8 become
    U+FFFD instead of refusing the request."""
    if value is None:
        return None
    return value.encode("latin-1").decode("utf-8", "replace")


class _Receiver:
    """Routes the parser's events: each document into the upload, options and the image
    into memory under their limits, any other part nowhere.  Raises `SignetError`."""

    def __init__(self, upload: Upload, max_documents: int, image_limit: int) -> None:
        self.upload, self.max_documents, self.image_limit = upload, max_documents, image_limit
        self.form = BatchForm()
        self._documents = 0
        self._kind = "ignored"  # of the current part: "document", "options", "image"
        self._data = bytearray()

    def begin(self, segment: MultipartSegment) -> None:
        name = _latin1_to_utf8(segment.name)
        if name == "documents":
            self._documents += 1
            if self._documents > self.max_documents:
                raise InvalidRequest(f"at most {self.max_documents} documents per batch")
            self.upload.begin(_latin1_to_utf8(segment.filename))
            self._kind = "document"
        elif name in ("options", "image"):
            self._kind = name
            self._data = bytearray()
        else:
            self._kind = "ignored"

    def data(self, chunk: bytes) -> None:
        kind = self._kind
        if kind == "document":
            self.upload.write(chunk)
        elif kind == "options":
            self._data += chunk
            if len(self._data) > OPTIONS_LIMIT:
                raise InvalidRequest(f"options are larger than {OPTIONS_LIMIT} bytes")
        elif kind == "image":
            self._data += chunk
            if len(self._data) > self.image_limit:
                raise PayloadTooLarge(
                    f"the image is larger than the limit of {self.image_limit} bytes"
                )

    def end(self) -> None:
        kind = self._kind
        if kind == "document":
            self.upload.end()
        elif kind == "options":
            self.form.options = self._data.decode("utf-8", "replace")
        elif kind == "image":
            self.form.image = bytes(self._data)
        self._kind = "ignored"

    def feed(self, parser: PushMultipartParser, chunk: bytes) -> None:
        """Parse one chunk of the body; `close` the parser after the last."""
        for event in parser.parse(chunk):
            if isinstance(event, bytes):
                self.data(event)
            elif event is None:
                self.end()
            else:
                self.begin(event)


def _boundary(content_type: str) -> str:
    kind, params = parse_options_header(content_type)
    boundary: str = params.get("boundary", "")
    if kind != "multipart/form-data" or not boundary:
        raise InvalidRequest("the body must be multipart/form-data with a boundary")
    return boundary


def _refusal(exc: MultipartError) -> InvalidRequest:
    if isinstance(exc, ParserLimitReached):
        return InvalidRequest(
            f"a part's headers are longer than {HEADER_LIMIT} bytes a line or "
            f"{HEADER_COUNT} lines ({exc})"
        )
    return InvalidRequest(f"the multipart body is malformed ({exc})")


async def receive_batch(
    request: Request, upload: Upload, *, max_documents: int, image_limit: int
) -> BatchForm:
    """Read the whole body into `upload`; the options and image it carried.

    Raises the first error the body caused (400 for a body that is not multipart, too
    many documents, a header too long, malformed multipart, a body cut off anywhere
    before its closing boundary, 413 for a document or image over its limit),
    once the body has been read to its end.
    """
    try:
        parser = PushMultipartParser(
            _boundary(request.headers.get("content-type", "")),
            max_header_size=HEADER_LIMIT,
            max_header_count=HEADER_COUNT,
            header_charset="latin1",
        )
    except MultipartError as exc:  # a boundary it cannot use (a line break in it)
        raise InvalidRequest(f"the multipart boundary is not usable ({exc})") from exc
    receiver = _Receiver(upload, max_documents, image_limit)
    error: SignetError | None = None
    async for chunk in request.stream():
        if error is not None or not chunk:
            continue  # read to the end, answer then; b"" is Starlette's end of stream
        try:
            receiver.feed(parser, chunk)
        except MultipartError as exc:
            error = _refusal(exc)
        except SignetError as exc:
            error = exc
        if upload.pending >= WRITE_BUFFER:
            await run_in_threadpool(upload.flush)
    if error is None:
        try:
            parser.close()  # raises unless the closing boundary was seen
        except MultipartError:
            error = InvalidRequest("the multipart body was cut off before its closing boundary")
    if error is not None:
        raise error
    return receiver.form
