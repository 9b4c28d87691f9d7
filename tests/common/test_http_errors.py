"""Starlette's own refusals carry the services' error shape ``{"error", "detail"}``.

No such route, a method the route lacks, and a JSON body nested past the parser's
recursion limit were answered ``{"detail": …}`` alone (found by the route ×
hostile-input table, tests/e2e/test_hostile_table.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel
from signet.common.http import service_app


class Body(BaseModel):
    name: str


@asynccontextmanager
async def _nothing(_: FastAPI) -> AsyncIterator[None]:
    yield


def _client() -> TestClient:
    app = service_app("Signet test", _nothing)

    @app.post("/things")
    async def make(body: Body) -> dict[str, str]:
        return {"name": body.name}

    return TestClient(app)


def test_no_such_route_is_a_shaped_404() -> None:
    response = _client().get("/nothing/here")
    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "detail": "Not Found"}


def test_a_method_the_route_lacks_is_a_shaped_405() -> None:
    response = _client().delete("/things")
    assert response.status_code == 405
    assert response.json()["error"] == "method_not_allowed"
    assert response.headers["allow"] == "POST"


def test_json_nested_too_deeply_is_a_shaped_400() -> None:
    response = _client().post(
        "/things", content=b"[" * 20_000 + b"]" * 20_000,
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    assert response.status_code == 400
    assert response.json() == {
        "error": "invalid_request",
        "detail": "the body could not be parsed (malformed, or nested too deeply)",
    }
    assert _client().post("/things", json={"name": "ok"}).json() == {"name": "ok"}
