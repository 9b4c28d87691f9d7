"""The portal's server-rendered pages (first slice: the external signer's journey).

The pages translate a browser's forms to the same services the recipient API calls
(`signet.portal.http.links`); nothing here re-implements the workflow.  Every page is
rendered with Jinja2 (autoescape on), translated with Babel catalogues (en, es, zh-CN),
and sent with a strict Content-Security-Policy: no inline script or style, everything
from the portal itself (the vendored pdf.js and signature_pad included, never a CDN).
"""

from __future__ import annotations

from fastapi import APIRouter
from signet.portal.pages import assets, signing

router = APIRouter(include_in_schema=False)
router.include_router(assets.router)
router.include_router(signing.router)

__all__ = ["router"]
