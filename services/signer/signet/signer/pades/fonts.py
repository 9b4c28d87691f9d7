# mypy: disable-error-code="no-untyped-call"
# (pyHanko's PDF object constructors are untyped; every call here builds one)
"""The stamp font as a pyHanko font engine: a small renumbered subset per signature.

pyHanko's `GlyphAccumulator` parses the whole font for every signature and subsets it
with ``retain_gids`` (a TrueType font has no CID charset, so pyHanko keeps every glyph
id and only empties the unused ones): for a 5 MB CJK font of 49,531 glyphs about a
second of the signing step, every time.  Here the font is decoded once
(`signet.common.fonts.FontMaster`), shaping uses one shared HarfBuzz font, and each
signature embeds a subset holding only its glyphs, renumbered in the order of first
use: the CID written in the content stream *is* the new glyph id (``CIDToGIDMap
/Identity``), so the content can be written while shaping, before the subset exists.
Widths in the PDF are in thousandths of an em, whatever the font's units.
"""

from __future__ import annotations

import weakref
from typing import Any

from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.font.api import FontEngine, FontEngineFactory
from pyhanko.pdf_utils.font.opentype import GlyphAccumulator
from pyhanko.pdf_utils.generic import pdf_name, pdf_string
from pyhanko.pdf_utils.writer import BasePdfFileWriter
from signet.common.fonts import FontMaster


class SubsetFont(GlyphAccumulator):
    """pyHanko's shaping, ToUnicode and text layout over a shared `FontMaster`, with a
    subset of only the glyphs this signature uses (see the module's docstring)."""

    def __init__(
        self, writer: BasePdfFileWriter, font: FontMaster, font_size: int, obj_stream: Any
    ) -> None:
        # GlyphAccumulator.__init__ parses the font: skip it, keep its shaping state
        FontEngine.__init__(self, writer, font.ps_name, embedded_subset=True,
                            obj_stream=obj_stream, font_size=font_size)  # fmt: skip
        self.master = font
        self.hb_font = font.hb_font
        self.units_per_em = 1000  # HarfBuzz shapes at 1000 units: PDF's glyph space
        self.features = None
        self.ot_language_tag = self.ot_script_tag = None
        self.writing_direction = None
        self.bcp47_lang_code = None
        self.use_raw_gids = True
        self._glyphs: dict[int, tuple[int, int]] = {}
        self._used: list[int] = []
        self._cid_to_unicode: dict[int, str] = {}
        self._font_ref = writer.allocate_placeholder()
        self._write_prepared = False

    @property
    def _reverse_cmap(self) -> dict[str, set[int]]:
        return self.master.reverse_cmap()

    @property
    def tt(self) -> Any:  # the fallback for many-glyph clusters reads glyph names
        return self.master.tt

    def _get_cid_and_width(self, glyph_id: int) -> tuple[int, int]:
        known = self._glyphs.get(glyph_id)
        if known is None:
            if glyph_id == 0:
                cid = 0
            else:
                self._used.append(glyph_id)
                cid = len(self._used)
            width = self.master.thousandths(self.master.advances[glyph_id])
            known = self._glyphs[glyph_id] = (cid, width)
        return known

    def prepare_write(self) -> None:
        if self._write_prepared:
            return
        writer, obj_stream = self.writer, self.obj_stream
        name = f"{self.subset_prefix}+{self.master.ps_name}"
        program = generic.StreamObject(stream_data=self.master.subset(self._used))
        program.compress()
        descriptor = _descriptor(self.master, name)
        descriptor[pdf_name("/FontFile2")] = writer.add_object(program)
        widths = generic.ArrayObject()
        for cid, width in sorted(self._glyphs.values()):
            entry = generic.ArrayObject([generic.NumberObject(width)])
            widths.extend([generic.NumberObject(cid), entry])
        cidfont = generic.DictionaryObject(
            {
                pdf_name("/Type"): pdf_name("/Font"),
                pdf_name("/Subtype"): pdf_name("/CIDFontType2"),
                pdf_name("/BaseFont"): pdf_name("/" + name),
                pdf_name("/CIDSystemInfo"): generic.DictionaryObject(
                    {
                        pdf_name("/Registry"): pdf_string("Adobe"),
                        pdf_name("/Ordering"): pdf_string("Identity"),
                        pdf_name("/Supplement"): generic.NumberObject(0),
                    }
                ),
                pdf_name("/FontDescriptor"): writer.add_object(descriptor, obj_stream=obj_stream),
                pdf_name("/CIDToGIDMap"): pdf_name("/Identity"),
                pdf_name("/W"): widths,
            }
        )
        type0 = generic.DictionaryObject(
            {
                pdf_name("/Type"): pdf_name("/Font"),
                pdf_name("/Subtype"): pdf_name("/Type0"),
                pdf_name("/BaseFont"): pdf_name(f"/{name}-Identity-H"),
                pdf_name("/Encoding"): pdf_name("/Identity-H"),
                pdf_name("/DescendantFonts"): generic.ArrayObject(
                    [writer.add_object(cidfont, obj_stream=obj_stream)]
                ),
                pdf_name("/ToUnicode"): writer.add_object(self._format_tounicode_cmap()),
            }
        )
        writer.add_object(type0, obj_stream, idnum=self._font_ref.idnum)
        self._write_prepared = True


def _descriptor(font: FontMaster, name: str) -> generic.DictionaryObject:
    head, hhea, os2 = font.tt["head"], font.tt["hhea"], font.tt["OS/2"]
    em = font.thousandths
    return generic.DictionaryObject(
        {
            pdf_name("/Type"): pdf_name("/FontDescriptor"),
            pdf_name("/FontName"): pdf_name("/" + name),
            pdf_name("/Flags"): generic.NumberObject(0b100),  # symbolic: own glyph set
            pdf_name("/FontBBox"): generic.ArrayObject(
                generic.NumberObject(em(v)) for v in (head.xMin, head.yMin, head.xMax, head.yMax)
            ),
            pdf_name("/ItalicAngle"): generic.NumberObject(0),
            pdf_name("/Ascent"): generic.NumberObject(em(hhea.ascent)),
            pdf_name("/Descent"): generic.NumberObject(em(hhea.descent)),
            pdf_name("/CapHeight"): generic.NumberObject(
                em(getattr(os2, "sCapHeight", 0) or hhea.ascent)
            ),
            pdf_name("/StemV"): generic.NumberObject(
                int(10 + 220 * (os2.usWeightClass - 50) / 900)
            ),
        }
    )


class SubsetFontFactory(FontEngineFactory):
    """One engine per writer and font: every widget of a signature shares it, so the
    revision embeds one subset with all their glyphs (written when the writer finishes)."""

    def __init__(self, font: FontMaster, size: int = 10) -> None:
        self.font = font
        self.size = size

    def create_font_engine(self, writer: BasePdfFileWriter, obj_stream: Any = None) -> FontEngine:
        engines = _engines.setdefault(writer, {})
        engine = engines.get(id(self.font))
        if engine is None:
            if obj_stream is None and writer.stream_xrefs:
                obj_stream = writer.prepare_object_stream()
            engine = engines[id(self.font)] = SubsetFont(writer, self.font, self.size, obj_stream)
        return engine


_engines: weakref.WeakKeyDictionary[BasePdfFileWriter, dict[int, FontEngine]] = (
    weakref.WeakKeyDictionary()
)
