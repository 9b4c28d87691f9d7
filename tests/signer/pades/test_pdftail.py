"""The tail reader (`signet.signer.pades.pdftail`) against pyHanko's reader, its reference.

The property pinned here: whatever `pdftail.read` accepts, pyHanko's reader
(`fastpdf.read_with_pyhanko`, the path every declined document takes) accepts
too and yields the very same facts, so the seal written from them is byte for
byte the one written before the tail reader existed (test_fast_pdf checks the
signed files themselves).  Declining is always allowed; a different answer
never is.  Documents: our generator's variants, files rewritten by qpdf and
poppler's pdftocairo, and random damage to the regions the reader looks at.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.rw_common import PdfHandler
from signet.signer.pades import fastpdf, pdfsyntax, pdftail

from tests.support.pdfs import make_pdf


def facts(document: pdftail.PlainDocument) -> tuple[object, ...]:
    """Everything `fastpdf` writes from, with the dictionaries as they are serialised."""
    return (
        document.root_ref,
        fastpdf._serialise(document.root),
        document.page_ref,
        fastpdf._serialise(document.page),
        fastpdf._serialise(document.annots),
        document.size,
        document.document_id,
        document.info_ref,
        document.startxref,
        document.xref_stream,
    )


def reference(pdf: bytes) -> tuple[object, ...] | None:
    try:
        return facts(fastpdf.read_with_pyhanko(io.BytesIO(pdf)))
    except Exception:  # declined, or damaged: either way not sealed directly
        return None


def tail(pdf: bytes) -> tuple[object, ...] | None:
    document = pdftail.read(io.BytesIO(pdf))
    return facts(document) if document is not None else None


def _tool(*args: str, source: bytes, suffix: str = ".pdf") -> bytes:
    # qpdf and pdftocairo come from scripts/bootstrap.sh (Debian qpdf, poppler-utils).
    assert shutil.which(args[0]) is not None, f"{args[0]} is not installed"
    with tempfile.TemporaryDirectory() as folder:
        given_path, made = Path(folder) / "in.pdf", Path(folder) / f"out{suffix}"
        given_path.write_bytes(source)
        done = subprocess.run([*args, str(given_path), str(made)], capture_output=True)
        assert done.returncode in (0, 3), done.stderr  # qpdf: 3 means "with warnings"
        return made.read_bytes()


@cache
def corpus() -> dict[str, bytes]:
    """Plain documents the tail reader is meant to accept, from several generators."""
    documents = {
        f"pyHanko {pages}p, {'stream' if stream else 'table'}{label}": make_pdf(
            pages, xref_stream=stream, **options
        )
        for pages in (1, 100)
        for stream in (False, True)
        for label, options in (
            ("", {}),
            (", no /Info", {"info": False}),
            (", no /ID", {"document_id": False}),
            (", neither", {"info": False, "document_id": False}),
        )
    }
    documents["pyHanko 2p, table, 300 kB padding"] = make_pdf(
        2, xref_stream=False, padding_bytes=300_000
    )
    documents["pyHanko 2p, stream, 300 kB padding"] = make_pdf(2, padding_bytes=300_000)
    for pages in (1, 100):
        source = make_pdf(pages, xref_stream=False)
        third_party = {
            f"pdftocairo {pages}p": _tool("pdftocairo", "-pdf", source=source),
            f"qpdf {pages}p, table": _tool("qpdf", "--object-streams=disable", source=source),
            f"qpdf {pages}p, uncompressed (QDF)": _tool("qpdf", "--qdf", source=source),
        }
        documents.update(third_party)
    return documents


def declined_corpus() -> dict[str, bytes]:
    """Documents the tail reader must leave to pyHanko (some of which pyHanko seals)."""
    incremental = io.BytesIO()
    writer = IncrementalPdfFileWriter(io.BytesIO(make_pdf(1, xref_stream=False)))
    writer.root[generic.NameObject("/Lang")] = generic.TextStringObject("en")
    writer.update_root()
    writer.write(incremental)
    documents = {
        "encrypted": make_pdf(1, password="secret"),
        "incremental update (/Prev)": incremental.getvalue(),
        "garbage": b"%PDF-1.7\n garbage",
        "trailing bytes after %%EOF": make_pdf(1, xref_stream=False) + b"junk\n",
    }
    source = make_pdf(3, xref_stream=False)
    for label, args in (
        ("qpdf object streams (catalog in /ObjStm)", ("qpdf", "--object-streams=generate")),
        ("qpdf linearized", ("qpdf", "--linearize")),
    ):
        documents[label] = _tool(*args, source=source)
    return documents


@pytest.mark.parametrize("name", list(corpus()))
def test_plain_documents_are_read_from_the_tail_as_pyhanko_reads_them(name: str) -> None:
    pdf = corpus()[name]
    ours = tail(pdf)
    assert ours is not None, "a plain document in the accepted shape must take the fast read"
    assert ours == reference(pdf)


@pytest.mark.parametrize("name", list(declined_corpus()))
def test_anything_else_is_left_to_pyhanko(name: str) -> None:
    assert pdftail.read(io.BytesIO(declined_corpus()[name])) is None


def test_catalogs_with_forms_or_permissions_are_not_plain() -> None:
    for key in ("/AcroForm", "/Perms"):
        out = io.BytesIO()
        writer = IncrementalPdfFileWriter(io.BytesIO(make_pdf(1, xref_stream=False)))
        writer.root[generic.NameObject(key)] = generic.DictionaryObject()
        writer.update_root()
        writer.write(out)
        # an update has /Prev; rewrite it as one revision so only the key is at stake
        flat = _tool("qpdf", "--object-streams=disable", source=out.getvalue())
        assert pdftail.read(io.BytesIO(flat)) is None
        assert reference(flat) is None


_SYNTAX = b"0123456789 \r\n<>[]()/RnfobjxrefstartxreftrailerendobjPrevSizeRootKids%"


def _mutations() -> st.SearchStrategy[list[tuple[str, int, int]]]:
    kind = st.sampled_from(["replace", "insert", "delete"])
    byte = st.one_of(st.sampled_from(list(_SYNTAX)), st.integers(0, 255))
    return st.lists(st.tuples(kind, st.integers(0, 10**6), byte), min_size=1, max_size=3)


def _apply(pdf: bytes, start: int, mutations: list[tuple[str, int, int]]) -> bytes:
    data = bytearray(pdf)
    for kind, where, value in mutations:
        at = start + where % max(len(data) - start, 1)
        if kind == "replace" and at < len(data):
            data[at] = value
        elif kind == "insert":
            data.insert(at, value)
        elif at < len(data):
            del data[at]
    return bytes(data)


_SAMPLES = {
    "table": make_pdf(1, xref_stream=False),
    "stream": make_pdf(1, xref_stream=True),
    "table 3p": make_pdf(3, xref_stream=False, document_id=False),
}


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sample=st.sampled_from(list(_SAMPLES)),
    region=st.sampled_from(["tail", "objects"]),
    mutations=_mutations(),
)
def test_damage_is_declined_or_read_exactly_as_pyhanko_reads_it(
    sample: str, region: str, mutations: list[tuple[str, int, int]]
) -> None:
    pdf = _SAMPLES[sample]
    # "tail": the cross-reference section, trailer and startxref; "objects": the
    # catalog and page tree at the start of the file (pyHanko's writer puts them there)
    start = len(pdf) - 700 if region == "tail" else 0
    if region == "objects":  # bytes replaced only, so that the offsets stay right
        replaced = [("replace", where, value) for _, where, value in mutations]
        damaged = _apply(pdf[:200], 0, replaced) + pdf[200:]
    else:
        damaged = _apply(pdf, start, mutations)
    ours = tail(damaged)
    if ours is not None:
        assert ours == reference(damaged)


def _object_spans(pdf: bytes) -> list[tuple[int, int]]:
    """Where the dictionaries (not streams) of a file are: the catalog, pages and page."""
    spans = []
    for found in re.finditer(rb"\d+ 0 obj.*?endobj", pdf, re.DOTALL):
        if b"stream" not in found.group():
            spans.append(found.span())
    return spans


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sample=st.sampled_from(list(_SAMPLES)),
    mutations=st.lists(
        st.tuples(st.integers(0, 10**6), st.sampled_from(list(_SYNTAX))), min_size=1, max_size=4
    ),
)
def test_damage_inside_the_objects_read_is_declined_or_read_as_pyhanko_reads_it(
    sample: str, mutations: list[tuple[int, int]]
) -> None:
    pdf = bytearray(_SAMPLES[sample])
    spans = _object_spans(bytes(pdf))
    for where, value in mutations:  # bytes replaced in place: the offsets stay right
        start, end = spans[where % len(spans)]
        pdf[start + (where // len(spans)) % (end - start)] = value
    ours = tail(bytes(pdf))
    if ours is not None:
        assert ours == reference(bytes(pdf))


# -- the object syntax subset (`pdfsyntax`) against pyHanko's parser ----------------------

_SEPARATORS = st.sampled_from([b" ", b"", b"\n", b"\r\n", b"  ", b"\t", b" % note\n", b"%\r"])
_NAMES = st.builds(
    lambda text: b"/" + text,
    st.binary(max_size=6).map(lambda b: b.translate(None, b" \n\r\t\f\x00")).filter(bool)
    | st.sampled_from([b"Type", b"Page", b"A#20B", b"Kids", b"\xc3\xa9t\xc3\xa9", b""]),
)
_REFERENCE_TEXT = st.builds(
    lambda a, s1, b, s2: b"%d%s%d%sR" % (a, s1, b, s2),
    st.integers(0, 10**11),
    st.sampled_from([b" ", b" ", b" ", b"  ", b"\n"]),
    st.integers(0, 70000),
    st.sampled_from([b" ", b" ", b"\n"]),
)
_SCALARS = st.one_of(
    _NAMES,
    st.integers(-(10**12), 10**12).map(lambda n: str(n).encode()),
    st.sampled_from([b"+5", b"-0", b"007", b"1.5", b"-2.", b".5", b"-.25", b"1.2.3", b"12-3"]),
    _REFERENCE_TEXT,
    st.builds(lambda text: b"(" + text + b")", st.binary(max_size=8)),
    st.builds(
        lambda text: b"<" + text + b">",
        st.text("0123456789abcdefABCDEF \n", max_size=9).map(str.encode),
    ),
    st.sampled_from([b"true", b"false", b"null", b"tru", b"nul", b"R", b")", b">"]),
)


def _compose(children: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    item = st.tuples(_SEPARATORS, children)
    array = st.lists(item, max_size=4).map(lambda xs: b"[" + b"".join(a + b for a, b in xs) + b"]")
    entry = st.tuples(_SEPARATORS, _NAMES, _SEPARATORS, children)
    dictionary = st.lists(entry, max_size=4).map(
        lambda xs: b"<<" + b"".join(a + b + c + d for a, b, c, d in xs) + b" >>"
    )
    return array | dictionary


_KIDS = st.lists(st.tuples(_SEPARATORS, _REFERENCE_TEXT), max_size=6).map(
    lambda xs: b"[" + b"".join(a + b for a, b in xs) + b"]"
)  # /Kids-like arrays, which `pdfsyntax` reads in one match
_OBJECTS = st.recursive(_SCALARS | _KIDS, _compose, max_leaves=12)


class _Handler(PdfHandler):
    strict = False


def _shape(obj: object) -> object:
    """Types all the way down, so that a name and a string that print alike differ."""
    if isinstance(obj, dict):
        return ("dict", [(type(k).__name__, k, _shape(v)) for k, v in obj.items()])
    if isinstance(obj, list):
        return ("list", [_shape(v) for v in obj])
    return type(obj).__name__


@settings(max_examples=1500, deadline=None)
@given(text=_OBJECTS, after=_SEPARATORS)
def test_the_syntax_subset_parses_as_pyhanko_parses_or_declines(text: bytes, after: bytes) -> None:
    data = text + after + b"endobj" + b"\n" * 20
    try:
        ours, end = pdfsyntax.parse(data, 0, None)
    except pdfsyntax.Unsupported:
        return
    if not data.startswith(b"endobj", pdfsyntax.skip_whitespace(data, end)):
        return  # `pdftail` declines an object not followed by endobj
    stream = io.BytesIO(data)
    theirs = generic.read_object(stream, generic.Reference(1, 0, _Handler()))
    assert fastpdf._serialise(ours) == fastpdf._serialise(theirs)
    assert _shape(ours) == _shape(theirs)
    assert data.startswith(b"endobj", pdfsyntax.skip_whitespace(data, stream.tell()))


# -- the fast path of `pdfsyntax.parse` against its definition (`parse_exactly`) -----------


def _deep(obj: object, handler: object) -> object:
    """Types, values and attributes all the way down (the handler by identity)."""
    if obj is handler:
        return "the handler"
    if not isinstance(obj, generic.PdfObject | generic.Reference):
        return (type(obj), obj)  # e.g. a text string's encoding, an idnum
    if isinstance(obj, dict):
        return (type(obj), [(type(k), k, _deep(v, handler)) for k, v in obj.items()])
    if isinstance(obj, list):
        return (type(obj), [_deep(v, handler) for v in obj])
    attributes = vars(obj) if hasattr(obj, "__dict__") else {}
    if isinstance(obj, generic.IndirectObject | generic.Reference):
        return (type(obj), [(k, _deep(v, handler)) for k, v in attributes.items()])
    value = bool(obj) if isinstance(obj, generic.BooleanObject | generic.NullObject) else obj
    return (type(obj), value, [(k, _deep(v, handler)) for k, v in attributes.items()])


def _outcome(parser: object, data: bytes, handler: PdfHandler) -> object:
    try:
        obj, end = parser(data, 0, handler)  # type: ignore[operator]
    except pdfsyntax.Unsupported as error:
        return type(error)  # Short and Unsupported apart
    return _deep(obj, handler), end


def _same_at_every_length(data: bytes) -> None:
    handler = _Handler()
    for length in range(len(data) + 1):
        cut = data[:length]
        expected = _outcome(pdfsyntax.parse_exactly, cut, handler)
        assert _outcome(pdfsyntax.parse, cut, handler) == expected, cut


_EDGE_SEPARATORS = _SEPARATORS | st.sampled_from([b"\x00", b"\x0b", b" \x00 ", b"%x\r\n"])
_EDGE_SCALARS = st.sampled_from(
    [
        b"0 0 R",  # object 0
        b"00 0 R",
        b"5  0 R",  # a reference spelt differently: pyHanko takes it, `_parse` refuses
        b"5 0\nR",
        b"5 0 Rx",
        b"-5 0 R",
        b"12345678901 0 R",
        b"1 123456 R",
        b"{",
        b"/A#20",
        b"/\x80",
        b"<0a>",
        b"<FEFF0041>",  # a byte order mark: a text string
        b"<EFBBBF41>",
        b"<00ff>",  # undefined in PDFDocEncoding: a byte string
        b"(\xfe\xff\x00A)",
    ]
)
_EDGE_OBJECTS = st.recursive(
    _SCALARS | _KIDS | _EDGE_SCALARS,
    lambda children: (
        _compose(children)
        | st.lists(st.tuples(_EDGE_SEPARATORS, children), max_size=4).map(
            lambda xs: b"[" + b"".join(a + b for a, b in xs) + b"]"
        )
        | st.tuples(_NAMES, children).map(lambda kv: b"<<" + kv[0] + kv[0] + b" " + kv[1] + b">>")
    ),
    max_leaves=10,
)


@settings(max_examples=400, deadline=None)
@given(
    text=_EDGE_OBJECTS,
    after=_EDGE_SEPARATORS,
    padding=st.integers(0, 24),
)
def test_the_fast_path_answers_as_the_definition_at_every_length(
    text: bytes, after: bytes, padding: int
) -> None:
    """Objects, errors (`Short` apart from `Unsupported`) and ends, the buffer cut anywhere."""
    _same_at_every_length(text + after + b"endobj" + b"\n" * padding)


@pytest.mark.parametrize(
    "text",
    [
        b"<< /Type /Page /MediaBox [0 0 595 842] /Count 3 /Parent 2 0 R >>",
        b"<</Kids[5 0 R 7 0 R\x00 9 0 R]/A[1 2\x0b3]/B[ -1 .5]/C[1.5 -2. 007 -0]>>",
        b"<< /A 1 /A 2 >>",
        b"<< 5 6 >>",
        b"<< /Kids [ 1 0 R 0 0 R ] >>",
        b"<< /A [ 1 0 R 5 ] /B [5 0 R%c\n] /C [1 % c\n 2] >>",
        b"<< /Count 5 0 R >>",
        b"<< /Count 5  0 R >>",
        b"[1 2 R]",
        b"<< /Length 12 >>",
        b"[" * 31 + b"1" + b"]" * 31,
        b"[" * 32 + b"]" * 32,
        b"[" * 33 + b"]" * 33,
        b"[" * 32 + b"1" + b"]" * 32,
        b"<<" * 32 + b">>" * 32,
        b"<</A" * 32 + b" 1" + b">>" * 32,
        b"<</A" * 33 + b" 1" + b">>" * 33,
        b"[" * 32 + b"5 0 R" + b"]" * 32,
        b"(a) (b\\) <4> <zz>",
        b"<< /ID [<00ff11> <feff0041>] /T (\xef\xbb\xbfA) >>",
        b"true false null nul",
    ],
)
def test_the_fast_path_answers_as_the_definition_on_edge_cases(text: bytes) -> None:
    for after in (b"", b" endobj", b" endobj" + b"\n" * 30):
        _same_at_every_length(text + after)


@settings(max_examples=300, deadline=None)
@given(
    raw=st.binary(max_size=12),
    bom=st.sampled_from([b"", b"\xfe\xff", b"\xff\xfe", b"\xef\xbb\xbf"]),
)
def test_strings_are_made_as_pdf_string_makes_them(raw: bytes, bom: bytes) -> None:
    try:
        expected: object = _deep(generic.pdf_string(bom + raw), None)
    except UnicodeDecodeError:  # a UTF-16 string of odd length: pyHanko's error, both ways
        expected = UnicodeDecodeError
    try:
        ours: object = _deep(pdfsyntax._string(bom + raw), None)
    except UnicodeDecodeError:
        ours = UnicodeDecodeError
    assert ours == expected


def test_references_are_made_as_pyhanko_makes_them() -> None:
    handler = _Handler()
    ours = pdfsyntax._reference(12, 3, handler)
    theirs = generic.IndirectObject(12, 3, handler)  # type: ignore[no-untyped-call]
    assert type(ours) is type(theirs) and vars(ours).keys() == vars(theirs).keys()
    assert type(ours.reference) is type(theirs.reference)
    assert list(vars(ours.reference).items()) == list(vars(theirs.reference).items())
    assert ours == theirs and hash(ours) == hash(theirs) and ours.reference.pdf is handler


def test_the_common_shapes_take_the_fast_path() -> None:
    """Else the comparisons above would only show that both paths give up alike."""
    page = (
        b"<<\n/Type /Page\n/MediaBox [ 0 0 595.5 842 ]\n/Contents 4 0 R\n/Resources <<\n"
        b"/Font <<\n/F1 3 0 R\n>>\n>>\n/Kids [ 5 0 R 7 0 R ]\n/ID [ <00ff> <41> ] /T (x)\n"
        b"/Parent 2 0 R /Open true /N null>>\nendobj\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n"
    )
    obj, end = pdfsyntax._fast(page, 0, None)
    assert (_deep(obj, None), end) == _outcome(pdfsyntax.parse_exactly, page, None)  # type: ignore[arg-type]


def _written_by_pyhanko(obj: generic.PdfObject) -> bytes:
    out = io.BytesIO()
    obj.write_to_stream(out, None)
    return out.getvalue()


@settings(max_examples=800, deadline=None)
@given(text=_EDGE_OBJECTS, after=_SEPARATORS)
def test_objects_are_serialised_as_pyhanko_writes_them(text: bytes, after: bytes) -> None:
    """`fastpdf._serialise` against pyHanko's writer, over what pyHanko's parser reads."""
    stream = io.BytesIO(text + after + b" endobj" + b"\n" * 20)
    try:
        obj = generic.read_object(stream, generic.Reference(1, 0, _Handler()))
    except Exception:
        return  # pyHanko's parser refuses it: nothing to write
    assert fastpdf._serialise(obj) == _written_by_pyhanko(obj)


@pytest.mark.parametrize("name", list(corpus()))
def test_catalogs_and_pages_are_serialised_as_pyhanko_writes_them(name: str) -> None:
    document = fastpdf.read_with_pyhanko(io.BytesIO(corpus()[name]))
    for obj in (document.root, document.page, document.annots):
        assert fastpdf._serialise(obj) == _written_by_pyhanko(obj)
    names = [generic.NameObject(text) for text in ("/A#B", "/é", "/A B", "/(", "/", "/x~")]
    for obj in (
        *names,
        generic.ArrayObject(names),
        generic.DictionaryObject({names[0]: generic.ArrayObject(names)}),
    ):
        assert fastpdf._serialise(obj) == _written_by_pyhanko(obj)  # type: ignore[arg-type]
