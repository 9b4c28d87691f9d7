"""The documents' pages as images, for a browser without JavaScript (pdf.js is the
normal path): poppler's ``pdftoppm`` renders one page at a time, in a subprocess with a
time limit, from the revision the recipient would sign, fetched from the vault."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from signet.common.errors import NotFound, ServiceUnavailable, SignetError
from signet.portal.pages.security import PAGE_HEADERS
from signet.portal.pages.signing import (
    TOKEN,
    bad_link_page,
    envelope_of,
    portal_and_context,
    problem_page,
)

#: pixels per inch: an A4 page is 660 px wide, readable on a phone, small to send
RESOLUTION = 80
TIMEOUT = 20.0

router = APIRouter()


@router.get("/s/{token}/documents/{index}/pages/{page}.png", response_class=Response)
async def page_image(request: Request, token: str, index: int, page: int) -> Response:
    """One page as a PNG (`signet.portal.pages.preview`), for a browser without
    JavaScript; the same checks as the document itself (identity, turn)."""
    portal, context = portal_and_context(request)
    if not TOKEN.fullmatch(token):
        return bad_link_page(context)
    envelope = await envelope_of(portal, token)
    if isinstance(envelope, SignetError):
        return problem_page(context, envelope, token)
    if not 0 <= index < len(envelope.documents):
        return problem_page(context, NotFound(f"no document {index}"), token)
    document = envelope.documents[index]
    try:
        pdf = await run_in_threadpool(portal.storage.get, document.current_sha256)
        png = await run_in_threadpool(page_png, pdf, page, document.pages)
    except SignetError as exc:
        return problem_page(context, exc, token)
    return Response(png, media_type="image/png", headers=PAGE_HEADERS)


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
