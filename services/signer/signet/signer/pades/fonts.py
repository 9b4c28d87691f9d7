# mypy: disable-error-code="no-untyped-call"
# (pyHanko's PDF object constructors are untyped; every call here builds one)
"""The stamp font: parsed once per process, a small renumbered subset per signature.

pyHanko's `GlyphAccumulator` parses the whole font for every signature and subsets it
with ``retain_gids`` (a TrueType font has no CID charset, so pyHanko keeps every glyph
id and only empties the unused ones).  For a 5 MB CJK font of 49,531 glyphs that is
about a second of the signing step, every time: the glyph names, the metrics of all
glyphs, and a subset whose tables still have 49,531 entries.

Here the font is parsed once (`FontMaster`), shaping uses one shared HarfBuzz font, and
each signature embeds a subset holding only its glyphs, renumbered in the order of
first use: the CID written in the content stream *is* the new glyph id (``CIDToGIDMap
/Identity``), so the content can be written while shaping, before the subset exists.
The subset is assembled from the master's decoded tables (glyf, hmtx, head, hhea, maxp,
post, the hinting programs), not by fontTools' subsetter, which needs the whole font
parsed again each time.  Outlines and metrics are the font's own; widths in the PDF are
in thousandths of an em, whatever the font's units.
"""

from __future__ import annotations

import copy
import io
import threading
import weakref
from collections.abc import Callable
from typing import Any

from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.font.api import FontEngine, FontEngineFactory
from pyhanko.pdf_utils.font.opentype import GlyphAccumulator
from pyhanko.pdf_utils.generic import pdf_name, pdf_string
from pyhanko.pdf_utils.writer import BasePdfFileWriter

#: Tables a PDF TrueType font program needs (ISO 32000-1, 9.9): the outlines, their
#: metrics and the hinting programs.  cmap, name and the layout tables are not used by
#: a CIDFontType2 with an Identity CIDToGIDMap, and are left out.
_COPIED = ("head", "hhea", "maxp", "OS/2", "post", "cvt ", "fpgm", "prep", "gasp")


class FontMaster:
    """One font, decoded once and shared by every signature of the process.

    fontTools expands a glyph in place on first access, so building subsets is
    serialised by a lock (a few milliseconds each); shaping only reads HarfBuzz's
    immutable font.
    """

    def __init__(self, font_bytes: bytes) -> None:
        import uharfbuzz as hb  # type: ignore[import-untyped]
        from fontTools.ttLib import TTFont

        self.tt = TTFont(io.BytesIO(font_bytes))
        for tag in ("glyf", "hmtx", "cmap", *_COPIED):  # decoded now, not in a signature
            if tag in self.tt:
                self.tt[tag]
        self.units_per_em: int = self.tt["head"].unitsPerEm
        self.hb_font = hb.Font(hb.Face(font_bytes))
        self.hb_font.scale = (1000, 1000)
        self.glyph_order: list[str] = self.tt.getGlyphOrder()
        metrics: dict[str, tuple[int, int]] = self.tt["hmtx"].metrics
        self.advances = [metrics[name][0] for name in self.glyph_order]
        self.ps_name = _ps_name(self.tt)
        self.lock = threading.Lock()
        self._reverse_cmap: dict[str, set[int]] | None = None

    def reverse_cmap(self) -> dict[str, set[int]]:
        with self.lock:
            if self._reverse_cmap is None:
                self._reverse_cmap = self.tt["cmap"].buildReversed()
            return self._reverse_cmap

    def thousandths(self, value: float) -> int:
        return round(value * 1000 / self.units_per_em)

    def subset(self, used: list[int]) -> bytes:
        """A TrueType font of glyph 0 and `used` (original ids) in that order, then the
        components their composite glyphs need.  Glyph ``i`` of the result is
        ``used[i - 1]`` of the original."""
        from fontTools.ttLib import TTFont, newTable

        with self.lock:
            glyf = self.tt["glyf"]
            names = [self.glyph_order[0]] + [self.glyph_order[gid] for gid in used]
            order = list(dict.fromkeys(names))
            pending = list(order)
            while pending:  # components of composite glyphs, transitively
                for component in glyf[pending.pop()].getComponentNames(glyf):
                    if component not in order:
                        order.append(component)
                        pending.append(component)
            font = TTFont(recalcBBoxes=False, recalcTimestamp=False)
            font.setGlyphOrder(order)
            for tag in _COPIED:
                if tag in self.tt:
                    font[tag] = copy.deepcopy(self.tt[tag])
            font["post"].formatType = 3.0
            font["post"].extraNames, font["post"].mapping = [], {}
            new_glyf = font["glyf"] = newTable("glyf")
            new_glyf.glyphOrder = order
            new_glyf.glyphs = {}
            for name in order:
                glyph = glyf[name]
                # a composite names its components by id: decode and compile it again
                # against the new order; a simple glyph keeps its original bytes
                new_glyf.glyphs[name] = copy.deepcopy(glyph) if glyph.isComposite() else glyph
            hmtx = font["hmtx"] = newTable("hmtx")
            hmtx.metrics = {name: self.tt["hmtx"].metrics[name] for name in order}
            font["loca"] = newTable("loca")
            buffer = io.BytesIO()
            font.save(buffer)
            return buffer.getvalue()

    def descriptor(self, name: str) -> generic.DictionaryObject:
        head, hhea, os2 = self.tt["head"], self.tt["hhea"], self.tt["OS/2"]
        em = self.thousandths
        return generic.DictionaryObject(
            {
                pdf_name("/Type"): pdf_name("/FontDescriptor"),
                pdf_name("/FontName"): pdf_name("/" + name),
                pdf_name("/Flags"): generic.NumberObject(0b100),  # symbolic: own glyph set
                pdf_name("/FontBBox"): generic.ArrayObject(
                    generic.NumberObject(em(v))
                    for v in (head.xMin, head.yMin, head.xMax, head.yMax)
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


def _ps_name(tt: Any) -> str:
    for record in tt["name"].names:
        if record.nameID == 6:
            return str(record.toUnicode())
    raise ValueError("the stamp font has no PostScript name")


_masters: dict[str, FontMaster] = {}
_masters_lock = threading.Lock()


def master(path: str, loader: Callable[[str], bytes]) -> FontMaster:
    """One master per font path (the loader turns the path into one face's bytes); a
    signature arriving during the warm-up waits for it instead of decoding again."""
    with _masters_lock:
        font = _masters.get(path)
        if font is None:
            font = _masters[path] = FontMaster(loader(path))
        return font


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
        descriptor = self.master.descriptor(name)
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
