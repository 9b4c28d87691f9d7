"""The pages' languages: Babel catalogues for English, Spanish and Simplified Chinese,
and the choice of one for a request.

The catalogues are the ``.po`` files beside this module (``locale/<lang>/LC_MESSAGES``),
compiled in memory when the process starts: there is no ``.mo`` to go stale, and
``tests/portal/pages/test_catalogues.py`` checks every template string is translated.
"""

from __future__ import annotations

import io
from datetime import datetime
from functools import cache
from pathlib import Path

from babel import Locale, UnknownLocaleError, negotiate_locale
from babel.dates import format_datetime
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

LOCALE_DIR = Path(__file__).parent / "locale"
#: Babel's names; the first is the fallback
LANGUAGES = ("en", "es", "zh_CN")
DEFAULT = "en"
#: the names a page offers in its language switch, each in its own language
NATIVE = {"en": "English", "es": "Español", "zh_CN": "简体中文"}
#: the cookie that keeps a `?lang=` choice for the next pages
LANG_COOKIE = "signet_lang"


@cache
def translations(language: str) -> Translations:
    """The catalogue of `language` (one of `LANGUAGES`), compiled once per process."""
    if language not in LANGUAGES:
        raise ValueError(f"no catalogue for {language!r}")
    path = LOCALE_DIR / language / "LC_MESSAGES" / "messages.po"
    with path.open("rb") as source:
        catalog = read_po(source, locale=language)
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return Translations(compiled, domain="messages")


def normalise(tag: str | None) -> str | None:
    """A language tag a person or browser wrote (``zh-CN``, ``es_ES``, ``zh``) as one of
    `LANGUAGES`, or None when it is none of them."""
    if not tag:
        return None
    try:
        locale = Locale.parse(tag.strip().replace("-", "_"))
    except (ValueError, UnknownLocaleError):
        return None
    if locale.language == "zh":
        # Simplified Chinese is the only Chinese catalogue; Traditional scripts fall back
        return "zh_CN" if locale.script in (None, "Hans") and locale.territory != "TW" else None
    return locale.language if locale.language in LANGUAGES else None


def from_accept_language(header: str | None) -> str | None:
    """The best of `LANGUAGES` for an ``Accept-Language`` header (q-values honoured)."""
    if not header:
        return None
    weighted: list[tuple[float, int, str]] = []
    for position, part in enumerate(header.split(",")[:20]):
        tag, _, parameters = part.strip().partition(";")
        quality = 1.0
        if parameters.strip().startswith("q="):
            try:
                quality = float(parameters.strip()[2:])
            except ValueError:
                continue
        if tag and quality > 0:
            weighted.append((-quality, position, tag))
    preferred = [tag.replace("-", "_") for _, _, tag in sorted(weighted)]
    found = negotiate_locale(preferred, list(LANGUAGES), sep="_")
    if found is not None:
        return found
    for tag in preferred:
        if (language := normalise(tag)) is not None:
            return language
    return None


def choose(query: str | None, cookie: str | None, accept_language: str | None) -> str:
    """``?lang=`` first, then the cookie a previous ``?lang=`` set, then the browser."""
    return normalise(query) or normalise(cookie) or from_accept_language(accept_language) or DEFAULT


def html_lang(language: str) -> str:
    """The BCP 47 tag for ``<html lang>`` (``zh-CN``, not Babel's ``zh_CN``)."""
    return language.replace("_", "-")


def when(moment: datetime | None, language: str) -> str:
    """A date and time in the reader's locale (medium length)."""
    if moment is None:
        return ""
    return format_datetime(moment, format="medium", locale=language)
