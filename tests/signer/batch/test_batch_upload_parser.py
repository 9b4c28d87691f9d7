"""`receive_batch` on its own: the multipart edge cases of a streamed batch upload.

The route's tests (`test_batches.py`) go through HTTP; these feed the parser bodies
cut into chunks at chosen places (every offset, one byte at a time), so a boundary,
a header or a CRLF split across two chunks is covered without a server.
"""

from __future__ import annotations

import hashlib
import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from signet.common.errors import InvalidRequest, PayloadTooLarge, SignetError
from signet.signer.api import batch_form
from signet.signer.api.batch_form import BatchForm, receive_batch
from signet.signer.batch.uploads import SPOOL, WRITE_BUFFER, Upload, safe_filename
from starlette.requests import Request
from starlette.types import Message

BOUNDARY = "----SignetParserTest7MA4YWxkTrZu0gW"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"
OPTIONS = b'{"certificate_serial": "01", "level": "B-B"}'
#: Documents whose bytes look like pieces of the delimiter, so a parser that matched
#: a partial boundary at a chunk edge (or dropped the CR before one) would corrupt them.
DOCUMENTS = [
    b"%PDF-1.7\r\n--" + BOUNDARY[:-1].encode() + b"\r\n\r\n--\r\r\n%%EOF",
    b"%PDF-1.7\n--" + BOUNDARY.encode() + b"\n--" + BOUNDARY.encode() + b"x\r\n%%EOF\r\n",
    b"\r\n",
]


def part(
    name: str, data: bytes, *, filename: str | bytes | None = None, extra: bytes = b""
) -> bytes:
    disposition = f'form-data; name="{name}"'.encode()
    if filename is not None:
        raw = filename.encode() if isinstance(filename, str) else filename
        disposition += b'; filename="' + raw + b'"'
    return (
        f"--{BOUNDARY}\r\n".encode()
        + b"Content-Disposition: "
        + disposition
        + b"\r\n"
        + extra
        + b"\r\n"
        + data
        + b"\r\n"
    )


def body(*parts: bytes, preamble: bytes = b"", epilogue: bytes = b"\r\n") -> bytes:
    return preamble + b"".join(parts) + f"--{BOUNDARY}--".encode() + epilogue


def standard_body() -> bytes:
    return body(
        *(part("documents", d, filename=f"d{i}.pdf") for i, d in enumerate(DOCUMENTS)),
        part("options", OPTIONS),
    )


@dataclass
class Received:
    form: BatchForm
    names: list[str]
    documents: list[bytes]
    hashes_match: bool


class Feeder:
    """A request whose body arrives in the given chunks; counts what was read."""

    def __init__(self, chunks: Sequence[bytes], content_type: str = CONTENT_TYPE) -> None:
        self.chunks = list(chunks)
        self.read = 0
        scope = {
            "type": "http",
            "method": "POST",
            "path": "/v1/batches",
            "headers": [(b"content-type", content_type.encode("latin-1"))],
        }
        self.request = Request(scope, self._receive)

    async def _receive(self) -> Message:
        if self.read < len(self.chunks):
            chunk = self.chunks[self.read]
            self.read += 1
            return {"type": "http.request", "body": chunk, "more_body": True}
        return {"type": "http.request", "body": b"", "more_body": False}


async def receive(
    tmp_path: Path,
    chunks: Sequence[bytes],
    *,
    content_type: str = CONTENT_TYPE,
    max_documents: int = 100,
    image_limit: int = 1024,
    max_document_bytes: int = 10**9,
    drained: bool = True,
) -> Received:
    """Run `receive_batch`; the documents as the spool holds them.  Checks that the
    whole body was read, error or not (unless not `drained`: a request that is not
    multipart is answered at once), and removes the staging folder."""
    upload = Upload(tmp_path / "batches", max_document_bytes)
    feeder = Feeder(chunks, content_type)
    try:
        try:
            form = await receive_batch(
                feeder.request, upload, max_documents=max_documents, image_limit=image_limit
            )
        finally:
            if drained:
                assert feeder.read == len(feeder.chunks), "the rest of the body was not read"
        upload.flush()
        spool = (upload.staging / "in" / SPOOL).read_bytes()
        documents = [spool[i.offset : i.offset + i.size] for i in upload.items]
        return Received(
            form,
            [i.filename for i in upload.items],
            documents,
            all(
                hashlib.sha256(d).hexdigest() == i.sha256
                for d, i in zip(documents, upload.items, strict=True)
            ),
        )
    finally:
        upload.discard()
        assert not upload.staging.exists()


def split(data: bytes, *cuts: int) -> list[bytes]:
    edges = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


def assert_standard(received: Received) -> None:
    assert received.documents == DOCUMENTS
    assert received.hashes_match
    assert received.names == ["d0.pdf", "d1.pdf", "d2.pdf"]
    assert received.form.options == OPTIONS.decode()
    assert received.form.image is None


async def test_a_body_split_in_two_at_every_offset_gives_the_same_batch(tmp_path: Path) -> None:
    """Every boundary, header line, CRLF and blank line falls on a chunk edge once."""
    data = standard_body()
    for cut in range(len(data) + 1):
        assert_standard(await receive(tmp_path, split(data, cut)))


async def test_a_body_one_byte_at_a_time_and_in_random_chunks(tmp_path: Path) -> None:
    data = standard_body()
    assert_standard(await receive(tmp_path, [data[i : i + 1] for i in range(len(data))]))
    rng = random.Random(7)
    for _ in range(50):
        cuts = sorted(rng.sample(range(1, len(data)), rng.randint(1, 12)))
        assert_standard(await receive(tmp_path, split(data, *cuts)))


async def test_a_body_cut_off_anywhere_before_its_closing_boundary_is_refused(
    tmp_path: Path,
) -> None:
    """Inside a document, a header, between parts, inside the closing delimiter: 400,
    never a shorter batch.  Cut right after ``--boundary--`` it is complete."""
    data = standard_body()
    complete = data.rindex(f"--{BOUNDARY}--".encode()) + len(BOUNDARY) + 4
    for end in range(complete):
        with pytest.raises(InvalidRequest):
            await receive(tmp_path, split(data[:end], end // 2))
    assert_standard(await receive(tmp_path, [data[:complete]]))


async def test_cut_off_between_parts_says_so(tmp_path: Path) -> None:
    data = standard_body()
    between = data.index(f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="options"'.encode())
    with pytest.raises(InvalidRequest, match="cut off before its closing boundary"):
        await receive(tmp_path, [data[:between]])


async def test_preamble_and_epilogue_are_ignored(tmp_path: Path) -> None:
    parts = [part("documents", d, filename=f"d{i}.pdf") for i, d in enumerate(DOCUMENTS)]
    parts.append(part("options", OPTIONS))
    for preamble, epilogue in (
        (b"This is a multi-part message in MIME format.\r\n", b"\r\ntrailing words\r\n"),
        (b"\r\n", b""),
        (b"", b"\r\n--" + BOUNDARY.encode() + b"\r\nnot a part"),
    ):
        received = await receive(tmp_path, [body(*parts, preamble=preamble, epilogue=epilogue)])
        assert_standard(received)


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(lambda b: b.replace(b"\r\n", b"\n"), id="LF line ends throughout"),
        pytest.param(
            lambda b: b.replace(b"Content-Disposition", b"Content-Type: x\nContent-Disposition", 1),
            id="bare LF in the headers",
        ),
        pytest.param(
            lambda b: b.replace(f"--{BOUNDARY}\r\n".encode(), f"--{BOUNDARY}\n".encode(), 1),
            id="LF after the first boundary",
        ),
        pytest.param(
            lambda b: b.replace(
                f"\r\n--{BOUNDARY}\r\n".encode(), f"\r\n--{BOUNDARY}XY".encode(), 1
            ),
            id="bytes after a boundary",
        ),
        pytest.param(lambda b: b"garbage" + b, id="text glued to the first boundary"),
        pytest.param(
            lambda b: b.replace(
                b"Content-Disposition: form-data", b"Content-Disposition: inline", 1
            ),
            id="not form-data",
        ),
        pytest.param(
            lambda b: b.replace(b"Content-Disposition: ", b"X-Disposition: ", 1),
            id="a part without Content-Disposition",
        ),
        pytest.param(
            lambda b: b.replace(b"Content-Disposition: ", b"Content-Disposition ", 1),
            id="a header without a colon",
        ),
    ],
)
async def test_malformed_multipart_is_refused_after_the_whole_body_was_read(
    tmp_path: Path, bad: object
) -> None:
    data = bad(standard_body())  # type: ignore[operator]
    with pytest.raises(InvalidRequest, match=r"malformed|cut off"):
        await receive(tmp_path, split(data, 10, len(data) // 2) + [b"x" * 100_000] * 3)


async def test_a_document_without_a_filename_gets_a_numbered_name(tmp_path: Path) -> None:
    data = body(
        part("documents", b"%PDF-a", filename="first.pdf"),
        part("documents", b"%PDF-b"),
        part("documents", b"%PDF-c", filename=""),
        part("options", OPTIONS),
    )
    received = await receive(tmp_path, [data])
    assert received.names == ["first.pdf", "document-2.pdf", "document-3.pdf"]
    assert received.documents == [b"%PDF-a", b"%PDF-b", b"%PDF-c"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"plain name.pdf", "plain name.pdf"),
        (b'quote \\"inside\\".pdf', "quote inside.pdf"),  # legacy backslash escapes
        (b"html5 %22quoted%22.pdf", "html5 quoted.pdf"),  # what browsers and httpx send
        (b"C:\\\\Users\\\\li\\\\scan.pdf", "scan.pdf"),  # a whole Windows path (old IE)
        (b"../../etc/passwd", "passwd"),
        ("Überweisung €.pdf".encode(), "Überweisung €.pdf"),
        ("申请书.pdf".encode(), "申请书.pdf"),
        (b"caf\xe9.pdf", "caf\ufffd.pdf"),  # Latin-1, not UTF-8: kept, not refused
        (b"tab\there.pdf", "tabhere.pdf"),
    ],
)
async def test_quoted_and_unicode_filenames(tmp_path: Path, raw: bytes, expected: str) -> None:
    data = body(part("documents", b"%PDF", filename=raw), part("options", OPTIONS))
    assert (await receive(tmp_path, [data])).names == [expected]


async def test_unquoted_parameters_and_rfc_5987_filename_star(tmp_path: Path) -> None:
    """RFC 7578 (4.2) forbids ``filename*`` in form data: it is ignored, as
    python-multipart (FastAPI's parser) ignores it; the plain ``filename`` stands."""
    head = f"--{BOUNDARY}\r\nContent-Disposition: form-data; ".encode()
    data = (
        head
        + b"name=documents; filename=bare.pdf\r\n\r\n%PDF-1\r\n"
        + head
        + b'name="documents"; filename*=UTF-8\'\'%C3%A9t%C3%A9.pdf; filename="ete.pdf"\r\n\r\n'
        + b"%PDF-2\r\n"
        + head
        + b"name=\"documents\"; filename*=UTF-8''%C3%A9t%C3%A9.pdf\r\n\r\n%PDF-3\r\n"
        + head
        + b"name=options\r\nContent-Type: application/json\r\n\r\n"
        + OPTIONS
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )
    received = await receive(tmp_path, [data])
    assert received.names == ["bare.pdf", "ete.pdf", "document-3.pdf"]
    assert received.documents == [b"%PDF-1", b"%PDF-2", b"%PDF-3"]
    assert received.form.options == OPTIONS.decode()


async def test_parts_in_any_order_and_unknown_parts_ignored(tmp_path: Path) -> None:
    data = body(
        part("options", OPTIONS),
        part("comment", b"ignored " * 1000),
        part("", b"no name"),
        part(
            "documents", DOCUMENTS[0], filename="d0.pdf", extra=b"Content-Type: application/pdf\r\n"
        ),
        part("image", b"\x89PNG-data", filename="i.png"),
        part("documents", DOCUMENTS[1], filename="d1.pdf"),
        part("documents", DOCUMENTS[2], filename="d2.pdf"),
    )
    received = await receive(tmp_path, [data])
    assert received.names == ["d0.pdf", "d1.pdf", "d2.pdf"]
    assert received.documents == DOCUMENTS
    assert received.form.image == b"\x89PNG-data"
    assert received.form.options == OPTIONS.decode()


async def test_content_types_that_are_not_multipart_with_a_boundary(tmp_path: Path) -> None:
    data = standard_body()
    assert_standard(
        await receive(tmp_path, [data], content_type=f'Multipart/Form-Data; boundary="{BOUNDARY}"')
    )
    for content_type in (
        "application/json",
        "multipart/form-data",
        "multipart/mixed; boundary=x",
        "",
    ):
        with pytest.raises(InvalidRequest, match="multipart/form-data with a boundary"):
            await receive(tmp_path, [data], content_type=content_type, drained=False)
    with pytest.raises(InvalidRequest, match="boundary is not usable"):
        await receive(
            tmp_path, [data], content_type='multipart/form-data; boundary="a\nb"', drained=False
        )


async def test_limits_refuse_with_their_reason_after_the_whole_body(tmp_path: Path) -> None:
    many = body(*(part("documents", b"%PDF", filename=f"{i}.pdf") for i in range(4)))
    with pytest.raises(InvalidRequest, match="at most 3 documents"):
        await receive(tmp_path, [many, b"more bytes"], max_documents=3)
    big = body(part("documents", b"%PDF" + b"0" * 5000, filename="big.pdf"))
    with pytest.raises(PayloadTooLarge, match=r"big\.pdf"):
        await receive(tmp_path, split(big, 100, 3000), max_document_bytes=4096)
    image = body(part("image", b"\x89PNG" * 300, filename="i.png"))
    with pytest.raises(PayloadTooLarge, match="image"):
        await receive(tmp_path, split(image, 700), image_limit=1024)
    options = body(part("options", b" " * (batch_form.OPTIONS_LIMIT + 1)))
    with pytest.raises(InvalidRequest, match="options are larger"):
        await receive(tmp_path, split(options, 65536, 2 * 65536))


async def test_part_headers_are_bounded(tmp_path: Path) -> None:
    """A header line over the limit, too many header lines, or a header that never ends
    (no CRLF) is refused; the parser holds at most one line of headers meanwhile."""
    data = standard_body()
    long_line = data.replace(
        b"Content-Disposition",
        b"X-Long: " + b"h" * batch_form.HEADER_LIMIT + b"\r\nContent-Disposition",
        1,
    )
    many = data.replace(
        b"Content-Disposition",
        b"X-A: 1\r\n" * batch_form.HEADER_COUNT + b"Content-Disposition",
        1,
    )
    endless = f"--{BOUNDARY}\r\nX-Endless: ".encode()
    for case in (long_line, many, endless + b"x" * (4 * batch_form.HEADER_LIMIT)):
        with pytest.raises(InvalidRequest, match="headers are longer"):
            await receive(tmp_path, [case[i : i + 1000] for i in range(0, len(case), 1000)])
    fits = data.replace(
        b"Content-Disposition",
        b"X-Long: " + b"h" * (batch_form.HEADER_LIMIT - 100) + b"\r\nContent-Disposition",
        1,
    )
    assert_standard(await receive(tmp_path, split(fits, 50, 5000)))


async def test_a_large_document_streams_through_a_bounded_buffer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A document larger than the write buffer is spooled as it arrives: what is held
    in memory never exceeds the buffer plus one chunk of the body."""
    document = random.Random(3).randbytes(5 * WRITE_BUFFER + 123)
    data = body(part("documents", document, filename="big.pdf"), part("options", OPTIONS))
    chunk = 64 * 1024
    held: list[int] = []
    flush = Upload.flush

    def watched(self: Upload) -> None:
        held.append(self.pending)
        flush(self)

    monkeypatch.setattr(Upload, "flush", watched)
    received = await receive(tmp_path, [data[i : i + chunk] for i in range(0, len(data), chunk)])
    assert received.documents == [document] and received.hashes_match
    assert len(held) >= 5  # flushed along the way, not once at the end
    assert max(held) < WRITE_BUFFER + chunk


async def test_no_staging_folder_is_left_after_an_error(tmp_path: Path) -> None:
    upload = Upload(tmp_path / "batches", 10**6)
    feeder = Feeder([standard_body()[:-30]])
    with pytest.raises(SignetError):
        await receive_batch(feeder.request, upload, max_documents=10, image_limit=10)
    upload.discard()
    assert list((tmp_path / "batches").iterdir()) == []


def test_safe_filename_fast_path_matches_the_general_rule() -> None:
    """The plain-name fast path gives what the general rule (a `Path`'s name, printable
    characters only, none that Windows forbids) gives, for awkward names too."""

    def general(name: str | None, index: int) -> str:
        base = Path((name or "").replace("\\", "/")).name
        cleaned = "".join(ch for ch in base if ch.isprintable() and ch not in '<>:"|?*')[:200]
        return cleaned or f"document-{index + 1}.pdf"

    alphabet = [*'ab./\\\x00\x1f :"<>|?*é€\u200b\n\t', "..", "x" * 150]
    rng = random.Random(11)
    names: list[str | None] = [None, "", ".", "..", "/", "a/", "a/.", "./a", "\\\\srv\\x.pdf"]
    names += [
        "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 8))) for _ in range(20_000)
    ]
    for name in names:
        assert safe_filename(name, 4) == general(name, 4), repr(name)
