"""What a signature shows: its appearance(s), text stamps, the font, the layout.

One signature may show in several places (`SignOptions.also_on`) and carry field
values written into its own revision (`SignOptions.stamps`: a date, a text, initials).
Both become extra widget annotations of the one signature field (its ``/Kids``), each
with a fixed appearance stream and the Locked flag, created in the revision the
signature covers.  Why widgets and not page content: pyHanko's difference analysis
accepts a new signature field with widgets on any page as form filling, so every
EARLIER signature stays valid; new page content would count as "other" modifications
and break them.  poppler 22.12 (pdfsig) reads each widget as a field of its own and looks
for /V on it: every widget carries the field's /V (`_FieldValue`), so pdfsig validates the
signature (once per widget).

Text is set in an embedded, subsetted OpenType font with CJK glyphs (WenQuanYi Micro
Hei, Debian's ``fonts-wqy-microhei``): pyHanko's default Courier has no CJK at all.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pyhanko.pdf_utils import generic, layout
from pyhanko.pdf_utils.generic import pdf_name
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.text import TextBoxStyle
from pyhanko.pdf_utils.writer import BasePdfFileWriter
from pyhanko.sign import fields
from pyhanko.stamp import TextStampStyle
from pyhanko.stamp.text import TextStamp
from signet.common import fonts as common_fonts
from signet.common.contracts.signer import Appearance, SignOptions
from signet.common.contracts.signer import TextStamp as StampSpec
from signet.common.errors import InvalidRequest, UnprocessableDocument
from signet.signer.pades.crosspage import Strip, strip_style, strips
from signet.signer.pades.fonts import SubsetFontFactory

#: Debian 12's ``fonts-wqy-microhei`` (5 MB, Latin + CJK); ``SIGNET_SIGNER_STAMP_FONT``
#: names another TTF/OTF/TTC (the first face of a collection is used).
DEFAULT_FONT = "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"

# fontTools logs every table it subsets (and drops FFTM, a FontForge timestamp) per signature
logging.getLogger("fontTools").setLevel(logging.ERROR)

#: Widget flags: Print (4) and Locked (128): shown, printed, not movable or editable.
_WIDGET_FLAGS = 4 | 128


def font_path() -> str:
    return os.environ.get("SIGNET_SIGNER_STAMP_FONT", DEFAULT_FONT)


def embedded_font(path: str, size: int = 10) -> SubsetFontFactory:
    """The stamp font at `path`, decoded once per process (see `fonts`)."""
    return SubsetFontFactory(common_fonts.master(path), size)


def warm_up() -> None:
    """Decode the stamp font ahead of the first signature (about two seconds for a CJK
    font), so that no signer's first request pays for it."""
    if Path(font_path()).is_file():
        common_fonts.master(font_path())


def text_box_style() -> TextBoxStyle:
    path = font_path()
    if not Path(path).is_file():  # a bare install without the font: Latin-1 only
        return TextBoxStyle()
    return TextBoxStyle(font=embedded_font(path))


def check_text(text: str) -> None:
    """Without the font only Latin-1 can be drawn: refuse rather than print garbage."""
    if not Path(font_path()).is_file():
        try:
            text.encode("latin-1")
        except UnicodeEncodeError as exc:
            raise UnprocessableDocument(
                f"the stamp font {font_path()} is not installed; only Latin-1 text can be drawn"
            ) from exc


_SHRINK = layout.InnerScaling.SHRINK_TO_FIT
_FIT = layout.InnerScaling.STRETCH_TO_FIT
_MID = layout.AxisAlignment.ALIGN_MID
_LEFT = layout.AxisAlignment.ALIGN_MIN


def side_by_side(width: float, height: float) -> tuple[Any, Any]:
    """(image rule, text rule): the image left and the text right in a wide box, the
    image above the text in a narrow one, so neither covers the other at any size."""
    pad = 2
    if width >= 1.5 * height:
        split = round(width * 0.4)
        image = layout.Margins(left=pad, right=round(width) - split + pad, top=pad, bottom=pad)
        text = layout.Margins(left=split + pad, right=pad, top=pad, bottom=pad)
    else:
        split = round(height * 0.4)
        image = layout.Margins(left=pad, right=pad, top=pad, bottom=split + pad)
        text = layout.Margins(left=pad, right=pad, top=round(height) - split + pad, bottom=pad)
    return (
        layout.SimpleBoxLayoutRule(
            x_align=_MID, y_align=_MID, margins=image, inner_content_scaling=_FIT
        ),
        layout.SimpleBoxLayoutRule(
            x_align=_LEFT, y_align=_MID, margins=text, inner_content_scaling=_SHRINK
        ),
    )


@dataclasses.dataclass(frozen=True)
class SignatureStyle(TextStampStyle):
    """The visible signature: the image and the text side by side (`side_by_side`);
    `hook` adds the field's other widgets once pyHanko draws the first one."""

    hook: Callable[[BasePdfFileWriter, dict[str, Any]], None] | None = None
    #: only the image, stretched to the widget (a cross-page seal's strip)
    image_only: bool = False

    def create_stamp(
        self, writer: BasePdfFileWriter, box: layout.BoxConstraints, text_params: dict[str, Any]
    ) -> TextStamp:
        style: TextStampStyle = dataclasses.replace(self, hook=None)
        if self.image_only:
            style = dataclasses.replace(style, background_layout=layout.SimpleBoxLayoutRule(
                x_align=_MID, y_align=_MID, inner_content_scaling=_FIT))  # fmt: skip
        elif self.background is not None and box.width_defined and box.height_defined:
            image_rule, text_rule = side_by_side(box.width, box.height)
            style = dataclasses.replace(
                style, background_layout=image_rule, inner_content_layout=text_rule
            )
        stamp = TextStamp(writer=writer, style=style, box=box, text_params=text_params)
        if self.hook is not None:
            self.hook(writer, text_params)
        return stamp


def stamp_style(spec: StampSpec) -> TextStampStyle:
    """A field value: just the text, shrunk to fit its rect, no border."""
    return TextStampStyle(
        stamp_text=spec.text.replace("%", "%%"),
        text_box_style=text_box_style(),
        border_width=0,
        inner_content_layout=layout.SimpleBoxLayoutRule(
            x_align=_LEFT,
            y_align=_MID,
            margins=layout.Margins.uniform(1),  # type: ignore[no-untyped-call]
            inner_content_scaling=_SHRINK,
        ),
    )


def _page_index(page: int) -> int:
    return page - 1 if page > 0 else page


def _box(rect: tuple[float, float, float, float]) -> tuple[int, int, int, int]:
    x1, y1, x2, y2 = (round(v) for v in rect)
    return x1, y1, x2, y2


def prepare_field(
    writer: IncrementalPdfFileWriter,
    field_name: str,
    existing: set[str],
    options: SignOptions,
    style: SignatureStyle | None,
    image: Any = None,
) -> tuple[None, SignatureStyle]:
    """Create the signature field with one widget per place (`also_on`, `stamps`).

    The first widget is the signature's appearance (or, for an invisible signature, the
    first place or stamp): pyHanko draws it through the returned style, whose hook then
    adds the others with the same name and time.  Returns (field spec, style) for
    `PdfSigner`: no spec, as the field now exists.
    """
    if field_name in existing:
        raise InvalidRequest(
            "stamps and also_on need a new signature field, not an existing (prepared) one"
        )
    for spec in options.stamps:
        check_text(spec.text)
    if options.appearance is not None and options.appearance.text:
        check_text(options.appearance.text)
    places: list[Appearance | StampSpec | Strip] = []
    if options.appearance is not None:
        places.append(options.appearance)
    places.extend(options.also_on)
    places.extend(options.stamps)
    if options.cross_page_seal is not None:
        if image is None:
            raise InvalidRequest("a cross-page seal needs the seal's image")
        places.extend(strips(writer, options.cross_page_seal, image))
    if style is None:  # no visible signature: also_on alone draws the same name and time
        style = SignatureStyle(
            stamp_text="Signed by %(signer)s\n%(ts)s",
            timestamp_format="%Y-%m-%d %H:%M:%S UTC",
            border_width=0,
            text_box_style=text_box_style(),
        )
    first, rest = places[0], places[1:]
    page_ref = writer.find_page_for_modification(_page_index(first.page))[0]  # type: ignore[no-untyped-call]
    _, field_ref = fields.prepare_sig_field(
        field_name,
        writer.root,
        update_writer=writer,
        existing_fields_only=False,
        box=_box(first.rect),
        include_on_page=page_ref,
        combine_annotation=False,
    )
    fields.ensure_sig_flags(writer=writer, lock_sig_flags=False)
    field = field_ref.get_object()
    kids = field["/Kids"]
    kids[0].get_object()[pdf_name("/Parent")] = field_ref
    plain = dataclasses.replace(style, hook=None)
    first_style: SignatureStyle = (
        style
        if isinstance(first, Appearance)
        else _strip_as_signature(first)
        if isinstance(first, Strip)
        else _as_signature(first)
    )

    def add_widgets(out: BasePdfFileWriter, text_params: dict[str, Any]) -> None:
        kids[0].get_object()[pdf_name("/V")] = _FieldValue(field)
        for place in rest:
            x1, y1, x2, y2 = _box(place.rect)
            box = layout.BoxConstraints(width=x2 - x1, height=y2 - y1)
            drawing = (
                plain.create_stamp(out, box, text_params)
                if isinstance(place, Appearance)
                else strip_style(place).create_stamp(out, box, {})
                if isinstance(place, Strip)
                else stamp_style(place).create_stamp(out, box, {})
            )
            where = out.find_page_for_modification(_page_index(place.page))[0]  # type: ignore[no-untyped-call]
            widget = generic.DictionaryObject(  # type: ignore[no-untyped-call]
                {
                    pdf_name("/Type"): pdf_name("/Annot"),
                    pdf_name("/Subtype"): pdf_name("/Widget"),
                    pdf_name("/F"): generic.NumberObject(_WIDGET_FLAGS),  # type: ignore[no-untyped-call]
                    pdf_name("/Rect"): generic.ArrayObject(
                        [generic.FloatObject(v) for v in (x1, y1, x2, y2)]  # type: ignore[no-untyped-call]
                    ),
                    pdf_name("/P"): where,
                    pdf_name("/Parent"): field_ref,
                    pdf_name("/V"): _FieldValue(field),
                }
            )
            drawing.apply_appearance(widget)
            widget_ref = out.add_object(widget)
            kids.append(widget_ref)
            out.register_annotation(where, widget_ref)  # type: ignore[no-untyped-call]

    return None, dataclasses.replace(first_style, hook=add_widgets)


class _FieldValue(generic.PdfObject):
    """The field's /V (the signature dictionary), repeated on each of its widgets.

    poppler (pdfsig 22.12) reads a field with several widgets as one field per widget
    and looks for /V on the widget: without it every widget is "not signed" and the
    signature is never validated.  pyHanko sets the field's /V only after the widgets
    are drawn, so the reference is written when the revision is, not copied now.
    Widgets have no /T: pyHanko (and the PDF standard) still see one field.
    """

    def __init__(self, field: generic.DictionaryObject) -> None:
        self.field = field

    def write_to_stream(self, stream: Any, handler: Any = None, container_ref: Any = None) -> None:
        self.field.raw_get("/V").write_to_stream(stream, handler, container_ref)


def _strip_as_signature(strip: Strip) -> SignatureStyle:
    """The first strip of a cross-page seal drawn as the signature's own widget."""
    base = strip_style(strip)
    return SignatureStyle(
        stamp_text="",
        border_width=0,
        background=base.background,
        background_opacity=1.0,
        image_only=True,
    )


def _as_signature(spec: StampSpec) -> SignatureStyle:
    """A text stamp drawn as the first widget (an invisible signature with stamps)."""
    base = stamp_style(spec)
    return SignatureStyle(
        stamp_text=base.stamp_text,
        text_box_style=base.text_box_style,
        border_width=0,
        inner_content_layout=base.inner_content_layout,
    )
