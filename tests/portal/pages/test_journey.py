"""The external signer's journey in a real browser: Debian's Chromium (Playwright)
against signer, storage and portal running as processes.  The envelope is made through
the REST API; the signer opens the link from the outbox on a 375×812 phone, types the
identity code from the portal's outbox, reads the documents (pdf.js), fills the fields,
draws the signature on the pad with mouse events, types the intent code from the
signer's outbox, and is done; the final PDF verifies with ``pdfsig``.  The same in
Spanish, in Simplified Chinese, and in English on a desktop screen, with a screenshot of
every page under the artifacts folder.
"""

from __future__ import annotations

import io
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.portal.pages.conftest import DESKTOP, PHONE, Sender, artifacts_dir

pytestmark = [pytest.mark.browser, pytest.mark.slow]

#: (language asked by the browser, viewport name, what the done page says)
JOURNEYS = [
    ("es-ES", "phone", "Hecho"),
    ("zh-CN", "phone", "已完成"),
    ("en-GB", "desktop", "Done"),
]


class Watched:
    """A page and everything the browser said about it: console errors, script errors,
    CSP violations (Chromium reports them on the console)."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.problems: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.problems.append(f"pageerror: {error}"))
        page.on("dialog", lambda dialog: self.problems.append(f"dialog: {dialog.message}"))

    def forget(self, expected: str) -> None:
        """An answer the test provoked (Chromium logs a 4xx page as a failed load)."""
        self.problems = [p for p in self.problems if expected not in p]

    def _console(self, message: Any) -> None:
        if message.type == "error" or "Content Security Policy" in message.text:
            where = message.location.get("url", "") if message.location else ""
            self.problems.append(f"console {message.type}: {message.text} ({where})")


@pytest.fixture
def browser_page(chromium: Any, request: pytest.FixtureRequest) -> Iterator[Watched]:
    language, device, _ = request.param
    context = chromium.new_context(
        viewport=PHONE if device == "phone" else DESKTOP,
        locale=language,
        extra_http_headers={"Accept-Language": f"{language},{language[:2]};q=0.9"},
        device_scale_factor=2 if device == "phone" else 1,
        is_mobile=device == "phone",
        has_touch=device == "phone",
        accept_downloads=True,
    )
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        yield Watched(page)
    finally:
        context.close()


def _shot(page: Any, name: str) -> None:
    page.screenshot(path=str(artifacts_dir() / f"{name}.png"), full_page=True)


def _draw(page: Any, selector: str) -> None:
    """A signature drawn with mouse events: a few strokes across the pad."""
    box = page.locator(selector).bounding_box()
    assert box and box["width"] > 200, box
    left, top, width, height = box["x"], box["y"], box["width"], box["height"]
    strokes = [
        [(0.10, 0.60), (0.18, 0.30), (0.25, 0.70), (0.32, 0.35), (0.40, 0.65)],
        [(0.45, 0.55), (0.55, 0.40), (0.62, 0.62), (0.72, 0.38), (0.85, 0.58)],
    ]
    for stroke in strokes:
        x, y = stroke[0]
        page.mouse.move(left + x * width, top + y * height)
        page.mouse.down()
        for x, y in stroke[1:]:
            page.mouse.move(left + x * width, top + y * height, steps=6)
        page.mouse.up()


@pytest.mark.parametrize("browser_page", JOURNEYS, indirect=True, ids=lambda j: f"{j[0]}-{j[1]}")
def test_an_external_signer_signs_from_the_link(
    browser_page: Watched, sender: Sender, request: pytest.FixtureRequest, tmp_path: Any
) -> None:
    language, device, done_text = request.node.callspec.params["browser_page"]
    prefix = f"{language}-{device}"
    page = browser_page.page
    email = f"signer.{language.lower()}.{device}@other.example"
    envelope = sender.envelope(signer="Ana García", email=email, locale="es")
    link = sender.link(envelope["id"], email)
    base = sender.appliance.portal_url

    opened = page.goto(base + link)
    assert opened is not None and opened.status == 200
    assert opened.headers["content-security-policy"].startswith("default-src 'self'")
    assert page.locator("html").get_attribute("lang") == language[:2] + (
        "-CN" if language.startswith("zh") else ""
    )
    _shot(page, f"{prefix}-1-identity")
    page.locator("form[action$='/code'] button").click()
    page.wait_for_selector("#code")
    assert "***" in page.locator("main").inner_text()  # where the code went, masked
    page.fill("#code", sender.identity_code(envelope["id"], email))
    _shot(page, f"{prefix}-2-identity-code")
    page.press("#code", "Enter")  # the keyboard is enough

    # the documents, rendered by pdf.js: two pages of the contract
    page.wait_for_selector(".viewer[data-rendered]")
    assert page.locator(".viewer").get_attribute("data-rendered") == "2"
    assert page.locator("canvas.pdf-page").count() == 2
    assert "Supply contract 2027 / 供货合同" in page.locator("h1").inner_text()
    page.locator("input[type=date]").fill("2027-01-15")
    page.locator("input[type=text]").fill("Calle Mayor 1, Madrid")
    # the labels reach a screen reader: every input has one
    for field in page.locator("form[action$='/fields'] input:not([type=hidden])").all():
        assert page.locator(f"label[for='{field.get_attribute('id')}']").count() == 1
    _shot(page, f"{prefix}-3-documents")
    page.locator("form[action$='/fields'] button[type=submit]").click()

    page.wait_for_selector("#pad-form[data-ready]")  # the pad's module has run
    # an empty pad is refused in the page, before any request
    page.locator("#pad-form button[type=submit]").click()
    assert page.locator("#pad-error").is_visible()
    _draw(page, "canvas#pad")
    _shot(page, f"{prefix}-4-signature")
    page.locator("#pad-form button[type=submit]").click()

    page.wait_for_selector("form[action$='/sign'] #code")
    activation_id = page.locator("input[name=activation_id]").input_value()
    preview = page.locator("figure.preview img")
    assert preview.evaluate("img => img.naturalWidth") > 100  # the PNG that was drawn
    code = sender.intent_code(activation_id)
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    page.fill("#code", wrong)
    page.locator("form[action$='/sign'] button[type=submit]").click()
    page.wait_for_selector(".alert[role=alert]")  # the signer refused (403); try again
    browser_page.forget("status of 403")
    page.fill("#code", code)
    _shot(page, f"{prefix}-5-intent-code")
    page.locator("form[action$='/sign'] button[type=submit]").click()

    page.wait_for_selector(".status.ok", timeout=120_000)
    assert done_text in page.locator(".status").inner_text()
    _shot(page, f"{prefix}-6-done")
    with page.expect_download() as download_info:
        page.locator(".downloads a").first.click()
    final = artifacts_dir() / f"{prefix}-final.pdf"
    download_info.value.save_as(final)
    # the signed page as an image beside the screenshots: the handwriting and the fields
    subprocess.run(["pdftoppm", "-f", "2", "-l", "2", "-r", "60", "-png", "-singlefile",
                    str(final), str(artifacts_dir() / f"{prefix}-7-final-page-2")],
                   check=True, timeout=60)  # fmt: skip
    # in a thread of its own: pyHanko runs its own event loop, Playwright's is running here
    with ThreadPoolExecutor(1) as pool:
        pool.submit(_verify_final, final.read_bytes()).result()
    assert page.locator(".downloads a[href$='/certificate']").count() == 1

    status = sender.client.get(f"/api/v1/envelopes/{envelope['id']}").json()
    assert status["status"] == "completed"
    assert [f["value"] for f in status["fields"] if f["kind"] == "text"] == [
        "Calle Mayor 1, Madrid"
    ]
    assert browser_page.problems == [], browser_page.problems
    with httpx.Client(base_url=base) as client:
        certificate = client.get(f"/api/v1/links{link.removeprefix('/s')}/certificate")
    assert certificate.status_code == 200
    path = tmp_path / "certificate.pdf"
    path.write_bytes(certificate.content)
    checked = subprocess.run(["pdfsig", "-nocert", str(path)], capture_output=True, text=True,
                             timeout=120, check=False)  # fmt: skip
    assert "Signature is Valid." in checked.stdout, checked.stdout


def _verify_final(pdf: bytes) -> None:
    """pyHanko: the signer's signature is intact and valid, and the document timestamp of
    completion (B-LTA) closes the file.  (Debian's pdfsig 22.12 counts each extra widget
    of the signature field as an unsigned field and cannot read a document timestamp, so
    it checks the certificate of completion here, as in tests/portal/test_api_story.py.)
    Trust in the appliance's root is not asked here: intact and valid is the point."""
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import validate_pdf_signature, validate_pdf_timestamp

    signatures = PdfFileReader(io.BytesIO(pdf)).embedded_signatures
    assert [s.sig_object.get("/Type") for s in signatures] == ["/Sig", "/DocTimeStamp"]
    status = validate_pdf_signature(signatures[0])
    assert status.intact and status.valid, status.pretty_print_details()
    stamp = validate_pdf_timestamp(signatures[1])
    assert stamp.intact and stamp.valid, stamp.pretty_print_details()
    # the timestamp covers its revision; only validation data (DSS) may follow it
    assert stamp.coverage is not None and stamp.coverage.name in {"ENTIRE_FILE", "ENTIRE_REVISION"}


@pytest.mark.parametrize("browser_page", [("en-GB", "phone", "Done")], indirect=True,
                         ids=["keyboard"])  # fmt: skip
def test_a_signer_who_cannot_draw_signs_with_the_keyboard_alone(
    browser_page: Watched, sender: Sender
) -> None:
    """No pointer at all: every step by Tab, typing and Enter; the signature is the typed
    name, rendered by the portal in the appliance's font (Latin and CJK)."""
    page = browser_page.page
    email = "keyboard.only@other.example"
    envelope = sender.envelope(signer="李伟 Li Wei", email=email, locale="en")
    page.goto(sender.appliance.portal_url + sender.link(envelope["id"], email))
    page.locator("form[action$='/code'] button").focus()
    page.keyboard.press("Enter")
    page.wait_for_selector("form[action$='/verify'] #code")
    page.keyboard.type(sender.identity_code(envelope["id"], email))  # the code has focus
    page.keyboard.press("Enter")
    page.wait_for_selector(".viewer[data-rendered]")
    page.locator("input[type=date]").focus()
    page.keyboard.type("01152027")  # month, day, year: headless Chromium's en-US field
    page.locator("input[type=text]").focus()  # (Tab would stop at the date's calendar button)
    page.keyboard.type("Calle Mayor 1")
    page.keyboard.press("Enter")
    summary = page.locator("details.already summary")
    summary.wait_for()
    summary.focus()
    page.keyboard.press("Enter")  # opens the typed signature
    page.locator("#typed").focus()
    page.keyboard.type("李伟 Li Wei")
    _shot(page, "keyboard-phone-4-typed")
    page.keyboard.press("Enter")
    page.wait_for_selector("form[action$='/sign'] #code")
    assert page.locator("figure.preview img").evaluate("i => i.naturalWidth") > 200
    code = sender.intent_code(page.locator("input[name=activation_id]").input_value())
    page.keyboard.type(code)  # the code field has focus (autofocus)
    page.keyboard.press("Enter")
    page.wait_for_selector(".status.ok", timeout=120_000)
    assert sender.client.get(f"/api/v1/envelopes/{envelope['id']}").json()["status"] == (
        "completed"
    )
    assert browser_page.problems == [], browser_page.problems
