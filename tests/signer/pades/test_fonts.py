"""The stamp font's per-signature subset: only the glyphs used, renumbered, each the
font's own outline, text extractable, and safe when many signatures are made at once."""

from __future__ import annotations

import io
import re
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fontTools.ttLib import TTFont
from fpdf import FPDF
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.stamp import TextStampStyle
from pyhanko.stamp.text import TextStamp
from signet.common import fonts
from signet.signer.pades import appearance

from tests.support.render import ink, render

EMPTY = generic.DictionaryObject()
TEXT = "签署人：李伟 · José Núñez · Ñandú 日期 2026-12-07"

pytestmark = pytest.mark.skipif(
    not Path(appearance.font_path()).is_file(), reason="the stamp font package is not installed"
)


def _blank() -> bytes:
    pdf = FPDF()
    pdf.add_page()
    return bytes(pdf.output())


def _stamped(text: str) -> bytes:
    writer = IncrementalPdfFileWriter(io.BytesIO(_blank()))
    style = TextStampStyle(stamp_text=text, text_box_style=appearance.text_box_style())
    TextStamp(writer, style).apply(0, 40, 600)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def _text(pdf: bytes) -> str:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "doc.pdf"
        path.write_bytes(pdf)
        return subprocess.run(
            ["pdftotext", str(path), "-"], capture_output=True, check=True, text=True, timeout=60
        ).stdout


def _type0_font(pdf: bytes) -> Any:
    """The stamp's Type0 font, found through the page's resources and its form XObjects."""
    reader = PdfFileReader(io.BytesIO(pdf))
    pending = [reader.root["/Pages"]["/Kids"][0].get_object()]
    while pending:
        holder = pending.pop()
        resources = holder.get("/Resources", EMPTY).get_object()
        for font in resources.get("/Font", EMPTY).get_object().values():
            if font.get_object()["/Subtype"] == "/Type0":
                return font.get_object()
        xobjects = resources.get("/XObject", EMPTY).get_object()
        pending.extend(x.get_object() for x in xobjects.values())
    raise AssertionError("no embedded Type0 font found")


def _embedded_font(pdf: bytes) -> tuple[TTFont, dict[int, int], dict[str, int]]:
    """The embedded program, its /W widths by CID, and the CID of each character."""
    font = _type0_font(pdf)
    descendant = font["/DescendantFonts"][0].get_object()
    program = descendant["/FontDescriptor"]["/FontFile2"].get_object().data
    widths, raw = {}, list(descendant["/W"])
    for cid, entry in zip(raw[::2], raw[1::2], strict=True):
        for offset, width in enumerate(entry):
            widths[int(cid) + offset] = int(width)
    cids = {}
    cmap = font["/ToUnicode"].get_object().data.decode("ascii")
    for first, last, target in re.findall(r"<(\w{4})> <(\w{4})> <(\w+)>", cmap):
        start, text = int(first, 16), bytes.fromhex(target).decode("utf-16-be")
        for offset in range(int(last, 16) - start + 1):
            cids[text[:-1] + chr(ord(text[-1]) + offset)] = start + offset
    for first, targets in re.findall(r"<(\w{4})> <\w{4}> \[([^\]]*)\]", cmap):
        for offset, target in enumerate(re.findall(r"<(\w+)>", targets)):
            cids[bytes.fromhex(target).decode("utf-16-be")] = int(first, 16) + offset
    for cid, target in re.findall(r"^<(\w{4})> <(\w+)>$", cmap, re.MULTILINE):
        cids[bytes.fromhex(target).decode("utf-16-be")] = int(cid, 16)
    return TTFont(io.BytesIO(program)), widths, cids


def test_the_subset_holds_only_the_glyphs_used_each_the_fonts_own() -> None:
    pdf = _stamped(TEXT)
    assert _text(pdf).split() == TEXT.split()  # ToUnicode maps every CID back
    assert ink(render(pdf), (40, 600, 400, 660)) > 50

    subset, widths, cids = _embedded_font(pdf)
    master = fonts.master(appearance.font_path())
    distinct = {char for char in TEXT if not char.isspace()}
    # glyph 0, one per distinct character, and the components of composite accents
    assert len(distinct) < subset["maxp"].numGlyphs <= len(distinct) + 1 + 20
    assert len(subset.reader.file.getvalue()) < 60_000  # the whole font is 4.6 MB

    cmap = master.tt.getBestCmap()
    sub_glyf, master_glyf = subset["glyf"], master.tt["glyf"]
    order = subset.getGlyphOrder()
    assert set(cids) >= distinct
    for char in "李伟ñÑ7签":
        cid, name = cids[char], cmap[ord(char)]
        sub_glyph, master_glyph = sub_glyf[order[cid]], master_glyf[name]
        if master_glyph.isComposite():
            assert sub_glyph.isComposite(), char
        else:
            assert list(sub_glyph.coordinates) == list(master_glyph.coordinates), char
        advance = master.tt["hmtx"][name][0]
        assert widths[cid] == round(advance * 1000 / master.units_per_em), char


def test_many_signatures_at_once_each_get_their_own_correct_subset() -> None:
    texts = [f"{name} 第{n}号 合同" for n, name in enumerate(["张伟", "José", "王芳", "Núñez"] * 4)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(_stamped, texts))
    for text, pdf in zip(texts, results, strict=True):
        assert _text(pdf).split() == text.split()
