"""The other pages a link can show, in Chromium on a phone and on a desktop, each with a
screenshot: an approver's documents and their approval, a decline with its reason, an
envelope the sender withdrew, and a link that is no link."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.portal.pages.conftest import DESKTOP, PHONE, Sender, artifacts_dir

pytestmark = [pytest.mark.browser, pytest.mark.slow]

DEVICES = {"phone": PHONE, "desktop": DESKTOP}


@pytest.fixture(params=sorted(DEVICES))
def device(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def page(chromium: Any, device: str) -> Iterator[Any]:
    context = chromium.new_context(
        viewport=DEVICES[device], locale="en-GB", is_mobile=device == "phone",
        has_touch=device == "phone", extra_http_headers={"Accept-Language": "en-GB,en"},
    )  # fmt: skip
    opened = context.new_page()
    opened.set_default_timeout(30_000)
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    opened.on("dialog", lambda dialog: errors.append(f"dialog {dialog.message}"))
    try:
        yield opened
    finally:
        context.close()
    assert errors == []


def _shot(page: Any, name: str, device: str) -> None:
    page.screenshot(path=str(artifacts_dir() / f"state-{device}-{name}.png"), full_page=True)


def _through_identity(page: Any, sender: Sender, envelope_id: str, email: str) -> str:
    link = sender.link(envelope_id, email)
    page.goto(sender.appliance.portal_url + link)
    page.locator("form[action$='/code'] button").click()
    page.wait_for_selector("form[action$='/verify'] #code")
    page.fill("#code", sender.identity_code(envelope_id, email))
    page.locator("form[action$='/verify'] button").click()
    page.wait_for_selector(".viewer[data-rendered]")
    return link


def test_an_approver_approves_and_the_next_party_gets_their_link(
    page: Any, sender: Sender, device: str
) -> None:
    approver = f"approver.{device}@acme.example"
    envelope = sender.envelope(
        email=f"after.approval.{device}@other.example",
        first={"name": "Wang Fang", "email": approver, "role": "approver"},
    )
    _through_identity(page, sender, envelope["id"], approver)
    assert page.locator("form[action$='/fields']").count() == 0  # an approver signs nothing
    _shot(page, "approver-documents", device)
    page.locator("form[action$='/approve'] button").click()
    page.wait_for_selector(".status.ok")
    assert "approved" in page.locator(".status").inner_text()
    _shot(page, "approved", device)
    assert sender.link(envelope["id"], f"after.approval.{device}@other.example")


def test_a_signer_declines_with_a_reason_and_the_link_then_says_so(
    page: Any, sender: Sender, device: str
) -> None:
    email = f"decliner.{device}@other.example"
    envelope = sender.envelope(email=email)
    link = _through_identity(page, sender, envelope["id"], email)
    page.locator(f"a[href='{link}/decline']").click()
    page.wait_for_selector("textarea#reason")
    # the browser itself asks for a reason before anything is sent
    page.locator("form[action$='/decline'] button[type=submit]").click()
    assert page.url.endswith("/decline")
    page.fill("#reason", "The price in clause 2 is wrong.")
    _shot(page, "decline", device)
    page.locator("form[action$='/decline'] button[type=submit]").click()
    page.wait_for_selector(".status.stop")
    _shot(page, "declined", device)
    final = sender.client.get(f"/api/v1/envelopes/{envelope['id']}").json()
    assert final["status"] == "declined"
    assert final["recipients"][0]["decline_reason"] == "The price in clause 2 is wrong."


def test_a_withdrawn_envelope_and_a_made_up_link(page: Any, sender: Sender, device: str) -> None:
    email = f"withdrawn.{device}@other.example"
    envelope = sender.envelope(email=email)
    link = sender.link(envelope["id"], email)
    sender.client.post(f"/api/v1/envelopes/{envelope['id']}/void").raise_for_status()
    page.goto(sender.appliance.portal_url + link)
    assert "withdrawn" in page.locator(".status.stop").inner_text()
    assert page.locator("form").count() == 0
    _shot(page, "withdrawn", device)
    response = page.goto(sender.appliance.portal_url + "/s/" + "N" * 43)
    assert response is not None and response.status == 404
    assert "not valid" in page.locator(".alert").inner_text()
    _shot(page, "invalid-link", device)
