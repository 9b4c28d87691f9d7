"""Fixtures of the pages' tests: one running appliance (`signet up`: signer, storage and
portal as separate processes) for the package, envelopes made through the REST API as a
sender would, the codes read where their holders find them on the embedded default (the
portal's outbox for identity codes, the signer's for intent codes), and Debian's
Chromium driven by Playwright for the browser tests."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.support.appliance import Appliance, running_appliance
from tests.support.pdfs import make_pdf

CONTRACT = make_pdf(2, title="Contract")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
PHONE = {"width": 375, "height": 812}
DESKTOP = {"width": 1280, "height": 900}


def artifacts_dir() -> Path:
    """Where the browser tests leave their screenshots (git-ignored)."""
    root = Path(os.environ.get("SIGNET_ARTIFACTS", Path(__file__).parents[2] / "artifacts"))
    target = root / "pages"
    target.mkdir(parents=True, exist_ok=True)
    return target


@dataclass
class Sender:
    """The sender's side, over the REST API with the first admin's key."""

    appliance: Appliance
    client: httpx.Client

    def envelope(
        self,
        *,
        title: str = "Supply contract 2027 / 供货合同",
        signer: str = "Ana García",
        email: str = "ana@other.example",
        locale: str = "es",
        file_name: str = "contract.pdf",
        fields: bool = True,
        first: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A sent envelope with one external signer (after `first`, when given)."""
        recipients: list[dict[str, Any]] = [
            {"name": signer, "email": email, "locale": locale, "group": 1 if first else 0}
        ]
        if first:
            recipients.insert(0, first | {"group": 0})
        index = len(recipients) - 1
        story: dict[str, Any] = {
            "title": title,
            "message": "Please review and sign.\nThank you!",
            "recipients": recipients,
            "fields": [
                {"document": 0, "recipient": index, "kind": "signature", "page": 2,
                 "x": 300, "y": 80, "width": 160, "height": 50},
                {"document": 0, "recipient": index, "kind": "date", "page": 2,
                 "x": 300, "y": 60, "width": 100, "height": 14},
                {"document": 0, "recipient": index, "kind": "text", "page": 2,
                 "x": 50, "y": 60, "width": 200, "height": 14, "label": "Address"},
            ] if fields else [],
        }  # fmt: skip
        created = self.client.post(
            "/api/v1/envelopes",
            data={"envelope": json.dumps(story)},
            files=[("documents", (file_name, CONTRACT, "application/pdf"))],
        )
        assert created.status_code == 201, created.text
        envelope: dict[str, Any] = created.json()
        sent = self.client.post(f"/api/v1/envelopes/{envelope['id']}/send")
        assert sent.status_code == 200, sent.text
        return envelope

    def outbox(self, envelope_id: str) -> list[dict[str, str]]:
        response = self.client.get("/api/v1/outbox", params={"envelope_id": envelope_id})
        assert response.status_code == 200, response.text
        messages: list[dict[str, str]] = response.json()
        return messages

    def link(self, envelope_id: str, to: str) -> str:
        """The path of the link in the message to `to` (``/s/<token>``)."""
        for message in self.outbox(envelope_id):
            if message["to"] == to and (found := re.search(r"/s/[A-Za-z0-9_-]+", message["body"])):
                return found.group(0)
        raise AssertionError(f"no link to {to} in the outbox")

    def identity_code(self, envelope_id: str, to: str) -> str:
        for message in self.outbox(envelope_id):  # newest first
            if message["to"] == to and message["notice"] == "identity_code":
                found = re.search(r"\b(\d{6})\b", message["body"])
                assert found
                return found.group(1)
        raise AssertionError(f"no identity code to {to} in the outbox")

    def intent_code(self, activation_id: str) -> str:
        """The signer's activation code, from the signer's own outbox (``signet outbox``
        reads the same table): the portal never sees it."""
        url = self.appliance.extra_env.get(
            "SIGNET_SIGNER_DATABASE_URL",
            f"sqlite:///{self.appliance.home / 'signer' / 'signer.db'}",
        )
        engine = sa.create_engine(url, poolclass=sa.NullPool)
        deadline = time.monotonic() + 20
        try:
            while True:
                with engine.begin() as connection:
                    body = connection.execute(
                        sa.text("SELECT body FROM signer_outbox WHERE activation_id = :a"),
                        {"a": activation_id},
                    ).scalar()
                if body and (found := re.search(r"\b([0-9]{6})\b", body)):
                    return found.group(1)
                assert time.monotonic() < deadline, f"no code for activation {activation_id}"
                time.sleep(0.2)
        finally:
            engine.dispose()


@pytest.fixture(scope="package")
def appliance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Appliance]:
    with running_appliance(tmp_path_factory.mktemp("pages-home")) as running:
        yield running


@pytest.fixture(scope="package")
def sender(appliance: Appliance) -> Iterator[Sender]:
    with appliance.portal(appliance.admin_key()) as client:
        yield Sender(appliance, client)


@pytest.fixture(scope="package")
def chromium() -> Iterator[Any]:
    """Debian's Chromium, headless (Playwright's own browser download is not used).
    Playwright gives each launch a fresh temporary profile itself, and refuses a
    ``--user-data-dir`` argument to ``launch``."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: scripts/bootstrap.sh installs Debian's chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True,
        )  # fmt: skip
        try:
            yield browser
        finally:
            browser.close()
