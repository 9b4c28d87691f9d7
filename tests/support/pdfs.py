"""Test and benchmark documents, made here so no binary fixture is committed."""

from __future__ import annotations

import io
import os

from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.writer import PdfFileWriter


def make_pdf(
    pages: int = 1,
    *,
    padding_bytes: int = 0,
    title: str = "Contract",
    xref_stream: bool = True,
    password: str | None = None,
    info: bool = True,
    document_id: bool = True,
) -> bytes:
    """A PDF with `pages` pages of text and, optionally, an incompressible attachment-sized
    stream of `padding_bytes` (to reach e.g. 20 MB).

    `xref_stream=False` writes a classic cross-reference table, which the peers'
    placeholder code (@signpdf/placeholder-plain) needs; benchmarks use it for every engine.
    `password` makes an AES-256 encrypted PDF (which the signer must refuse, clearly).
    `info=False` / `document_id=False` leave /Info / /ID out of the trailer (older or
    minimal generators do), for the seal writer's tests.
    """
    writer = PdfFileWriter(stream_xrefs=xref_stream)
    if not (info and document_id):
        populate = writer._populate_trailer

        def trimmed(trailer: generic.DictionaryObject) -> None:
            populate(trailer)
            for key, kept in (("/Info", info), ("/ID", document_id)):
                if not kept:
                    trailer.pop(key, None)

        writer._populate_trailer = trimmed  # type: ignore[method-assign]
    font = writer.add_object(
        generic.DictionaryObject(
            {
                generic.NameObject("/Type"): generic.NameObject("/Font"),
                generic.NameObject("/Subtype"): generic.NameObject("/Type1"),
                generic.NameObject("/BaseFont"): generic.NameObject("/Helvetica"),
            }
        )
    )
    for number in range(1, pages + 1):
        lines = [f"BT /F1 18 Tf 72 770 Td ({title}, page {number} of {pages}) Tj ET"]
        lines += [
            f"BT /F1 10 Tf 72 {740 - 14 * i} Td (Clause {number}.{i}: the parties agree "
            f"to the terms set out in this clause.) Tj ET"
            for i in range(40)
        ]
        stream = generic.StreamObject(stream_data="\n".join(lines).encode())
        page = generic.DictionaryObject(
            {
                generic.NameObject("/Type"): generic.NameObject("/Page"),
                generic.NameObject("/MediaBox"): generic.ArrayObject(
                    [generic.NumberObject(v) for v in (0, 0, 595, 842)]
                ),
                generic.NameObject("/Contents"): writer.add_object(stream),
                generic.NameObject("/Resources"): generic.DictionaryObject(
                    {
                        generic.NameObject("/Font"): generic.DictionaryObject(
                            {generic.NameObject("/F1"): font}
                        )
                    }
                ),
            }
        )
        writer.insert_page(page)
    if padding_bytes:
        blob = generic.StreamObject(stream_data=os.urandom(padding_bytes))
        writer.root[generic.NameObject("/SignetPadding")] = writer.add_object(blob)
    if password is not None:
        writer.encrypt(password, password)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def make_png(width: int = 300, height: int = 120) -> bytes:
    """A handwriting-like PNG (a dark scribble on transparent background)."""
    from PIL import Image, ImageDraw

    image = Image.new("RGBA", (width, height), (255, 255, 255, 0))
    draw = ImageDraw.Draw(image)
    points = [(10 + i * 7, 60 + int(30 * ((-1) ** i) * (i % 5) / 5)) for i in range(40)]
    draw.line(points, fill=(20, 30, 120, 255), width=4)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()
