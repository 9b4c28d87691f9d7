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
"""

from __future__ import annotations

import binascii
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
    return _parse(data, position, handler, 0)


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
