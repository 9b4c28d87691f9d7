"""The documents' pages as images, for a browser without JavaScript (pdf.js is the
normal path): poppler's ``pdftoppm`` renders one page at a time, in a subprocess with a
time limit, from the revision the recipient would sign, fetched from the vault."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from signet.common.errors import NotFound, ServiceUnavailable

#: pixels per inch: an A4 page is 660 px wide, readable on a phone, small to send
RESOLUTION = 80
TIMEOUT = 20.0


def page_png(pdf: bytes, page: int, pages: int) -> bytes:
    """Page `page` (from 1) of `pdf` as a PNG."""
    if not 1 <= page <= pages:
        raise NotFound(f"the document has no page {page}")
    with tempfile.TemporaryDirectory(prefix="signet-preview-") as folder:
        source = Path(folder) / "document.pdf"
        source.write_bytes(pdf)
        target = Path(folder) / "page"
        try:
            subprocess.run(
                ["pdftoppm", "-f", str(page), "-l", str(page), "-r", str(RESOLUTION),
                 "-png", "-singlefile", str(source), str(target)],
                check=True, capture_output=True, timeout=TIMEOUT,
            )  # fmt: skip
        except (subprocess.SubprocessError, OSError) as exc:
            raise ServiceUnavailable(
                f"the page could not be rendered ({type(exc).__name__})"
            ) from None
        return (Path(folder) / "page.png").read_bytes()
