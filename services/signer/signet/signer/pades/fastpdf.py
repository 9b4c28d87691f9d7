"""The incremental update of an invisible seal, written directly: the batch hot path.

After `fastcms` removed the CMS cost, pyHanko's general PDF machinery (a
writer that can do anything: appearances, DocMDP, metadata streams, form
trees) is ~85% of what is left of a plain seal.  A seal on a document with
no form is always the same five objects: the signature dictionary, the
signature field (an invisible widget), a new AcroForm, the catalog and the
first page (to list the widget in its /Annots), then a cross-reference
section in the style the file already uses and a trailer.  This module
writes exactly that, and `CmsTemplate` the signature.  The facts it writes
from (`pdftail.PlainDocument`) come from `pdftail.read`, which reads only the
file's last cross-reference section and the three or four objects needed,
and, for any file that reader does not accept, from pyHanko's reader
(`read_with_pyhanko`, the reference both are tested against).

It declines (returns False) whenever the document is anything but that plain
case: an existing form or signature, DocMDP/permissions, encryption, an
indirect /Annots array, a visible appearance, certification, prepared fields,
an external TSA.  The caller then uses pyHanko's flow.  What it writes is
checked by pyHanko's validator (including its modification analysis) and
by poppler's `pdfsig` in tests/signer/test_fast_pdf.py.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import zlib
from datetime import UTC, datetime
from typing import BinaryIO

from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.misc import PDF_DELIMITERS, PDF_WHITESPACE, PdfReadError
from pyhanko.pdf_utils.reader import PdfFileReader
from signet.common.contracts.signer import SignatureLevel, SignOptions
from signet.signer.pades import pdftail
from signet.signer.pades.fastcms import CmsTemplate
from signet.signer.pades.pdftail import NotPlain, PlainDocument, plain
from signet.signer.pki.ca import Issued
from signet.signer.pki.tsa import TimeStampAuthority

_BYTE_RANGE_PLACEHOLDER = b"[0 0000000000 0000000000 0000000000]"
_FAST_LEVELS = (SignatureLevel.B_B, SignatureLevel.B_T)


def applies(options: SignOptions, image: bytes | None) -> bool:
    """Whether the options ask for nothing but an invisible seal at B-B or B-T."""
    return (
        options.level in _FAST_LEVELS
        and options.appearance is None
        and image is None
        and not options.certify
        and not options.prepare_fields
        and options.cross_page_seal is None
    )


def _serialise(obj: generic.PdfObject) -> bytes:
    """`obj.write_to_stream(out, None)`'s bytes; the catalog's and page's shapes directly.

    Dictionaries, arrays, names without anything to escape, integers and
    references are written as pyHanko writes them (its layout: "<<\\n/Key
    value\\n>>", "[ a b ]"), in a third of the time; anything else (strings,
    reals, names with bytes pyHanko escapes, streams, subclasses) by pyHanko.
    test_fast_pdf and test_pdftail compare the sealed files and dictionaries.
    """
    kind = type(obj)  # exactly these classes: a subclass (a stream) writes itself
    if isinstance(obj, generic.NameObject) and kind is generic.NameObject:
        if _PLAIN_NAME.fullmatch(obj):
            return obj.encode("ascii")
    elif isinstance(obj, generic.IndirectObject) and kind is generic.IndirectObject:
        return b"%d %d R" % (obj.idnum, obj.generation)
    elif isinstance(obj, generic.NumberObject) and kind is generic.NumberObject:
        return repr(obj).encode("ascii")
    elif isinstance(obj, generic.DictionaryObject) and kind is generic.DictionaryObject:
        entries = (b"%s %s\n" % (_serialise(key), _serialise(value)) for key, value in obj.items())
        return b"".join([b"<<\n", *entries, b">>"])
    elif isinstance(obj, generic.ArrayObject) and kind is generic.ArrayObject:
        return b"".join([b"[", *(b" " + _serialise(item) for item in obj), b" ]"])
    out = io.BytesIO()
    obj.write_to_stream(out, None)
    return out.getvalue()


#: A name pyHanko writes as it is: after the "/", only bytes it does not escape as #xx.
_PLAIN_NAME = re.compile(
    "/["
    + "".join(
        re.escape(chr(byte))
        for byte in range(0x21, 0x7F)
        if byte != 0x23 and byte not in PDF_WHITESPACE and byte not in PDF_DELIMITERS
    )
    + "]*"
)


def _raw_copy(dictionary: generic.DictionaryObject) -> generic.DictionaryObject:
    """A shallow copy that keeps indirect references as references (no dereferencing)."""
    return generic.DictionaryObject(  # type: ignore[no-untyped-call]
        {key: dictionary.raw_get(key) for key in dictionary}
    )


def _first_page(reader: PdfFileReader) -> tuple[generic.PdfObject, generic.PdfObject]:
    node_ref = reader.root.raw_get("/Pages")
    for _ in range(64):  # a page tree deeper than this is not a plain document
        if not isinstance(node_ref, generic.IndirectObject):
            raise NotPlain
        node = node_ref.get_object()  # type: ignore[no-untyped-call]
        if not isinstance(node, generic.DictionaryObject):
            raise NotPlain
        if node.get("/Type") == "/Page":
            return node_ref, node
        kids = node.get("/Kids")
        if not isinstance(kids, generic.ArrayObject) or not kids:
            raise NotPlain
        node_ref = kids.raw_get(0)
    raise NotPlain


def read_with_pyhanko(source: BinaryIO) -> PlainDocument:
    """The facts for a seal as pyHanko's reader sees them: the reference for `pdftail.read`.

    Used for every document `pdftail.read` does not accept; raises `NotPlain` (or
    pyHanko's errors for a damaged file) when the direct writer must not seal it.
    """
    source.seek(0)
    reader = PdfFileReader(source, strict=False)
    if reader.encrypted:
        raise NotPlain
    trailer = reader.trailer_view
    root = reader.root
    if any(key in root for key in ("/AcroForm", "/Perms")):
        raise NotPlain  # checked before walking the page tree, as it always was
    page_ref, page = _first_page(reader)
    return plain(
        trailer,
        root,
        page_ref,
        page,
        document_id=reader.document_id[0] if "/ID" in trailer else None,
        startxref=reader.last_startxref,
        xref_stream=reader.has_xref_stream,
    )


def seal(
    source: BinaryIO,
    output: BinaryIO,
    issued: Issued,
    options: SignOptions,
    template: CmsTemplate,
    *,
    reserved_hex: int,
    tsa: TimeStampAuthority | None,
) -> bool:
    """Write `source` plus an invisible PAdES seal to `output`; False if not the plain case.

    Memory stays bounded whatever the size of the document: the source is copied
    to the output in chunks and hashed on the way; only the update is in memory.
    Nothing is written to `output` when the answer is False.
    """
    try:
        document = pdftail.read(source) or read_with_pyhanko(source)
        plan = _plan(source, document, issued, options, reserved_hex)
    except NotPlain:
        return False
    except (PdfReadError, KeyError, IndexError, TypeError, ValueError, AttributeError, zlib.error):
        return False  # let pyHanko's flow produce the precise error for a damaged file
    digest = hashlib.new(template.digest_algorithm)
    learns_digest = isinstance(output, DigestedOutput) and output.tell() == 0
    source.seek(0)
    while chunk := source.read(_CHUNK):
        digest.update(chunk)
        output.write(chunk)
    update = plan.update
    digest.update(update[: plan.contents_start])
    # the file's own SHA-256 shares everything up to /Contents with the signed digest
    whole = digest.copy() if learns_digest and digest.name == "sha256" else None
    digest.update(update[plan.contents_end :])
    cms = template.sign(issued.key, digest.digest(), tsa=tsa)
    encoded = cms.hex().encode()
    if len(encoded) > reserved_hex:
        # cannot happen with our reservation; never truncate a signature
        raise ValueError("the signature container outgrew its reservation")
    update[plan.contents_start + 1 : plan.contents_start + 1 + len(encoded)] = encoded
    output.write(update)
    if whole is not None and isinstance(output, DigestedOutput):
        whole.update(update[plan.contents_start :])
        output.sha256 = whole.hexdigest()
    return True


class DigestedOutput(io.BufferedRandom):
    """An output file that is told its SHA-256 when `seal` writes it.

    Batch sealing records every signed file's SHA-256; reading a 100-page
    document back to hash it costs a third of signing it.  `seal` already
    hashes all of its output but the signature for the CMS digest, so it can
    finish the file's own hash from a copy of that state for the price of the
    update.  ``sha256`` stays None when pyHanko's flow wrote the file (it
    seeks back and patches): the caller then hashes the file itself.
    """

    sha256: str | None = None


_CHUNK = 1024 * 1024


class _Plan:
    """The incremental update, its /Contents placeholder at [contents_start, contents_end)."""

    def __init__(self, update: bytearray, contents_start: int, contents_end: int) -> None:
        self.update, self.contents_start, self.contents_end = update, contents_start, contents_end


def _plan(
    source: BinaryIO,
    document: PlainDocument,
    issued: Issued,
    options: SignOptions,
    reserved_hex: int,
) -> _Plan:
    base = source.seek(0, io.SEEK_END)
    source.seek(max(base - 1, 0))
    needs_newline = source.read(1) not in (b"\n", b"\r")
    size = document.size
    sig_num, field_num, form_num = size, size + 1, size + 2
    xref_num = size + 3  # only used when the file's cross-references are a stream
    field_name = options.field_name or "Signature1"
    root_ref, page_ref = document.root_ref, document.page_ref

    new_root = _raw_copy(document.root)
    new_root["/AcroForm"] = generic.IndirectObject(form_num, 0, None)  # type: ignore[no-untyped-call]
    new_page = _raw_copy(document.page)
    new_page["/Annots"] = generic.ArrayObject(
        [*document.annots, generic.IndirectObject(field_num, 0, None)]  # type: ignore[no-untyped-call]
    )
    name = issued.certificate.subject.native.get("common_name", "")
    when = _now()
    signature_dict = b"".join(
        (
            b"<< /Type /Sig /Filter /Adobe.PPKLite /SubFilter /ETSI.CAdES.detached",
            b" /M ",
            _serialise(generic.TextStringObject(when.strftime("D:%Y%m%d%H%M%S+00'00'"))),
            b" /Name ",
            _serialise(generic.TextStringObject(name)),
            _optional_text(b" /Reason ", options.reason),
            _optional_text(b" /Location ", options.location),
            b" /ByteRange ",
            _BYTE_RANGE_PLACEHOLDER,
            b" /Contents <",
            b"0" * reserved_hex,
            b"> >>",
        )
    )
    field_dict = b"".join(
        (
            b"<< /Type /Annot /Subtype /Widget /FT /Sig /T ",
            _serialise(generic.TextStringObject(field_name)),
            b" /F 132 /Rect [0 0 0 0] /P ",
            _ref(*page_ref),
            b" /V ",
            _ref(sig_num, 0),
            b" >>",
        )
    )
    form_dict = b"<< /Fields [" + _ref(field_num, 0) + b"] /SigFlags 3 >>"

    # Offsets in `update` are relative; `base` (the source's length) makes them absolute.
    update = bytearray(b"\n" if needs_newline else b"")
    base_offset = base
    offsets: dict[int, tuple[int, int]] = {}

    def add(number: int, generation: int, body: bytes) -> None:
        offsets[number] = (base_offset + len(update), generation)
        update.extend(b"%d %d obj\n" % (number, generation))
        update.extend(body)
        update.extend(b"\nendobj\n")

    add(sig_num, 0, signature_dict)
    add(field_num, 0, field_dict)
    add(form_num, 0, form_dict)
    add(*root_ref, _serialise(new_root))
    add(*page_ref, _serialise(new_page))

    # The first half of /ID identifies the document for life; the second this revision.
    first_id = document.document_id if document.document_id is not None else _random_id()
    ids = b"[<" + first_id.hex().encode() + b"> <" + _random_id().hex().encode() + b">]"
    trailer_entries = b"/Root " + _ref(*root_ref)
    if document.info_ref is not None:
        trailer_entries += b" /Info " + _ref(*document.info_ref)
    trailer_entries += b" /ID " + ids + b" /Prev %d" % document.startxref
    if document.xref_stream:
        start = _xref_stream(update, base, offsets, xref_num, trailer_entries)
    else:
        start = _xref_table(update, base, offsets, size + 3, trailer_entries)
    update.extend(b"startxref\n%d\n%%%%EOF\n" % start)

    # Byte range: everything but the hex digits of /Contents (and their brackets).
    sig_at = offsets[sig_num][0] - base
    contents_start = update.index(b"/Contents <", sig_at) + len(b"/Contents ")
    contents_end = contents_start + reserved_hex + 2
    total = base + len(update)
    byte_range = [0, base + contents_start, base + contents_end, total - base - contents_end]
    placeholder_at = update.index(_BYTE_RANGE_PLACEHOLDER, sig_at)
    rendered = ("[{} {} {} {}]".format(*byte_range)).encode()
    if len(rendered) > len(_BYTE_RANGE_PLACEHOLDER):
        raise NotPlain  # a file over 10 GB; pyHanko's flow can place it
    update[placeholder_at : placeholder_at + len(_BYTE_RANGE_PLACEHOLDER)] = rendered.ljust(
        len(_BYTE_RANGE_PLACEHOLDER)
    )
    return _Plan(update, contents_start, contents_end)


def _now() -> datetime:
    return datetime.now(UTC)  # a seam: the differential tests fix the time and the /ID


def _random_id() -> bytes:
    return os.urandom(16)


def _ref(number: int, generation: int) -> bytes:
    return b"%d %d R" % (number, generation)


def _optional_text(key: bytes, value: str | None) -> bytes:
    return key + _serialise(generic.TextStringObject(value)) if value else b""


def _xref_table(
    out: bytearray,
    base: int,
    offsets: dict[int, tuple[int, int]],
    size: int,
    trailer_entries: bytes,
) -> int:
    start = base + len(out)
    out.extend(b"xref\n")
    for number in sorted(offsets):
        offset, generation = offsets[number]
        out.extend(b"%d 1\n%010d %05d n\r\n" % (number, offset, generation))
    out.extend(b"trailer\n<< /Size %d " % size + trailer_entries + b" >>\n")
    return start


def _xref_stream(
    out: bytearray,
    base: int,
    offsets: dict[int, tuple[int, int]],
    number: int,
    trailer_entries: bytes,
) -> int:
    """A cross-reference stream (uncompressed rows, /W [1 4 2]) listing itself too."""
    start = base + len(out)
    entries = dict(offsets)
    entries[number] = (start, 0)
    index = b" ".join(b"%d 1" % n for n in sorted(entries))
    rows = b"".join(
        b"\x01" + entries[n][0].to_bytes(4, "big") + entries[n][1].to_bytes(2, "big")
        for n in sorted(entries)
    )
    if max(offset for offset, _ in entries.values()) >= 2**32:
        raise NotPlain
    out.extend(
        b"%d 0 obj\n<< /Type /XRef /Size %d /W [1 4 2] /Index [%s] %s /Length %d >>\nstream\n"
        % (number, number + 1, index, trailer_entries, len(rows))
    )
    out.extend(rows)
    out.extend(b"\nendstream\nendobj\n")
    return start
