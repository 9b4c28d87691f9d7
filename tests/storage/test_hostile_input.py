"""Hostile input to the storage API (issue 24): empty objects, odd headers, bad retention.

Each refusal is checked to have stored nothing (the vault's object count is unchanged).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from signet.storage.api.transfers import CONTENT_TYPE_MAX

from tests.storage.test_api import storage  # noqa: F401  (the fixture)
from tests.support.pdfs import make_pdf


def _objects(client: TestClient) -> set[str]:
    vault = client.app.state.service.vault  # type: ignore[attr-defined]
    return {path.name for path in vault.root.rglob("*") if path.is_file()}


def test_an_empty_put_is_refused_and_nothing_is_stored(storage: TestClient) -> None:  # noqa: F811
    before = _objects(storage)
    for headers in ({}, {"Content-Length": "0"}, {"Content-Type": "application/pdf"}):
        response = storage.put("/v1/objects", content=b"", headers=headers)
        assert response.status_code == 422, response.text
        assert response.json()["error"] == "empty_object"
    chunked = storage.put("/v1/objects", content=iter([b"", b""]))  # chunked, no byte
    assert chunked.status_code == 422 and chunked.json()["error"] == "empty_object"
    empty_sha = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert storage.get(f"/v1/objects/{empty_sha}").status_code == 404
    assert _objects(storage) == before


@pytest.mark.parametrize(
    "envelope",
    ["", "-starts-with-dash", "a" * 65, "has space", "slash/inside", "ünïcode", "a\tb", "<x>"],
)
def test_an_envelope_id_outside_the_pattern_is_refused(
    envelope: str,
    storage: TestClient,  # noqa: F811
) -> None:
    response = storage.put(
        "/v1/objects",
        content=make_pdf(1),
        headers={"X-Signet-Envelope": envelope.encode("utf-8")},
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "invalid_request"
    assert "X-Signet-Envelope" in response.json()["detail"]


def test_a_good_envelope_id_is_kept(storage: TestClient) -> None:  # noqa: F811
    response = storage.put(
        "/v1/objects", content=b"x", headers={"X-Signet-Envelope": "env-2026.12:A_1"}
    )
    assert response.status_code == 201, response.text
    assert response.json()["envelope_id"] == "env-2026.12:A_1"


@pytest.mark.parametrize(
    "content_type",
    ["application/" + "x" * CONTENT_TYPE_MAX, "pdf", "text/html\r\nX: y", "/", "a/b c"],
    ids=["too-long", "no-subtype", "crlf", "bare-slash", "space"],
)
def test_an_odd_content_type_is_refused(
    content_type: str,
    storage: TestClient,  # noqa: F811
) -> None:
    before = _objects(storage)
    response = storage.put(
        "/v1/objects", content=b"some bytes", headers={"Content-Type": content_type}
    )
    assert response.status_code == 422, response.text
    assert "Content-Type" in response.json()["detail"]
    assert _objects(storage) == before


def test_content_type_parameters_are_dropped(storage: TestClient) -> None:  # noqa: F811
    response = storage.put(
        "/v1/objects", content=b"abc", headers={"Content-Type": "text/plain; charset=utf-8"}
    )
    assert response.status_code == 201 and response.json()["content_type"] == "text/plain"


def test_retention_refusals(storage: TestClient) -> None:  # noqa: F811
    sha = storage.put("/v1/objects", content=b"retained").json()["sha256"]
    until = datetime.fromisoformat(
        storage.get(f"/v1/objects/{sha}").headers["x-signet-retain-until"]
    )
    cases = {
        "naive": (until + timedelta(days=1)).replace(tzinfo=None).isoformat(),
        "over-100-years": (datetime.now(UTC) + timedelta(days=365 * 101)).isoformat(),
        "garbage": "next tuesday",
    }
    for name, value in cases.items():
        response = storage.post(f"/v1/objects/{sha}/retention", json={"retain_until": value})
        assert response.status_code == 422, (name, response.text)
    shorter = storage.post(
        f"/v1/objects/{sha}/retention",
        json={"retain_until": (until - timedelta(days=1)).isoformat()},
    )
    assert shorter.status_code == 409 and shorter.json()["error"] == "retention_violation"
    assert storage.get(f"/v1/objects/{sha}").headers["x-signet-retain-until"] == until.isoformat()
