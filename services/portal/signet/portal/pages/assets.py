"""The pages' static files (stylesheet, scripts, the vendored pdf.js and signature_pad),
served by the portal itself with the pages' security headers: no CDN at run time."""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, JSONResponse, Response
from signet.portal.pages.security import HEADERS

STATIC = (Path(__file__).parent / "static").resolve()
#: only what a page asks for; nothing else under static/ (VERSIONS, LICENSE) is served
SERVED = frozenset({".css", ".js", ".mjs", ".pfb", ".ttf", ".svg", ".png"})
#: the vendored files change only with a new build, and the pages name their version
CACHE = "public, max-age=3600"

router = APIRouter()


@router.get("/static/{path:path}", response_class=Response)
async def static_file(
    path: Annotated[str, PathParam(max_length=200, pattern=r"^[A-Za-z0-9_./-]+$")],
) -> Response:
    """A file under ``static/``; anything outside it, or of another kind, is not found."""
    target = (STATIC / path).resolve()
    if (
        not target.is_relative_to(STATIC)
        or target.suffix not in SERVED
        or ".." in path
        or not target.is_file()
    ):
        return JSONResponse(
            {"error": "not_found", "detail": "no such file"}, status_code=404, headers=HEADERS
        )
    media_type = "text/javascript" if target.suffix == ".mjs" else mimetypes.guess_type(target)[0]
    return FileResponse(
        target,
        media_type=media_type or "application/octet-stream",
        headers=HEADERS | {"Cache-Control": CACHE},
    )
