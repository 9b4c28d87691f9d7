"""The portal's server-rendered pages: the external signer's journey (`signing`), and
the first staff pages, sign-in and the inbox (`accounts`).

The pages translate a browser's forms to the same services the recipient API calls
(`signet.portal.http.links`); nothing here re-implements the workflow.  Every page is
rendered with Jinja2 (autoescape on), translated with Babel catalogues (en, es, zh-CN),
and sent with a strict Content-Security-Policy: no inline script or style, everything
from the portal itself (the vendored pdf.js and signature_pad included, never a CDN).
"""

from __future__ import annotations

from fastapi import APIRouter
from signet.portal.pages import accounts, assets, preview, signing

router = APIRouter(include_in_schema=False)
router.include_router(assets.router)
router.include_router(signing.router)
router.include_router(preview.router)
router.include_router(accounts.router)

__all__ = ["router"]
