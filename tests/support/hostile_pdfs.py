"""Crafted PDFs that attack parsers: deep nesting, deep page trees (issue 24)."""

from __future__ import annotations


def _assemble(objects: list[bytes], root: int = 1) -> bytes:
    """A PDF with a correct xref table from numbered object bodies (object n = objects[n-1])."""
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        root,
        xref,
    )
    return bytes(out)


_PAGE = b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>"


def deep_arrays(depth: int = 10_000) -> bytes:
    """The catalog carries `depth` arrays, each inside the next: [[[[ ... ]]]]."""
    nested = b"[" * depth + b"]" * depth
    catalog = b"<< /Type /Catalog /Pages 2 0 R /Deep " + nested + b" >>"
    pages = b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>"
    return _assemble([catalog, pages, _PAGE])


def deep_dictionaries(depth: int = 10_000) -> bytes:
    """The same with dictionaries: << /A << /A << ... >> >> >>."""
    nested = b"<< /A " * depth + b"1" + b" >>" * depth
    catalog = b"<< /Type /Catalog /Pages 2 0 R /Deep " + nested + b" >>"
    pages = b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>"
    return _assemble([catalog, pages, _PAGE])


def deep_page_tree(depth: int = 5_000) -> bytes:
    """A page tree `depth` levels deep: each /Pages node has one child, the last a page."""
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>"]
    # nodes 2 .. depth+1 are /Pages, node depth+2 is the page
    for level in range(depth):
        number = 2 + level
        parent = b" /Parent %d 0 R" % (number - 1) if level else b""
        objects.append(b"<< /Type /Pages /Kids [%d 0 R] /Count 1%s >>" % (number + 1, parent))
    last = 2 + depth
    objects.append(b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 612 792] >>" % (last - 1))
    return _assemble(objects)


def cyclic_page_tree() -> bytes:
    """A /Pages node whose /Kids point back at itself."""
    catalog = b"<< /Type /Catalog /Pages 2 0 R >>"
    pages = b"<< /Type /Pages /Kids [2 0 R 3 0 R] /Count 2 >>"
    return _assemble([catalog, pages, _PAGE])
