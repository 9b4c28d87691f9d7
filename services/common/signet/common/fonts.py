"""A font decoded once per process, and small subsets of it made in milliseconds.

A 5 MB CJK font (WenQuanYi Micro Hei, 49,531 glyphs) costs about a second to parse
with fontTools and as much again to subset, and the stamps of every signature (the
signer) and every certificate of completion (the portal) need one.  Here the font is
decoded once (`FontMaster`) and a subset is assembled from its decoded tables (glyf,
hmtx, head, hhea, maxp, post, the hinting programs; cmap and name when asked), holding
only the glyphs used, renumbered in that order: not by fontTools' subsetter, which
needs the whole font parsed again each time.
"""

from __future__ import annotations

import copy
import functools
import io
import threading
from collections.abc import Callable
from typing import Any

#: Tables a PDF TrueType font program needs (ISO 32000-1, 9.9): the outlines, their
#: metrics and the hinting programs.  cmap, name and the layout tables are not used by
#: a CIDFontType2 with an Identity CIDToGIDMap, and are left out unless asked for.
_COPIED = ("head", "hhea", "maxp", "OS/2", "post", "cvt ", "fpgm", "prep", "gasp")


@functools.cache
def face_bytes(path: str) -> bytes:
    """The font as a single TTF/OTF (a collection's first face): fontTools and HarfBuzz
    read one face.  Extracted once per process."""
    from fontTools.ttLib import TTFont

    buffer = io.BytesIO()
    with TTFont(path, fontNumber=0, lazy=False) as font:
        font.save(buffer)
    return buffer.getvalue()


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

    def subset(self, used: list[int], *, characters: str = "") -> bytes:
        """A TrueType font of glyph 0 and `used` (original ids) in that order, then the
        components their composite glyphs need.  Glyph ``i`` of the result is
        ``used[i - 1]`` of the original.  With `characters`, their glyphs are added too
        and the font gets a cmap and a name table, for a program that maps text itself
        (fpdf2) rather than writing glyph ids (pyHanko)."""
        from fontTools.ttLib import TTFont, newTable

        with self.lock:
            cmap = self.tt.getBestCmap()
            mapped = {ord(c): cmap[ord(c)] for c in set(characters) if ord(c) in cmap}
            by_name = self.tt.getReverseGlyphMap()
            used = used + sorted({by_name[name] for name in mapped.values()})
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
            if mapped:
                font["name"] = copy.deepcopy(self.tt["name"])
                font["cmap"] = _cmap(mapped)
            buffer = io.BytesIO()
            font.save(buffer)
            return buffer.getvalue()


def _cmap(mapped: dict[int, str]) -> Any:
    from fontTools.ttLib import newTable
    from fontTools.ttLib.tables._c_m_a_p import CmapSubtable

    table = newTable("cmap")
    table.tableVersion = 0
    table.tables = []
    for platform, encoding, format_ in ((3, 1, 4), (3, 10, 12)):
        subtable = CmapSubtable.newSubtable(format_)
        subtable.platformID, subtable.platEncID, subtable.language = platform, encoding, 0
        subtable.cmap = (
            {c: n for c, n in mapped.items() if c <= 0xFFFF} if format_ == 4 else dict(mapped)
        )
        table.tables.append(subtable)
    return table


def _ps_name(tt: Any) -> str:
    for record in tt["name"].names:
        if record.nameID == 6:
            return str(record.toUnicode())
    raise ValueError("the font has no PostScript name")


_masters: dict[str, FontMaster] = {}
_masters_lock = threading.Lock()


def master(path: str, loader: Callable[[str], bytes] = face_bytes) -> FontMaster:
    """One master per font path; a caller arriving during the warm-up waits for it
    instead of decoding the font again."""
    with _masters_lock:
        font = _masters.get(path)
        if font is None:
            font = _masters[path] = FontMaster(loader(path))
        return font
