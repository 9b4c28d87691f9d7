"""A typed signature, for a person who cannot draw one (keyboard only, a screen reader,
no JavaScript): their name rendered as a PNG in the appliance's Latin + CJK font, then
the same intent code and signature as a drawn one.  What is typed is checked as a name
(1–80 printable characters); the image is only the appearance, the signature itself is
the signer service's, after the intent code."""

from __future__ import annotations

import io
import re
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

NAME = re.compile(r"^[^\x00-\x1f\x7f<>]{1,80}$")
SIZE = 72
INK = (16, 33, 75, 255)


def typed_name_ok(name: str) -> bool:
    return bool(NAME.fullmatch(name)) and bool(name.strip())


def typed_signature_png(name: str, font_path: Path) -> bytes:
    """`name` written on a transparent PNG, as wide as the text (a long name is scaled to
    at most 1200 px so the image stays well under the signing step's size limit)."""
    font = ImageFont.truetype(str(font_path), SIZE)
    left, top, right, bottom = (int(v) for v in font.getbbox(name))
    margin = SIZE // 3
    width, height = right - left + 2 * margin, bottom - top + 2 * margin
    image = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    ImageDraw.Draw(image).text((margin - left, margin - top), name, font=font, fill=INK)
    if width > 1200:
        image = image.resize((1200, max(1, height * 1200 // width)))
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()
