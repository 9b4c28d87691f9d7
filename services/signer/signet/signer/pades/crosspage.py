"""The cross-page seal (骑缝章): one seal across the right edges of every page.

Chinese contracts carry the company seal across the edge of the stacked pages, so that
a page swapped later breaks the seal's outline.  Here the seal image is cut into as
many vertical strips as the document has pages; strip *i* is a widget on the right
edge of page *i* (each page's own media box), all widgets of the one signature field,
so one signature covers every strip and pyHanko's difference analysis sees form
filling (earlier signatures stay valid), exactly as for `also_on`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pyhanko.pdf_utils import generic, layout
from pyhanko.pdf_utils.images import PdfImage
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.stamp import TextStampStyle
from signet.common.contracts.signer import CrossPageSeal
from signet.common.errors import InvalidRequest

#: A cross-page seal needs two pages at least; past this many the strips are too thin
#: to see (and each is a widget of the one field).
MIN_PAGES, MAX_PAGES = 2, 500


@dataclass(frozen=True)
class Strip:
    """One page's part of the seal: page number (1-based), rect, and its slice."""

    page: int
    rect: tuple[float, float, float, float]
    image: Any  # a PIL image


def strips(writer: IncrementalPdfFileWriter, spec: CrossPageSeal, image: Any) -> list[Strip]:
    count = int(writer.root["/Pages"]["/Count"])
    if not MIN_PAGES <= count <= MAX_PAGES:
        raise InvalidRequest(
            f"a cross-page seal needs a document of {MIN_PAGES} to {MAX_PAGES} pages, not {count}"
        )
    whole = spec.width or spec.height * image.width / image.height
    strip = whole / count
    found: list[Strip] = []
    for index in range(count):
        page = writer.find_page_for_modification(index)[0].get_object()  # type: ignore[no-untyped-call]
        x1, y1, x2, y2 = _media_box(page)
        if spec.y + spec.height > y2 or strip > (x2 - x1) / 2:
            raise InvalidRequest(f"the cross-page seal does not fit on page {index + 1}")
        left, right = round(index * image.width / count), round((index + 1) * image.width / count)
        piece = image.crop((left, 0, max(right, left + 1), image.height))
        found.append(
            Strip(index + 1, (x2 - strip, y1 + spec.y, x2, y1 + spec.y + spec.height), piece)
        )
    return found


def strip_style(strip: Strip) -> TextStampStyle:
    """A strip's appearance: its slice of the seal, stretched to the rect, nothing else."""
    return TextStampStyle(
        stamp_text="",
        border_width=0,
        background=PdfImage(strip.image),
        background_opacity=1.0,
        background_layout=layout.SimpleBoxLayoutRule(
            x_align=layout.AxisAlignment.ALIGN_MID,
            y_align=layout.AxisAlignment.ALIGN_MID,
            inner_content_scaling=layout.InnerScaling.STRETCH_TO_FIT,
        ),
    )


def _media_box(page: generic.DictionaryObject) -> tuple[float, float, float, float]:
    """The page's media box, inherited from its parents when the page has none."""
    node: Any = page
    while node is not None:
        box = node.get("/MediaBox")
        if box is not None:
            x1, y1, x2, y2 = (float(v) for v in box)
            return min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)
        parent = node.get("/Parent")
        node = parent.get_object() if parent is not None else None
    return 0.0, 0.0, 595.0, 842.0  # no box anywhere: A4, as readers assume
