"""Sign-in and the inbox through the running appliance: a sender signs in with their
password in Chromium (phone and desktop, screenshots), sees their own envelopes and not
the admin's, searches, signs out; the cookie's flags; CSRF on the sign-in and sign-out
forms; five wrong passwords lock the account, the right one then refused too.

Passwords are set in the portal's database here as an admin's reset would (the reset
page is not built yet); everything else goes through HTTP."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher

from tests.portal.pages.conftest import DESKTOP, PHONE, Sender, artifacts_dir

TITLE = "Sender's own contract <b>bold</b>"


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html[:400]
    return found.group(1)


def _person(sender: Sender, email: str, role: str = "sender") -> tuple[str, str]:
    """A user made by the admin's API, with a password set as an admin's reset would."""
    made = sender.client.post("/api/v1/users", json={"email": email, "name": "Zhang Min",
                                                     "role": role})  # fmt: skip
    assert made.status_code == 201, made.text
    password = secrets.token_urlsafe(12)
    database = sender.appliance.home / "portal" / "portal.db"
    engine = sa.create_engine(f"sqlite:///{database}", poolclass=sa.NullPool)
    try:
        with engine.begin() as connection:
            connection.execute(
                sa.text("UPDATE users SET password_hash = :h WHERE id = :i"),
                {"h": PasswordHasher().hash(password), "i": made.json()["id"]},
            )
    finally:
        engine.dispose()
    user_id: str = made.json()["id"]
    return user_id, password


@pytest.fixture(scope="module")
def zhang(sender: Sender) -> Iterator[tuple[str, str]]:
    """A sender with a password and one envelope of their own (made with their key)."""
    email = "zhang.min@acme.example"
    user_id, password = _person(sender, email)
    key = sender.client.post("/api/v1/keys", json={"name": "zhang", "user_id": user_id})
    assert key.status_code == 201, key.text
    with sender.appliance.portal(key.json()["key"]) as own:
        mine = Sender(sender.appliance, own)
        mine.envelope(title=TITLE, email="client.of.zhang@other.example")
    yield email, password


def test_the_inbox_wants_a_session_and_sign_in_sets_a_guarded_cookie(
    sender: Sender, zhang: tuple[str, str]
) -> None:
    email, password = zhang
    with httpx.Client(base_url=sender.appliance.portal_url, timeout=60) as browser:
        away = browser.get("/inbox")
        assert away.status_code == 303 and away.headers["location"] == "/signin"
        form = browser.get("/signin")
        assert form.status_code == 200
        assert form.headers["content-security-policy"].startswith("default-src 'self'")
        # without the form's token: refused, no session
        forged = browser.post("/signin", data={"email": email, "password": password})
        assert forged.status_code == 403 and "signet_session" not in forged.headers.get(
            "set-cookie", ""
        )
        signed = browser.post("/signin", data={"email": email, "password": password,
                                               "csrf": _csrf(form.text)})  # fmt: skip
        assert signed.status_code == 303 and signed.headers["location"] == "/inbox"
        cookie = next(c for c in signed.headers.get_list("set-cookie") if "signet_session" in c)
        assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
        assert "expires=" in cookie.lower()
        # Secure only over HTTPS: this test speaks plain HTTP on loopback
        assert "Secure" not in cookie
        inbox = browser.get("/inbox")
        assert inbox.status_code == 200
        assert "Sender&#39;s own contract &lt;b&gt;bold&lt;/b&gt;" in inbox.text
        assert "Supply contract 2027" not in inbox.text  # the admin's envelopes: not theirs
        found = browser.get("/inbox", params={"q": "no such title"})
        assert "Sender&#39;s own contract" not in found.text
        # sign out needs the session's own form token
        assert browser.post("/signout", data={}).status_code == 403
        assert browser.get("/inbox").status_code == 200
        out = browser.post("/signout", data={"csrf": _csrf(inbox.text)})
        assert out.status_code == 303 and out.headers["location"] == "/signin"
        assert browser.get("/inbox").status_code == 303


def test_five_wrong_passwords_lock_the_account(sender: Sender) -> None:
    email = "locked.out@acme.example"
    _, password = _person(sender, email)
    with httpx.Client(base_url=sender.appliance.portal_url, timeout=60) as browser:
        token = _csrf(browser.get("/signin").text)
        for _ in range(5):
            wrong = browser.post("/signin", data={"email": email, "password": "nope",
                                                  "csrf": token})  # fmt: skip
            assert wrong.status_code == 401 and 'role="alert"' in wrong.text
        right = browser.post("/signin", data={"email": email, "password": password,
                                              "csrf": token})  # fmt: skip
        assert right.status_code == 401  # locked: the right password too, for a while
        unknown = browser.post("/signin", data={"email": "nobody@acme.example",
                                                "password": password, "csrf": token})  # fmt: skip
        assert unknown.status_code == 401 and unknown.text == right.text.replace(
            'value="locked.out@acme.example"', 'value="nobody@acme.example"'
        )
        too_long = browser.post("/signin", data={"email": email, "password": "x" * 5000,
                                                 "csrf": token})  # fmt: skip
        assert too_long.status_code == 400


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.parametrize("device", ["phone", "desktop"])
def test_a_sender_signs_in_and_finds_their_envelope_in_a_browser(
    chromium: Any, sender: Sender, zhang: tuple[str, str], device: str
) -> None:
    email, password = zhang
    context = chromium.new_context(viewport=PHONE if device == "phone" else DESKTOP,
                                   locale="zh-CN",
                                   extra_http_headers={"Accept-Language": "zh-CN,zh"})  # fmt: skip
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        page.goto(sender.appliance.portal_url + "/inbox")
        assert page.url.endswith("/signin")
        page.screenshot(path=str(artifacts_dir() / f"signin-{device}.png"), full_page=True)
        page.fill("#email", email)
        page.fill("#password", password)
        page.press("#password", "Enter")  # the keyboard is enough
        page.wait_for_selector(".envelopes")
        assert page.locator(".envelope h2").first.inner_text() == TITLE
        assert (
            "签署中" in page.locator("main").inner_text()
            or "已发送" in page.locator("main").inner_text()
        )
        page.screenshot(path=str(artifacts_dir() / f"inbox-{device}.png"), full_page=True)
        page.locator("form[action='/signout'] button").click()
        page.wait_for_selector("#email")
    finally:
        context.close()
    assert errors == []
