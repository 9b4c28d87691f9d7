"""A strict subset of PDF object syntax, parsed into pyHanko's own object classes.

pyHanko's object parser reads a byte at a time through the file object; for
the four or five small dictionaries a seal needs (trailer, catalog, page tree
nodes, page) that was most of what `pdftail` still cost.  This parser takes
regular expressions over a buffer instead and builds the very objects
pyHanko's parser would (`NameObject`, `NumberObject`, `FloatObject`,
`IndirectObject`, `pdf_string(...)`, arrays and dictionaries in file order),
so that what `fastpdf` serialises is unchanged.

It accepts only the unambiguous core of the syntax and raises `Unsupported`
for everything else rather than interpreting it: names with `#` escapes,
literal strings with backslashes or nested parentheses, odd or spaced hex
strings, repeated dictionary keys, numbers like `+5` or `.5`, references
spelt other than `n g R` or with object number 0, nesting deeper than 32.
Comments are accepted between tokens only, where pyHanko skips them as
whitespace (poppler/cairo write them in page dictionaries).  `Short` means
the buffer ended inside the object: read more and parse again.
tests/signer/test_pdftail.py compares the result with pyHanko's parser over
a grammar of object syntax, and `pdftail` with pyHanko's reader.

Two paths, one answer.  `_parse` is the definition: one small regex per
token kind, tried in turn, with each `Short`/`Unsupported` decided where it
arises.  `_fast` reads the same objects with one regex match per
dictionary entry or array item (all token kinds as named alternatives) and
makes the objects without going through pyHanko's constructors' generic
paths; it only ever succeeds, exactly as `_parse` would, or gives up
(`_GiveUp`), and then `_parse` reads the object again from the start and
decides.  So every error, and every object `_fast` does not know, still
comes from `_parse`.  Where `_fast` could disagree it gives up instead:

* a token that touches the end of the buffer (it might continue: `Short`);
* a number starting with a digit less than 20 bytes from the buffer's end
  (`_parse` looks 20 bytes ahead, as pyHanko does, to tell it from a
  reference), and an integer followed by what pyHanko would read as the
  rest of a reference spelt differently (`5  0 R`);
* a reference to object 0, a repeated or non-name key, a container 32 deep.

tests/signer/test_pdftail.py also compares the two paths over the grammar,
cut at every length.
"""

from __future__ import annotations

import binascii
import codecs
import re

from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.rw_common import PdfHandler

_END = rb"(?=[ \t\r\n\f\x00()<>\[\]{}/%]|\Z)"  # a token ends at whitespace or a delimiter
_SKIP = re.compile(rb"(?:[ \t\r\n\f\x00]+|%[^\r\n]*)*")  # comments count as whitespace
_REFERENCE = re.compile(rb"(\d{1,10}) (\d{1,5}) R" + _END)
#: An array of references only (a /Kids array): one match instead of one per token.
_REFERENCES = re.compile(
    rb"\[((?:[ \t\r\n\f\x00]*\d{1,10} \d{1,5} R(?=[ \t\r\n\f\x00\]]))*)[ \t\r\n\f\x00]*\]"
)
_IN_REFERENCES = re.compile(rb"(\d+) (\d+) R")
_INTEGER = re.compile(rb"-?\d+" + _END)
_REAL = re.compile(rb"-?\d+\.\d*" + _END)
_NAME = re.compile(rb"/[!-~]*?" + _END)
_NAME_CHARS = re.compile(rb"/[^\x00-\x20\x7f-\xff()<>\[\]{}/%#]*\Z")
_LITERAL = re.compile(rb"\(([^()\\]*)\)")
_HEX = re.compile(rb"<((?:[0-9A-Fa-f]{2})*)>")
_KEYWORD = re.compile(rb"(true|false|null)" + _END)

_MAX_DEPTH = 32


class Unsupported(Exception):
    """Outside the subset: let pyHanko's parser (and reader) deal with it."""


class Short(Unsupported):
    """The buffer ends inside the object: parse again with more of the file."""


def skip_whitespace(data: bytes, position: int) -> int:
    found = _SKIP.match(data, position)
    return found.end() if found is not None else position


def parse(data: bytes, position: int, handler: PdfHandler | None) -> tuple[generic.PdfObject, int]:
    """The object at `position` (no leading whitespace) and where it ends.

    Indirect references are made with `handler` as their document, as pyHanko's
    reader makes them with itself.
    """
    try:
        return _fast(data, position, handler)
    except _GiveUp:
        pass  # out of the handler, so that `_parse`'s errors do not chain to it
    return _parse(data, position, handler, 0)


def parse_exactly(
    data: bytes, position: int, handler: PdfHandler | None
) -> tuple[generic.PdfObject, int]:
    """`parse` by its definition alone (no fast path): what the tests compare `parse` with."""
    return _parse(data, position, handler, 0)


# -- the fast path ---------------------------------------------------------------------------

_SEPARATION = rb"(?>(?:[ \t\r\n\f\x00]+|%[^\r\n]*)*)"  # `_SKIP`, never backtracked into
_DELIMITED = rb"(?=[ \t\r\n\f\x00()<>\[\]{}/%])"  # `_END` without the end of the buffer
_NAME_TEXT = rb"/[^\x00-\x20\x7f-\xff()<>\[\]{}/%#]*+"  # what `_NAME` and `_NAME_CHARS` accept
_VALUE = (
    rb"(?:(?P<name>" + _NAME_TEXT + rb")" + _DELIMITED
    + rb"|(?P<ref>(?P<number>\d{1,10}) (?P<generation>\d{1,5}) R)" + _DELIMITED
    + rb"|(?P<real>-?\d++\.\d*+)" + _DELIMITED
    # pyHanko's INDIRECT_PATTERN, unbounded: an integer it would take for a reference
    + rb"|(?P<integer>-?\d++)(?!\s+\d+\s+R(?![a-zA-Z]))" + _DELIMITED
    + rb"|(?P<dictionary><<)|(?P<array>\[)"
    + rb"|\((?P<literal>[^()\\]*+)\)|<(?P<hex>(?:[0-9A-Fa-f]{2})*+)>"
    + rb"|(?P<keyword>true|false|null)" + _DELIMITED
    + rb")"
)  # fmt: skip
_FIRST = re.compile(_VALUE)
_ITEM = re.compile(_SEPARATION + rb"(?:(?P<close>\])|" + _VALUE + rb")")
_ENTRY = re.compile(
    _SEPARATION + rb"(?:(?P<close>>>)|(?P<key>" + _NAME_TEXT + rb")" + _DELIMITED
    + _SEPARATION + _VALUE + rb")"
)  # fmt: skip
#: After its "[": references only, or numbers only (whose integers pyHanko cannot take
#: for references: no R follows), separated only by what `bytes.split` splits at.
_SIMPLE_ARRAY = re.compile(
    rb"(?:(?P<references>(?:[ \t\r\n\f]*+\d{1,10} \d{1,5} R(?=[ \t\r\n\f\]]))*+)"
    rb"|(?P<numbers>(?:[ \t\r\n\f]*+-?\d++(?:\.\d*+)?+(?=[ \t\r\n\f\]]))*+))"
    rb"[ \t\r\n\f]*+\]"
)
#: How far `_parse` looks beyond a number that starts with a digit (pyHanko's peek).
_LOOKAHEAD = 20


class _GiveUp(Exception):
    """Not a case `_fast` is sure of: `_parse` decides."""


def _fast(data: bytes, position: int, handler: PdfHandler | None) -> tuple[generic.PdfObject, int]:
    found = _FIRST.match(data, position)
    if found is None:
        raise _GiveUp
    obj, end = _value(found, data, handler, 0)
    if end + _LOOKAHEAD > len(data):
        raise _GiveUp  # a number in it may be one `_parse` finds too near the end
    return obj, end


def _value(
    found: re.Match[bytes], data: bytes, handler: PdfHandler | None, depth: int
) -> tuple[generic.PdfObject, int]:
    """The value `found` matched (its last group names the kind) and where it ends."""
    kind = found.lastgroup
    if kind == "name":
        return generic.NameObject(found.group(kind).decode("ascii")), found.end()
    if kind == "ref":
        number = int(found.group("number"))
        if not number:
            raise _GiveUp  # `_parse` refuses object 0
        return _reference(number, int(found.group("generation")), handler), found.end()
    if kind == "integer":
        return _new_int(generic.NumberObject, int(found.group(kind))), found.end()
    if kind == "dictionary":
        return _dictionary_fast(data, found.end(), handler, depth)
    if kind == "array":
        return _array_fast(data, found.end(), handler, depth)
    if kind == "literal":
        return _string(found.group(kind)), found.end()
    if kind == "hex":
        return _string(binascii.unhexlify(found.group(kind))), found.end()
    if kind == "real":
        return generic.FloatObject(found.group(kind).decode("ascii")), found.end()  # type: ignore[no-untyped-call]
    if kind == "keyword":
        text = found.group(kind)
        if text == b"null":
            return generic.NullObject(), found.end()
        return generic.BooleanObject(text == b"true"), found.end()  # type: ignore[no-untyped-call]
    raise _GiveUp  # a closing bracket where a value belongs


def _dictionary_fast(
    data: bytes, at: int, handler: PdfHandler | None, depth: int
) -> tuple[generic.DictionaryObject, int]:
    if depth >= _MAX_DEPTH:
        raise _GiveUp  # its entries would be too deep (an empty one would not: `_parse` says)
    entries: dict[generic.NameObject, generic.PdfObject] = {}
    match = _ENTRY.match
    while (found := match(data, at)) is not None:
        kind = found.lastgroup
        if kind == "close":
            result = generic.DictionaryObject()  # type: ignore[no-untyped-call]
            dict.update(result, entries)  # the keys are names already: nothing to normalise
            return result, found.end()
        key_text, text = found.group("key", kind)  # type: ignore[arg-type]
        key = generic.NameObject(key_text.decode("ascii"))
        if key in entries:
            raise _GiveUp
        # the kinds of most values in a catalog, page or trailer, inline
        if kind == "name":
            entries[key], at = generic.NameObject(text.decode("ascii")), found.end()
        elif kind == "ref" and found.group("number").strip(b"0"):
            number, generation = found.group("number", "generation")
            entries[key] = _reference(int(number), int(generation), handler)
            at = found.end()
        elif kind == "integer":
            entries[key], at = _new_int(generic.NumberObject, int(text)), found.end()
        else:
            entries[key], at = _value(found, data, handler, depth + 1)
    raise _GiveUp


def _array_fast(
    data: bytes, at: int, handler: PdfHandler | None, depth: int
) -> tuple[generic.ArrayObject, int]:
    if depth >= _MAX_DEPTH:
        raise _GiveUp
    run = _SIMPLE_ARRAY.match(data, at)  # a /Kids or /MediaBox array: one match
    if run is not None:
        words = run.group(run.lastgroup or 0).split()  # separated only where `split` splits
        if run.lastgroup == "numbers":
            return generic.ArrayObject(
                [
                    generic.FloatObject(word.decode("ascii"))  # type: ignore[no-untyped-call]
                    if b"." in word
                    else _new_int(generic.NumberObject, int(word))
                    for word in words
                ]
            ), run.end()
        numbers = words[::3]
        if all(number.strip(b"0") for number in numbers):  # else `_value` gives up at the 0
            return generic.ArrayObject(
                [
                    _reference(int(number), int(generation), handler)
                    for number, generation in zip(numbers, words[1::3], strict=True)
                ]
            ), run.end()
    items = generic.ArrayObject()
    append = items.append
    match = _ITEM.match
    while (found := match(data, at)) is not None:
        if found.lastgroup == "close":
            return items, found.end()
        item, at = _value(found, data, handler, depth + 1)
        append(item)
    raise _GiveUp


#: The bytes PDFDocEncoding leaves undefined, from pyHanko's own table.
_NOT_PDFDOC = bytes(b for b in range(256) if generic._pdfDocEncoding[b] == "\u0000")
_BOMS = (codecs.BOM_UTF16_BE, codecs.BOM_UTF16_LE, codecs.BOM_UTF8)


def _string(raw: bytes) -> generic.ByteStringObject | generic.TextStringObject:
    """`pdf_string(raw)`, without its failed decoding for a binary string (an /ID: 6 µs).

    Without a byte order mark `pdf_string` decodes as PDFDocEncoding, and a byte
    that encoding leaves undefined makes it return the bytes as they are.
    """
    if not raw.startswith(_BOMS) and len(raw.translate(None, _NOT_PDFDOC)) != len(raw):
        return generic.ByteStringObject(raw)
    return generic.pdf_string(raw)


_new_int = int.__new__
_new_object = object.__new__


def _reference(number: int, generation: int, handler: PdfHandler | None) -> generic.IndirectObject:
    """`IndirectObject(number, generation, handler)` without its frozen dataclass's __init__.

    The same attributes in the same order (test_pdftail compares them); a third
    of the cost of a /Kids array of a hundred pages was `Reference.__init__`.
    """
    reference = _new_object(generic.Reference)
    reference.__dict__.update(idnum=number, generation=generation, pdf=handler)
    indirect = _new_object(generic.IndirectObject)
    indirect.__dict__["reference"] = reference
    return indirect


# -- the definition --------------------------------------------------------------------------


def _parse(
    data: bytes, position: int, handler: PdfHandler | None, depth: int
) -> tuple[generic.PdfObject, int]:
    if depth > _MAX_DEPTH:
        raise Unsupported("nested too deeply")
    if position >= len(data):
        raise Short
    first = data[position : position + 1]
    if first == b"/":
        found = _NAME.match(data, position)
        if found is None or not _NAME_CHARS.match(found.group()):
            raise Unsupported("name")
        _not_at_end(data, found.end())
        return generic.NameObject(found.group().decode("ascii")), found.end()
    if data.startswith(b"<<", position):
        return _dictionary(data, position + 2, handler, depth)
    if first == b"[":
        run = _REFERENCES.match(data, position)
        if run is not None:
            pairs = [(int(a), int(b)) for a, b in _IN_REFERENCES.findall(run.group(1))]
            if all(number > 0 for number, _ in pairs):
                return generic.ArrayObject(
                    generic.IndirectObject(number, generation, handler)  # type: ignore[no-untyped-call]
                    for number, generation in pairs
                ), run.end()
        items: list[generic.PdfObject] = []
        at = skip_whitespace(data, position + 1)
        while not data.startswith(b"]", at):
            item, at = _parse(data, at, handler, depth + 1)
            items.append(item)
            at = skip_whitespace(data, at)
            _not_at_end(data, at)
        return generic.ArrayObject(items), at + 1
    if first == b"(":
        found = _LITERAL.match(data, position)
        if found is None:
            _not_at_end(data, len(data) if data.find(b")", position) < 0 else 0)
            raise Unsupported("literal string")
        return generic.pdf_string(found.group(1)), found.end()
    if first == b"<":
        found = _HEX.match(data, position)
        if found is None:
            _not_at_end(data, len(data) if data.find(b">", position) < 0 else 0)
            raise Unsupported("hex string")
        return generic.pdf_string(binascii.unhexlify(found.group(1))), found.end()
    if first.isdigit() and _REFERENCE.match(data, position) is None:
        # pyHanko decides "reference or number" on the next 20 bytes
        _not_at_end(data, position + 20)
        if generic.INDIRECT_PATTERN.match(data, position, position + 20):
            raise Unsupported("a reference spelt differently")
    for pattern in (_REFERENCE, _REAL, _INTEGER, _KEYWORD):
        found = pattern.match(data, position)
        if found is None:
            continue
        _not_at_end(data, found.end())
        text = found.group()
        if pattern is _REFERENCE:
            if int(found.group(1)) == 0:
                raise Unsupported("object number 0")  # pyHanko's parser refuses it
            reference = generic.IndirectObject(  # type: ignore[no-untyped-call]
                int(found.group(1)), int(found.group(2)), handler
            )
            return reference, found.end()
        if pattern is _REAL:
            return generic.FloatObject(text.decode("ascii")), found.end()  # type: ignore[no-untyped-call]
        if pattern is _INTEGER:
            return generic.NumberObject(text.decode("ascii")), found.end()  # type: ignore[no-untyped-call]
        if text == b"null":
            return generic.NullObject(), found.end()
        return generic.BooleanObject(text == b"true"), found.end()  # type: ignore[no-untyped-call]
    _not_at_end(data, position + 24)
    raise Unsupported(f"unexpected {first!r}")


def _dictionary(
    data: bytes, position: int, handler: PdfHandler | None, depth: int
) -> tuple[generic.DictionaryObject, int]:
    entries: dict[generic.NameObject, generic.PdfObject] = {}
    at = skip_whitespace(data, position)
    while not data.startswith(b">>", at):
        _not_at_end(data, at + 1)
        key, at = _parse(data, at, handler, depth + 1)
        if not isinstance(key, generic.NameObject) or key in entries:
            raise Unsupported("dictionary key")
        value, at = _parse(data, skip_whitespace(data, at), handler, depth + 1)
        entries[key] = value
        at = skip_whitespace(data, at)
    return generic.DictionaryObject(entries), at + 2  # type: ignore[no-untyped-call]


def _not_at_end(data: bytes, position: int) -> None:
    """A token that reaches the end of the buffer may continue beyond it."""
    if position >= len(data):
        raise Short
