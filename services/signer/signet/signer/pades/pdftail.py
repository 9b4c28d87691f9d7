"""What a seal needs to know about a plain PDF, read from the file's tail alone.

`fastpdf` appends five objects and a cross-reference section.  To write them
it needs a handful of facts (`PlainDocument`): the catalog and the first page
(their numbers and dictionaries), the trailer's /Size, /Info and /ID, where
the last cross-reference section starts and whether it is a stream.
pyHanko's reader learns them by parsing every cross-reference entry and
parsing objects a byte at a time, which was most of the cost of a seal
(0.3 ms for a 1-page file, 1 ms and more for 100 pages).  `read` learns them
from the last cross-reference section only, looking up three or four entries
by position (0.1 ms for 1 page, 0.35 ms for 100).

A hand-written reader is acceptable here because it never has the last word:

* it accepts only a narrow, exactly specified shape (one revision, a
  cross-reference table whose every entry is well-formed, or a
  cross-reference stream of fixed-width rows, catalog and page tree as plain objects at
  their recorded offsets, no encryption, no hybrid section, no /Prev) and
  returns None for anything else; `fastpdf` then asks pyHanko's reader, as
  it always did, which may still decline to pyHanko's general flow;
* the objects it reads (trailer, cross-reference stream dictionary, catalog,
  page tree) are parsed by `pdfsyntax`, a strict subset of the syntax that
  builds pyHanko's own object classes exactly as pyHanko's parser would, so
  the dictionaries written back are serialised exactly as before; stream
  data is decoded by pyHanko's filters, under pyHanko's decoding limits;
* tests/signer/test_pdftail.py checks, over generated and third-party files
  and over random damage to the tail and to the objects read, that whatever
  it accepts yields the very facts pyHanko's reader yields (`plain` below is
  shared by both), and `pdfsyntax` against pyHanko's parser over a grammar
  of object syntax; pyHanko's validator and poppler check signed outputs.
"""

from __future__ import annotations

import io
import itertools
import re
from dataclasses import dataclass
from typing import BinaryIO

from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.decode_limits import DecodeContext, DecodeLimits, DecodePurpose
from pyhanko.pdf_utils.rw_common import PdfHandler
from signet.signer.pades import pdfsyntax


class NotPlain(Exception):
    """Not the plain case, or not provably so: the caller asks pyHanko instead."""


@dataclass(frozen=True)
class PlainDocument:
    """The facts an invisible seal's incremental update is made from.

    `root` and `page` are pyHanko objects with their indirect references kept
    as references (they are written back with one more entry each).
    """

    root_ref: tuple[int, int]
    root: generic.DictionaryObject
    page_ref: tuple[int, int]
    page: generic.DictionaryObject
    annots: generic.ArrayObject
    size: int
    document_id: bytes | None  # the first half of /ID, if the file has one
    info_ref: tuple[int, int] | None
    startxref: int
    xref_stream: bool


def plain(
    trailer: generic.DictionaryObject,
    root: generic.PdfObject,
    page_ref: generic.PdfObject,
    page: generic.PdfObject,
    *,
    document_id: bytes | None,
    startxref: int | None,
    xref_stream: bool,
) -> PlainDocument:
    """The checks both readers share: a plain, unencrypted, formless document."""
    if "/Encrypt" in trailer or startxref is None:
        raise NotPlain
    root_ref = trailer.raw_get("/Root")
    if not isinstance(root_ref, generic.IndirectObject) or not isinstance(
        root, generic.DictionaryObject
    ):
        raise NotPlain
    if any(key in root for key in ("/AcroForm", "/Perms")):
        raise NotPlain  # forms, earlier signatures, DocMDP: pyHanko's flow handles them
    if not isinstance(page_ref, generic.IndirectObject) or not isinstance(
        page, generic.DictionaryObject
    ):
        raise NotPlain
    annots = page.raw_get("/Annots") if "/Annots" in page else generic.ArrayObject()
    if not isinstance(annots, generic.ArrayObject):
        raise NotPlain  # an indirect /Annots array would need its own object rewritten
    info = trailer.raw_get("/Info") if "/Info" in trailer else None
    return PlainDocument(
        root_ref=(root_ref.idnum, root_ref.generation),
        root=root,
        page_ref=(page_ref.idnum, page_ref.generation),
        page=page,
        annots=annots,
        size=int(trailer["/Size"]),
        document_id=document_id,
        info_ref=(info.idnum, info.generation)
        if isinstance(info, generic.IndirectObject)
        else None,
        startxref=startxref,
        xref_stream=xref_stream,
    )


#: How far from the end the last cross-reference section may start (a table of
#: 400 000 objects); beyond that pyHanko's reader is as good as anything.
_MAX_TAIL = 8 * 2**20
_EOL = rb"(?:\r\n|\r|\n)"
_END = re.compile(rb"startxref" + _EOL + rb"(\d{1,15})" + _EOL + rb"%%EOF" + _EOL + rb"?\Z")
_SUBSECTION = re.compile(rb"(\d{1,10}) (\d{1,10}) ?" + _EOL)
_ENTRIES = re.compile(rb"(?:\d{10} \d{5} [fn](?: \r| \n|\r\n))*")
_XREF = re.compile(b"xref" + _EOL)
_OBJECT = re.compile(rb"(\d{1,10}) (\d{1,5}) obj[ \t\r\n\f\x00]*")
_WHITESPACE = re.compile(rb"[ \t\r\n\f\x00]+")
_ENDOBJ = re.compile(rb"[ \t\r\n\f\x00]*endobj")
_HEADER = re.compile(rb"%PDF-\d\.\d")
_STREAM = re.compile(rb"[ \t\r\n\f\x00]*stream(?:\r\n|\n)")
_ENDSTREAM = re.compile(rb"[ \t\r\n\f\x00]*endstream[ \t\r\n\f\x00]*endobj")


def _skip_whitespace(data: bytes, position: int) -> int:
    found = _WHITESPACE.match(data, position)
    return found.end() if found is not None else position


class _NoReferences(PdfHandler):
    """The handler of the objects `read` parses: following a reference is not plain."""

    strict = False  # as `fastpdf`'s reader: a repeated dictionary key keeps its first value

    def __init__(self, input_size: int) -> None:
        self._input_size = input_size
        self._context: DecodeContext | None = None

    def get_object(self, ref: generic.Reference, as_metadata_stream: bool = False) -> None:
        raise NotPlain  # e.g. an indirect /Length: resolve nothing, decline

    @property
    def decode_context(self) -> DecodeContext:
        """Made when first asked for (a stream is decoded): a table needs none."""
        if self._context is None:
            self._context = DecodeContext(DecodeLimits(), input_size=self._input_size)
        return self._context


def read(source: BinaryIO) -> PlainDocument | None:
    """The facts for a seal, or None if the tail is not in the narrow shape accepted.

    None never means "not plain": only that pyHanko's reader has to decide, so any
    failure here (a damaged stream that zlib rejects, a parser error) is a None.
    """
    try:
        return _read(source)
    except Exception:  # declining is always safe; pyHanko reports the damage
        return None


def _read(source: BinaryIO) -> PlainDocument:
    size = source.seek(0, io.SEEK_END)
    source.seek(0)
    if not _HEADER.match(source.read(8)):
        raise NotPlain
    source.seek(max(size - 64, 0))
    end = _END.search(source.read(64))
    if end is None:
        raise NotPlain
    startxref = int(end.group(1))
    tail_length = size - min(size, 64) + end.start() - startxref
    if not 0 < tail_length <= _MAX_TAIL or startxref < 8:
        raise NotPlain
    source.seek(startxref)
    tail = source.read()  # the last section; at `tail_length`, the final startxref
    handler = _NoReferences(size)
    if tail.startswith(b"xref"):
        xref: _Xref = _Table(tail, tail_length, handler)
    else:
        xref = _Stream(tail, tail_length, handler)
    trailer = xref.trailer
    for key in ("/Prev", "/XRefStm", "/Encrypt"):
        if key in trailer:
            raise NotPlain  # an earlier revision, a hybrid file, encryption
    if not isinstance(trailer.raw_get("/Size"), generic.NumberObject):
        raise NotPlain
    xref.check_size(int(trailer.raw_get("/Size")))
    document_id = None
    if "/ID" in trailer:
        ids = trailer.raw_get("/ID")
        if not (
            isinstance(ids, generic.ArrayObject)
            and len(ids) == 2
            and all(
                isinstance(i, (generic.TextStringObject, generic.ByteStringObject)) for i in ids
            )
        ):
            raise NotPlain
        document_id = ids.raw_get(0).original_bytes
    root = xref.read_object(source, trailer.raw_get("/Root"))
    if not isinstance(root, generic.DictionaryObject):
        raise NotPlain
    node_ref = root.raw_get("/Pages")
    for _ in range(64):  # as deep as `fastpdf` goes with pyHanko's reader
        node = xref.read_object(source, node_ref)
        if not isinstance(node, generic.DictionaryObject):
            raise NotPlain
        kind = node.raw_get("/Type") if "/Type" in node else None
        if isinstance(kind, generic.IndirectObject):
            raise NotPlain
        if kind == "/Page":
            return plain(
                trailer,
                root,
                node_ref,
                node,
                document_id=document_id,
                startxref=startxref,
                xref_stream=isinstance(xref, _Stream),
            )
        kids = node.raw_get("/Kids")
        if not isinstance(kids, generic.ArrayObject) or not kids:
            raise NotPlain
        node_ref = kids.raw_get(0)
    raise NotPlain


class _Xref:
    """The last cross-reference section: the trailer and offsets of in-use objects."""

    trailer: generic.DictionaryObject
    handler: _NoReferences

    def offset(self, number: int, generation: int) -> int:
        raise NotImplementedError

    def check_size(self, size: int) -> None:
        raise NotImplementedError

    def read_object(self, source: BinaryIO, ref: generic.PdfObject) -> generic.PdfObject:
        """The object `ref` points at, where the section says it is (nothing else there)."""
        if not isinstance(ref, generic.IndirectObject) or ref.idnum == 0:
            raise NotPlain
        if ref.generation > 0xFFFF:
            raise NotPlain  # pyHanko ignores such entries
        offset = self.offset(ref.idnum, ref.generation)
        for chunk in _CHUNKS:
            source.seek(offset)
            data = source.read(chunk)
            match = _OBJECT.match(data)
            if match is None or (int(match.group(1)), int(match.group(2))) != (
                ref.idnum,
                ref.generation,
            ):
                raise NotPlain
            try:
                obj, end = pdfsyntax.parse(data, match.end(), self.handler)
            except pdfsyntax.Short:
                continue
            if _ENDOBJ.match(data, end):
                return obj
            if _skip_whitespace(data, end) + len(b"endobj") <= len(data):
                raise NotPlain  # a stream, or something else after the object
        raise NotPlain  # an object this large is not a plain catalog or page


#: How much of the file is read at an object's offset, then again if it ends sooner.
_CHUNKS = (2048, 64 * 1024, 2**20)


class _Table(_Xref):
    """A classic table: every entry checked to be exactly 20 bytes, then indexed."""

    def __init__(self, tail: bytes, limit: int, handler: _NoReferences) -> None:
        self.handler = handler
        after = _XREF.match(tail)
        if after is None:
            raise NotPlain
        position = after.end()
        self.subsections: list[tuple[int, int, int]] = []  # first, count, where entries start
        while (header := _SUBSECTION.match(tail, position)) is not None:
            first, count = int(header.group(1)), int(header.group(2))
            end = header.end() + 20 * count
            if end > limit or not _ENTRIES.fullmatch(tail, header.end(), end):
                raise NotPlain
            self.subsections.append((first, count, header.end()))
            position = end
        if not self.subsections or not tail.startswith(b"trailer", position):
            raise NotPlain
        position = _skip_whitespace(tail, position + len(b"trailer"))
        if not tail.startswith(b"<<", position):
            raise NotPlain
        trailer, end = pdfsyntax.parse(tail, position, handler)
        if not isinstance(trailer, generic.DictionaryObject):
            raise NotPlain
        if _skip_whitespace(tail, end) != limit:
            raise NotPlain  # something between the trailer and startxref
        self.trailer, self.tail = trailer, tail
        ranges = sorted((first, first + count) for first, count, _ in self.subsections)
        if any(a_end > b_start for (_, a_end), (b_start, _) in itertools.pairwise(ranges)):
            raise NotPlain  # overlapping subsections: which entry wins is a reader's choice

    def check_size(self, size: int) -> None:
        if any(first + count > size for first, count, _ in self.subsections):
            raise NotPlain

    def offset(self, number: int, generation: int) -> int:
        for first, count, at in self.subsections:
            if first <= number < first + count:
                entry = self.tail[at + 20 * (number - first) : at + 20 * (number - first) + 18]
                if entry[17:18] != b"n" or int(entry[11:16]) != generation:
                    raise NotPlain
                return int(entry[:10])
        raise NotPlain


class _Stream(_Xref):
    """A cross-reference stream of type-1 (plain offset) rows for the objects asked about."""

    def __init__(self, tail: bytes, limit: int, handler: _NoReferences) -> None:
        self.handler = handler
        header = _OBJECT.match(tail)
        if header is None:
            raise NotPlain
        fields, end = pdfsyntax.parse(tail, header.end(), handler)
        if not isinstance(fields, generic.DictionaryObject) or fields.raw_get("/Type") != "/XRef":
            raise NotPlain
        length = fields.raw_get("/Length")
        begins = _STREAM.match(tail, end)
        if begins is None or type(length) is not generic.NumberObject:
            raise NotPlain
        ending = _ENDSTREAM.match(tail, begins.end() + length)
        if ending is None or _skip_whitespace(tail, ending.end()) != limit:
            raise NotPlain  # a /Length that is not exact, or more after the stream
        xref = generic.StreamObject(fields, encoded_data=tail[begins.end() : begins.end() + length])
        xref.container_ref = generic.Reference(  # its decoding limits are the handler's
            int(header.group(1)), int(header.group(2)), handler
        )
        widths = _numbers(xref.raw_get("/W"))
        index = _numbers(xref.raw_get("/Index") if "/Index" in xref else [0, xref.raw_get("/Size")])
        if len(widths) != 3 or not all(0 < w <= 8 for w in widths[1:]) or len(index) % 2:
            raise NotPlain
        self.widths, self.row = widths, sum(widths)
        pairs = list(zip(index[::2], index[1::2], strict=True))
        if any(a + n > b for (a, n), (b, _) in itertools.pairwise(pairs)):
            raise NotPlain  # subsections must increase
        rows = sum(n for _, n in pairs)
        self.data = xref.read_data(DecodePurpose.XREF_STREAM, expected_size=rows * (self.row + 1))
        if len(self.data) != rows * self.row:
            raise NotPlain  # short or long: pyHanko would pad or ignore, we do not guess
        self.pairs, self.trailer = pairs, xref

    def check_size(self, size: int) -> None:
        if any(first + count > size for first, count in self.pairs):
            raise NotPlain

    def offset(self, number: int, generation: int) -> int:
        row = 0
        for first, count in self.pairs:
            if first <= number < first + count:
                at = (row + number - first) * self.row
                fields = []
                for width in self.widths:
                    fields.append(int.from_bytes(self.data[at : at + width], "big"))
                    at += width
                kind = fields[0] if self.widths[0] else 1
                if kind != 1 or fields[2] != generation:
                    raise NotPlain  # free, or in an object stream (/ObjStm): not plain
                return fields[1]
            row += count
        raise NotPlain


def _numbers(value: object) -> list[int]:
    """A direct array of non-negative integers, or not plain."""
    if not isinstance(value, (generic.ArrayObject, list)):
        raise NotPlain
    if not all(type(n) is generic.NumberObject or type(n) is int for n in value):
        raise NotPlain
    numbers = [int(n) for n in value]
    if any(n < 0 for n in numbers):
        raise NotPlain
    return numbers
