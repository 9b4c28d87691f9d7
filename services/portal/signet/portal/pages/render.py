"""Rendering a page: the Jinja2 environment of each language (autoescape on, Babel's
gettext installed), the language and CSRF cookies, and the security headers."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from signet.portal.pages import i18n
from signet.portal.pages.security import (
    CSRF_COOKIE,
    PAGE_HEADERS,
    csrf_token,
    new_nonce,
)

TEMPLATES = Path(__file__).parent / "templates"


@cache
def environment(language: str) -> Environment:
    """One environment per language, so that concurrent requests never share gettext."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.install_gettext_translations(i18n.translations(language), newstyle=True)  # type: ignore[attr-defined]
    env.filters["when"] = lambda moment: i18n.when(moment, language)
    return env


@dataclass
class PageContext:
    """What every page of one request shares: its language, the CSRF nonce and the key
    that signs the forms' tokens."""

    request: Request
    language: str
    nonce: str
    csrf_key: bytes
    #: the cookie must be (re)set: it was missing, or a `?lang=` was chosen
    set_nonce: bool = False
    set_language: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, request: Request, csrf_key: bytes) -> PageContext:
        query = request.query_params.get("lang")
        language = i18n.choose(
            query, request.cookies.get(i18n.LANG_COOKIE), request.headers.get("accept-language")
        )
        nonce = request.cookies.get(CSRF_COOKIE)
        fresh = nonce is None or not (16 <= len(nonce) <= 64)
        return cls(
            request, language, new_nonce() if fresh else str(nonce), csrf_key,
            set_nonce=fresh, set_language=i18n.normalise(query) is not None,
        )  # fmt: skip

    def csrf(self, purpose: str) -> str:
        return csrf_token(self.csrf_key, self.nonce, purpose)

    def page(self, template: str, status_code: int = 200, **values: Any) -> HTMLResponse:
        env = environment(self.language)
        body = env.get_template(template).render(
            lang=self.language, html_lang=i18n.html_lang(self.language),
            languages=i18n.NATIVE, path=self.request.url.path, **values,
        )  # fmt: skip
        response = HTMLResponse(body, status_code=status_code, headers=PAGE_HEADERS)
        self._cookies(response)
        return response

    def redirect(self, url: str) -> RedirectResponse:
        """Post/redirect/get: a reload never repeats an action."""
        response = RedirectResponse(url, status_code=303, headers=PAGE_HEADERS)
        self._cookies(response)
        return response

    def _cookies(self, response: HTMLResponse | RedirectResponse) -> None:
        secure = self.request.url.scheme == "https"
        if self.set_nonce:
            response.set_cookie(
                CSRF_COOKIE, self.nonce, httponly=True, samesite="strict", secure=secure,
                path="/",
            )  # fmt: skip
        if self.set_language:
            response.set_cookie(
                i18n.LANG_COOKIE, self.language, max_age=365 * 86400, httponly=True,
                samesite="lax", secure=secure, path="/",
            )  # fmt: skip
