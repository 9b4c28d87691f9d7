"""The pages' security through HTTP against the running appliance: the CSP and the other
headers on every page and static file; CSRF refused without the token (nothing done);
hostile input (a made-up or malformed link, an oversized or broken signature, another
link's token); and an XSS payload in the title, the recipient's name and the file name
shown as text, checked in the HTML and in Chromium (no script runs, no dialog opens)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from signet.portal.pages.security import CONTENT_SECURITY_POLICY

from tests.portal.pages.conftest import PHONE, Sender, artifacts_dir

XSS_TITLE = "<script>alert('title')</script><img src=x onerror=alert(1)>"
XSS_NAME = '"><svg onload=alert(2)>Eve'
XSS_FILE = "<img src=x onerror=alert(3)>.pdf"


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)


def _headers_checked(response: httpx.Response, *, page: bool = True) -> None:
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "'unsafe-inline'" not in CONTENT_SECURITY_POLICY
    assert "'unsafe-eval'" not in CONTENT_SECURITY_POLICY
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-frame-options"] == "DENY"
    if page:
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["content-type"].startswith("text/html")
        # nothing inline: no script without src, no style element or attribute
        assert not re.search(r"<script(?![^>]*\bsrc=)", response.text)
        assert "<style" not in response.text and " style=" not in response.text


@pytest.fixture
def browser(appliance: Any) -> Iterator[httpx.Client]:
    """A person's browser without JavaScript: it keeps cookies and follows redirects."""
    with httpx.Client(base_url=appliance.portal_url, follow_redirects=True, timeout=60) as client:
        yield client


def _verified(sender: Sender, browser: httpx.Client, envelope: dict[str, Any], email: str) -> str:
    """Through the identity step as a person would (forms only); the link's path."""
    link = sender.link(envelope["id"], email)
    landing = browser.get(link)
    _headers_checked(landing)
    sent = browser.post(f"{link}/code", data={"csrf": _csrf(landing.text)})
    assert sent.status_code == 200 and "***" in sent.text
    _headers_checked(sent)
    code = sender.identity_code(envelope["id"], email)
    documents = browser.post(f"{link}/verify", data={"csrf": _csrf(sent.text), "code": code})
    assert documents.status_code == 200 and 'class="viewer"' in documents.text
    _headers_checked(documents)
    return link


def test_every_page_and_static_file_has_the_policy_and_headers(
    sender: Sender, browser: httpx.Client
) -> None:
    email = "csp@other.example"
    envelope = sender.envelope(email=email)
    link = _verified(sender, browser, envelope, email)
    for path in (link, f"{link}/sign", f"{link}/decline", "/s/" + "Z" * 43, "/s/bad"):
        response = browser.get(path)
        assert response.status_code in {200, 404}, (path, response.status_code)
        _headers_checked(response)
    for path in ("/static/css/app.css", "/static/js/pad.mjs", "/static/js/viewer.mjs",
                 "/static/vendor/pdfjs/pdf.min.mjs", "/static/vendor/pdfjs/pdf.worker.min.mjs",
                 "/static/vendor/signature_pad/signature_pad.min.js"):  # fmt: skip
        response = browser.get(path)
        assert response.status_code == 200, path
        _headers_checked(response, page=False)
    assert browser.get("/static/js/pad.mjs").headers["content-type"].startswith("text/javascript")
    # nothing outside the served kinds, nothing outside static/
    for path in ("/static/vendor/VERSIONS", "/static/../app.py", "/static/%2e%2e/app.py",
                 "/static/vendor/pdfjs/LICENSE", "/static/nope.css"):  # fmt: skip
        response = browser.get(path)
        # (the client resolves "/static/../app.py" to "/app.py": the gate wants a key there)
        assert response.status_code in {401, 404}, (path, response.status_code)
    # a declined envelope's state page too
    declined = browser.post(f"{link}/decline", data={"csrf": _csrf(browser.get(link).text),
                                                     "reason": "Wrong price"})  # fmt: skip
    assert declined.status_code == 200 and 'class="status stop"' in declined.text
    _headers_checked(declined)


def test_forms_without_the_csrf_token_are_refused_and_change_nothing(
    sender: Sender, browser: httpx.Client, appliance: Any
) -> None:
    email = "csrf@other.example"
    envelope = sender.envelope(email=email)
    link = sender.link(envelope["id"], email)
    token = _csrf(browser.get(link).text)
    before = len(sender.outbox(envelope["id"]))
    other = sender.envelope(email="csrf.other@other.example")
    other_link = sender.link(other["id"], "csrf.other@other.example")
    other_token = _csrf(browser.get(other_link).text)
    stranger = httpx.Client(base_url=appliance.portal_url, timeout=60)  # no cookie
    attempts = [
        (browser, {}),  # no token at all
        (browser, {"csrf": "forged" + token[6:]}),  # a wrong token
        (browser, {"csrf": other_token}),  # another link's token
        (stranger, {"csrf": token}),  # the token without the browser's cookie
    ]
    for client, data in attempts:
        refused = client.post(f"{link}/code", data=data)
        assert refused.status_code == 403, (data, refused.text[:300])
        assert "csrf" not in refused.text.lower() or "<form" not in refused.text
        _headers_checked(refused)
        declined = client.post(f"{link}/decline", data=data | {"reason": "forged"})
        assert declined.status_code == 403
    stranger.close()
    assert len(sender.outbox(envelope["id"])) == before  # no code was sent
    status = sender.client.get(f"/api/v1/envelopes/{envelope['id']}").json()
    assert status["status"] in {"sent", "in_progress"}  # not declined
    # and with the token, the same form works
    assert browser.post(f"{link}/code", data={"csrf": token}).status_code == 200
    assert len(sender.outbox(envelope["id"])) == before + 1


def test_hostile_input_gets_a_clear_answer_and_does_nothing(
    sender: Sender, browser: httpx.Client
) -> None:
    email = "hostile@other.example"
    envelope = sender.envelope(email=email)
    link = sender.link(envelope["id"], email)
    landing = browser.get(link)
    token = _csrf(landing.text)
    # before the identity check, no document, no signature step
    assert browser.get(f"{link}/sign").status_code == 403
    early = browser.post(f"{link}/signature", data={"csrf": token, "image": "x" * 100})
    assert early.status_code in {400, 403}
    link = _verified(sender, browser, envelope, email)
    token = _csrf(browser.get(link).text)
    # a made-up, a malformed and an absurdly long token
    for path in ("/s/" + "A" * 43, "/s/<script>", "/s/" + "A" * 300, "/sign/" + "A" * 43):
        response = browser.get(path)
        assert response.status_code == 404, path
        assert "<script>" not in response.text
    # a signature that is not a PNG, an empty one, a wrong code format
    for image in ("", "data:image/png;base64,AAAA", "data:image/gif;base64,R0lGODlh"):
        refused = browser.post(f"{link}/signature", data={"csrf": token, "image": image})
        assert refused.status_code == 400, refused.text[:300]
        assert 'role="alert"' in refused.text
    # a typed signature that is no name: empty, markup, too long, control characters
    for typed in ("", "   ", "<script>", "x" * 81, "Li\x00Wei"):
        refused = browser.post(f"{link}/signature", data={"csrf": token, "typed": typed})
        assert refused.status_code == 400, (typed, refused.status_code)
        assert 'role="alert"' in refused.text and "<script>" not in refused.text
    wrong = browser.post(f"{link}/sign", data={"csrf": token, "code": "12ab", "image": "x",
                                               "activation_id": "a"})  # fmt: skip
    assert wrong.status_code == 400
    # oversized: the gate refuses before the route reads it
    huge = browser.post(f"{link}/signature", data={"csrf": token, "image": "A" * 400_000})
    assert huge.status_code == 413
    # an unknown field id, a value too long
    long = browser.post(
        f"{link}/fields",
        data={"csrf": token}
        | {f"field-{f['id']}": "x" * 3000 for f in envelope["fields"] if f["kind"] == "text"},
    )
    assert long.status_code in {400, 422}, long.text[:300]
    assert 'role="alert"' in long.text
    # a reason with control characters or none at all
    for reason in ("", "bad\x01reason", "x" * 501):
        refused = browser.post(f"{link}/decline", data={"csrf": token, "reason": reason})
        assert refused.status_code == 400
    status = sender.client.get(f"/api/v1/envelopes/{envelope['id']}").json()
    assert status["status"] in {"sent", "in_progress"}
    assert all(r["status"] != "signed" for r in status["recipients"])


def test_an_xss_payload_in_the_title_name_and_file_name_is_shown_as_text(
    sender: Sender, browser: httpx.Client, chromium: Any
) -> None:
    email = "xss@other.example"
    envelope = sender.envelope(title=XSS_TITLE, signer=XSS_NAME, email=email,
                               file_name=XSS_FILE)  # fmt: skip
    link = _verified(sender, browser, envelope, email)
    html = browser.get(link).text
    for raw in (XSS_TITLE, XSS_NAME, "<img src=x", "<svg onload"):
        assert raw not in html
    assert "&lt;script&gt;alert(&#39;title&#39;)&lt;/script&gt;" in html
    assert "&#34;&gt;&lt;svg onload=alert(2)&gt;Eve" in html
    # in the browser: the text is shown as written, and nothing ran
    context = chromium.new_context(viewport=PHONE)
    for cookie in browser.cookies.jar:
        context.add_cookies([{"name": cookie.name, "value": cookie.value or "",
                              "url": sender.appliance.portal_url}])  # fmt: skip
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(sender.appliance.portal_url + link)
    page.wait_for_selector(".viewer[data-rendered]")
    assert page.locator("h1").inner_text() == XSS_TITLE
    assert XSS_NAME in page.locator(".eyebrow").inner_text()
    assert page.locator("main img, main svg").count() == 0
    assert "onerror" in page.locator(".file-name").inner_text()  # as text, made harmless
    page.screenshot(path=str(artifacts_dir() / "xss-phone-documents.png"), full_page=True)
    context.close()
    assert dialogs == []


def test_the_page_images_for_a_browser_without_javascript(
    sender: Sender, browser: httpx.Client, chromium: Any
) -> None:
    email = "nojs@other.example"
    envelope = sender.envelope(email=email)
    link = sender.link(envelope["id"], email)
    browser.get(link)
    assert browser.get(f"{link}/documents/0/pages/1.png").status_code == 403  # identity first
    link = _verified(sender, browser, envelope, email)
    image = browser.get(f"{link}/documents/0/pages/2.png")
    assert image.status_code == 200 and image.content.startswith(b"\x89PNG\r\n\x1a\n")
    assert image.headers["content-type"] == "image/png"
    assert image.headers["cache-control"] == "no-store"
    for path in ("/documents/0/pages/0.png", "/documents/0/pages/3.png",
                 "/documents/7/pages/1.png"):  # fmt: skip
        assert browser.get(link + path).status_code == 404, path
    # Chromium with JavaScript off: the <noscript> images are the document
    context = chromium.new_context(viewport=PHONE, java_script_enabled=False)
    for cookie in browser.cookies.jar:
        context.add_cookies([{"name": cookie.name, "value": cookie.value or "",
                              "url": sender.appliance.portal_url}])  # fmt: skip
    page = context.new_page()
    page.goto(sender.appliance.portal_url + link)
    images = page.locator(".viewer img.pdf-page")
    assert images.count() == 2
    images.nth(1).scroll_into_view_if_needed()
    page.wait_for_function(
        "() => [...document.querySelectorAll('.viewer img')].every(i => i.naturalWidth > 300)"
    )
    page.screenshot(path=str(artifacts_dir() / "nojs-phone-documents.png"), full_page=True)
    context.close()
