"""The pages' catalogues and vendored files, without a server: every string of every
template is in the Spanish and Chinese catalogues and translated, placeholders kept;
the language is chosen as documented; the vendored libraries are the pinned ones."""

from __future__ import annotations

import hashlib
import io
import json
import re
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po
from signet.portal.pages import i18n
from signet.portal.pages.render import environment

PAGES = Path(i18n.__file__).parent
ROOT = Path(__file__).parents[3]


def _template_strings() -> set[str]:
    found = extract_from_dir(
        str(PAGES), method_map=[("templates/**.html", "jinja2")],
        options_map={"templates/**.html": {"extensions": "jinja2.ext.i18n",
                                           "trim_blocks": "true", "lstrip_blocks": "true"}},
    )  # fmt: skip
    strings = set()
    for _, _, message, _, _ in found:
        strings.add(message if isinstance(message, str) else message[0])
    return strings


@pytest.mark.parametrize("language", ["es", "zh_CN"])
def test_every_template_string_is_translated_with_its_placeholders(language: str) -> None:
    path = PAGES / "locale" / language / "LC_MESSAGES" / "messages.po"
    catalog = read_po(io.BytesIO(path.read_bytes()), locale=language)
    strings = _template_strings()
    assert len(strings) > 60
    missing, broken = [], []
    for msgid in strings:
        message = catalog.get(msgid)
        if message is None or not message.string or message.fuzzy:
            missing.append(msgid)
            continue
        forms = message.string if isinstance(message.string, tuple) else (message.string,)
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        wanted = set(re.findall(r"%\(\w+\)[ds]", ids[0]))
        if any(set(re.findall(r"%\(\w+\)[ds]", form)) != wanted for form in forms):
            broken.append(msgid)
    assert missing == [], f"untranslated in {language}: {missing}"
    assert broken == [], f"placeholders lost in {language}: {broken}"


def test_pages_render_in_each_language_and_escape_what_they_show() -> None:
    values = {"token": "t" * 43, "title": "<script>alert(1)</script>", "error": None,
              "csrf": "x", "path": "/s/x", "languages": i18n.NATIVE}  # fmt: skip
    for language, word in (("en", "Your signature"), ("es", "Su firma"), ("zh_CN", "您的签名")):
        html = (
            environment(language)
            .get_template("sign.html")
            .render(lang=language, html_lang=i18n.html_lang(language), **values)
        )
        assert word in html
        assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html
        assert f'<html lang="{i18n.html_lang(language)}">' in html


@pytest.mark.parametrize(
    ("query", "cookie", "header", "chosen"),
    [
        (None, None, "zh-CN,zh;q=0.9,en;q=0.8", "zh_CN"),
        (None, None, "es-ES,es;q=0.9", "es"),
        (None, None, "fr-FR, de;q=0.5", "en"),
        (None, None, "en;q=0.2, es;q=0.9", "es"),
        (None, None, "zh", "zh_CN"),
        (None, None, "de, zh-Hans-CN;q=0.5", "zh_CN"),
        ("zh-CN", None, "es", "zh_CN"),
        ("es", "zh_CN", "en", "es"),
        (None, "es", "zh-CN", "es"),
        ("xx-<b>", None, "es", "es"),
        (None, None, None, "en"),
        (None, None, ";;q=abc,,", "en"),
    ],
)
def test_the_language_is_the_query_then_the_cookie_then_the_browser(
    query: str | None, cookie: str | None, header: str | None, chosen: str
) -> None:
    assert i18n.choose(query, cookie, header) == chosen


def test_the_vendored_libraries_are_the_pinned_ones_from_the_lock() -> None:
    """The committed files match package.json's pins and the lock (scripts/build_static.sh
    rebuilds them when the lock changes)."""
    frontend = ROOT / "services" / "portal" / "frontend"
    vendor = PAGES / "static" / "vendor"
    pins = json.loads((frontend / "package.json").read_text())["dependencies"]
    lock = (frontend / "package-lock.json").read_bytes()
    locked = json.loads(lock)["packages"]
    lines = (vendor / "VERSIONS").read_text().splitlines()
    recorded = dict(line.split(" ", 2)[:2] for line in lines)
    for name, version in pins.items():
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"{name} is not pinned exactly"
        assert locked[f"node_modules/{name}"]["version"] == version
        assert recorded[name] == version
    assert recorded["package-lock.json"] == hashlib.sha256(lock).hexdigest()
    for built in ("pdf.min.mjs", "pdf.worker.min.mjs"):  # pdf.js checks the two agree
        assert f'"{pins["pdfjs-dist"]}"' in (vendor / "pdfjs" / built).read_text()
    assert (
        f"Signature Pad v{pins['signature_pad']}"
        in (vendor / "signature_pad" / "signature_pad.min.js").read_text()[:200]
    )
    for licence in ("pdfjs/LICENSE", "signature_pad/LICENSE"):
        assert (vendor / licence).stat().st_size > 500
