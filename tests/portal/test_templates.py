"""Templates in the portal's real application (SQLite): roles filled with people make an
envelope with the template's fields on the right recipients, and the hostile side of
the routes that need no document upload (the upload itself, which needs storage, runs
in `test_webhooks_story.py` against the running appliance).

Templates here are saved through the template service with a document reference, as
the envelope service tests do: nothing below reads the document's bytes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from signet.common.errors import Conflict
from signet.portal.accounts.models import Role
from signet.portal.accounts.service import PortalScope, Principal
from signet.portal.envelopes.service import StoredDocument
from signet.portal.templates.contracts import TemplateCreate

from tests.portal.test_webhooks import World, _other_organisation, _settings, running

CONTRACT = StoredDocument("contract.pdf", "ab" * 32, 2048, 2)
ANNEX = StoredDocument("annex.pdf", "cd" * 32, 1024, 1)
SPEC: dict[str, Any] = {
    "name": "Supply contract",
    "title": "Supply contract 2027",
    "message": "Please sign.",
    "roles": [
        {"key": "legal", "role": "approver", "label": "Legal review"},
        {"key": "buyer", "group": 1},
        {"key": "seller", "group": 1},
    ],
    "fields": [
        {"document": 0, "role": "buyer", "kind": "signature", "page": 2, "x": 50, "y": 80,
         "width": 160, "height": 50},
        {"document": 0, "role": "seller", "kind": "signature", "page": 2, "x": 300, "y": 80,
         "width": 160, "height": 50},
        {"document": 1, "role": "seller", "kind": "date", "page": 1, "x": 300, "y": 60,
         "width": 100, "height": 14},
    ],
}  # fmt: skip
PARTIES = {
    "legal": {"name": "Wang Fang", "email": "wang.fang@acme.example"},
    "buyer": {"name": "Li Wei", "mobile": "+8613800000001", "locale": "zh-CN"},
    "seller": {"name": "Ana García", "email": "ana@other.example", "locale": "es"},
}


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with running(_settings(tmp_path)) as started:
        yield started


def _admin(world: World) -> Principal:
    return Principal(world.organisation_id, world.admin_id, Role.ADMIN, "bootstrap",
                     frozenset({PortalScope.ADMIN}))  # fmt: skip


def _template(world: World, spec: dict[str, Any] = SPEC) -> str:
    made = world.portal.templates.create(
        _admin(world), TemplateCreate.model_validate(spec), [CONTRACT, ANNEX]
    )
    return made.id


def test_an_envelope_from_a_template_puts_each_field_on_its_roles_person(world: World) -> None:
    template_id = _template(world)
    shown = world.client.get(f"/api/v1/templates/{template_id}", headers=world.headers())
    assert shown.status_code == 200, shown.text
    assert [r["key"] for r in shown.json()["roles"]] == ["legal", "buyer", "seller"]
    assert [d["sha256"] for d in shown.json()["documents"]] == [CONTRACT.sha256, ANNEX.sha256]
    made = world.client.post(
        f"/api/v1/templates/{template_id}/envelopes",
        json={"parties": PARTIES, "title": "Supply contract 2027 / 供货合同"},
        headers=world.headers() | {"Idempotency-Key": "from-template-1"},
    )
    assert made.status_code == 201, made.text
    envelope = made.json()
    assert envelope["status"] == "draft" and envelope["title"] == "Supply contract 2027 / 供货合同"
    people = [(r["name"], r["role"], r["group"]) for r in envelope["recipients"]]
    assert people == [("Wang Fang", "approver", 0), ("Li Wei", "signer", 1),
                      ("Ana García", "signer", 1)]  # fmt: skip
    by_id = {r["id"]: r["name"] for r in envelope["recipients"]}
    placed = sorted((by_id[f["recipient_id"]], f["kind"], f["page"]) for f in envelope["fields"])
    assert placed == [("Ana García", "date", 1), ("Ana García", "signature", 2),
                      ("Li Wei", "signature", 2)]  # fmt: skip
    assert [d["current_sha256"] for d in envelope["documents"]] == [CONTRACT.sha256,
                                                                     ANNEX.sha256]  # fmt: skip
    again = world.client.post(
        f"/api/v1/templates/{template_id}/envelopes", json={"parties": PARTIES},
        headers=world.headers() | {"Idempotency-Key": "from-template-1"},
    )  # fmt: skip
    assert again.status_code == 201 and again.json()["id"] == envelope["id"]
    sent = world.client.post(f"/api/v1/envelopes/{envelope['id']}/send", headers=world.headers())
    assert sent.status_code == 200, sent.text
    listed = world.client.get("/api/v1/templates", headers=world.headers()).json()
    assert [t["id"] for t in listed] == [template_id]


def test_every_role_filled_and_no_other(world: World) -> None:
    template_id = _template(world)
    url = f"/api/v1/templates/{template_id}/envelopes"
    missing = world.client.post(url, json={"parties": {"legal": PARTIES["legal"]}},
                                headers=world.headers())  # fmt: skip
    assert missing.status_code == 400 and "missing roles: buyer, seller" in missing.json()["detail"]
    extra = world.client.post(url, json={"parties": PARTIES | {"cfo": PARTIES["legal"]}},
                              headers=world.headers())  # fmt: skip
    assert extra.status_code == 400 and "cfo" in extra.json()["detail"]
    unreachable = world.client.post(
        url, json={"parties": PARTIES | {"buyer": {"name": "Nobody"}}}, headers=world.headers()
    )
    assert unreachable.status_code == 400 and "e-mail" in unreachable.json()["detail"]
    naive = world.client.post(url, json={"parties": PARTIES, "deadline": "2027-01-31T18:00:00"},
                              headers=world.headers())  # fmt: skip
    assert naive.status_code == 400 and "time zone" in naive.json()["detail"]
    assert world.client.get("/api/v1/envelopes", headers=world.headers()).json()["items"] == []


def test_a_template_that_cannot_work_is_refused_when_saved(world: World) -> None:
    with pytest.raises(ValidationError, match="role 'cfo', which does not exist"):
        TemplateCreate.model_validate(SPEC | {"fields": [SPEC["fields"][0] | {"role": "cfo"}]})
    with pytest.raises(ValidationError, match="only signers"):
        TemplateCreate.model_validate(SPEC | {"fields": [SPEC["fields"][0] | {"role": "legal"}]})
    with pytest.raises(ValidationError, match="unique"):
        TemplateCreate.model_validate(SPEC | {"roles": [SPEC["roles"][1], SPEC["roles"][1]]})
    with pytest.raises(Conflict, match="page 5 of a 2-page"):
        _template(world, SPEC | {"fields": [SPEC["fields"][0] | {"page": 5}]})
    with pytest.raises(Conflict, match="document 2"):
        _template(world, SPEC | {"fields": [SPEC["fields"][0] | {"document": 2}]})
    assert world.client.get("/api/v1/templates", headers=world.headers()).json() == []


def test_routes_refuse_no_key_the_wrong_scope_and_another_organisation(world: World) -> None:
    template_id = _template(world)
    accounts = world.portal.accounts
    reader = accounts.create_key(_admin(world), "reader", [PortalScope.ENVELOPES_READ]).secret
    hooks = accounts.create_key(_admin(world), "hooks", [PortalScope.WEBHOOKS_MANAGE]).secret
    globex = _other_organisation(world)
    use = f"/api/v1/templates/{template_id}/envelopes"
    for method, path, body in (
        ("GET", "/api/v1/templates", None),
        ("GET", f"/api/v1/templates/{template_id}", None),
        ("POST", use, {"parties": PARTIES}),
        ("POST", "/api/v1/templates", None),
    ):
        assert world.client.request(method, path, json=body).status_code == 401, path
        wrong = world.client.request(method, path, json=body, headers=world.headers(hooks))
        assert wrong.status_code == 403, path
    assert world.client.post(use, json={"parties": PARTIES},
                             headers=world.headers(reader)).status_code == 403  # fmt: skip
    assert world.client.get(f"/api/v1/templates/{template_id}",
                            headers=world.headers(globex)).status_code == 404  # fmt: skip
    crossed = world.client.post(use, json={"parties": PARTIES}, headers=world.headers(globex))
    assert crossed.status_code == 404 and crossed.json()["error"] == "not_found"
    assert world.client.get("/api/v1/templates", headers=world.headers(globex)).json() == []
    malformed = world.client.post(use, json={"parties": "everyone"}, headers=world.headers())
    assert malformed.status_code == 422
    oversized = world.client.post(
        use, content=b'{"parties": {' + b" " * (70 * 1024) + b"}}",
        headers=world.headers() | {"content-type": "application/json"},
    )  # fmt: skip
    assert oversized.status_code == 413
    not_a_template = world.client.post(
        "/api/v1/templates", data={"template": "{not json"},
        files=[("documents", ("a.pdf", b"%PDF-1.7", "application/pdf"))], headers=world.headers(),
    )  # fmt: skip
    assert not_a_template.status_code == 400 and not_a_template.json()["error"] == "invalid_request"
    assert world.client.get("/api/v1/envelopes", headers=world.headers()).json()["items"] == []
