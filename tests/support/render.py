"""Rendering a PDF page with poppler's pdftoppm to count ink in a rect (PDF points)."""

from __future__ import annotations

import io
import subprocess
import tempfile
from pathlib import Path

from PIL import Image

Rect = tuple[float, float, float, float]


def render(pdf: bytes, page: int = 1) -> Image.Image:
    """The page in greyscale at 72 dpi: one pixel per PDF point."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "doc.pdf"
        path.write_bytes(pdf)
        png = subprocess.run(
            ["pdftoppm", "-r", "72", "-gray", "-png", "-f", str(page), "-l", str(page), str(path)],
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout
    return Image.open(io.BytesIO(png)).convert("L")


def _crop(image: Image.Image, rect: Rect) -> Image.Image:
    x1, y1, x2, y2 = rect
    height = image.height
    return image.crop((round(x1), round(height - y2), round(x2), round(height - y1)))


def ink(image: Image.Image, rect: Rect) -> int:
    """Pixels darker than mid-grey inside `rect` (x1, y1, x2, y2 from the bottom left)."""
    return sum(1 for value in _crop(image, rect).getdata() if value < 160)


def ink_box(image: Image.Image, rect: Rect) -> tuple[int, int, int, int] | None:
    """The bounding box (pixels, within the crop) of the ink inside `rect`."""
    region = _crop(image, rect).point(lambda v: 255 if v < 160 else 0)
    return region.getbbox()


def ink_difference_box(
    image: Image.Image, base: Image.Image, rect: Rect
) -> tuple[int, int, int, int] | None:
    """The bounding box of ink in `image` that `base` does not have, inside `rect`."""
    new = _crop(image, rect).point(lambda v: 255 if v < 160 else 0)
    old = _crop(base, rect).point(lambda v: 255 if v < 160 else 0)
    from PIL import ImageChops

    return ImageChops.subtract(new, old).getbbox()
