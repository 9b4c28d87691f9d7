"""The byte routes served as plain ASGI (`signet.storage.api.transfers`): the same contract
as FastAPI's routes (token, headers, errors), write-once under racing uploads, and a
streamed GET that stops reading the store when its client hangs up."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from minio import Minio
from pydantic import SecretStr
from signet.storage.api.transfers import _stream
from signet.storage.app import create_app
from signet.storage.config import StorageSettings
from signet.storage.s3_requests import close_loop_sessions
from signet.storage.s3_vault import S3Vault
from starlette.types import Message

from tests.conftest import SERVICE_TOKEN
from tests.storage.conftest import new_bucket
from tests.support.seaweed import S3Server


def _settings(tmp_path: Path, s3: S3Server | None) -> StorageSettings:
    settings = StorageSettings(
        home=tmp_path / "storage",
        service_token=SecretStr(SERVICE_TOKEN),
        tree_head_interval=0,
        retention_years=5,
    )
    if s3 is None:
        return settings
    return settings.model_copy(
        update={
            "vault": "s3",
            "s3_endpoint": s3.endpoint,
            "s3_access_key": SecretStr(s3.access_key),
            "s3_secret_key": SecretStr(s3.secret_key),
            "s3_bucket": new_bucket(),
        }
    )


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(_settings(tmp_path, None))) as client:
        client.headers["Authorization"] = f"Bearer {SERVICE_TOKEN}"
        yield client


def test_byte_routes_refuse_what_the_fastapi_routes_refused(client: TestClient) -> None:
    data = os.urandom(10_000)
    sha = hashlib.sha256(data).hexdigest()
    stranger = httpx.Client(transport=client._transport, base_url="http://t")
    for method, path in (
        ("PUT", "/v1/objects"),
        ("GET", f"/v1/objects/{sha}"),
        ("HEAD", f"/v1/objects/{sha}"),
    ):
        for auth in ("", "Bearer wrong", f"Basic {SERVICE_TOKEN}"):
            refused = stranger.request(
                method,
                path,
                content=data if method == "PUT" else None,
                headers={"Authorization": auth},
            )
            assert refused.status_code == 401
            if method != "HEAD":
                assert refused.json()["error"] == "unauthorized"
    assert client.head(f"/v1/objects/{sha}").status_code == 404  # nothing was stored
    kind = client.put("/v1/objects", content=data, headers={"X-Signet-Kind": "secret"})
    assert kind.status_code == 422 and kind.json()["error"] == "invalid_request"
    long = client.put("/v1/objects", content=data, headers={"X-Signet-Envelope": "e" * 65})
    assert long.status_code == 422
    for method, path in (("DELETE", f"/v1/objects/{sha}"), ("POST", "/v1/objects")):
        answer = client.request(method, path)
        assert answer.status_code == 405 and answer.json()["error"] == "method_not_allowed"
        assert "DELETE" not in answer.headers["allow"]
    too_big = client.put("/v1/objects", content=data, headers={"Content-Length": str(2**62)})
    assert too_big.status_code == 413
    assert client.get("/v1/objects/ABC").status_code == 400
    stored = client.put(
        "/v1/objects",
        content=data,
        headers={"Content-Type": "application/pdf; charset=x", "X-Signet-Envelope": "env-3"},
    )
    assert stored.status_code == 201 and stored.headers["location"] == f"/v1/objects/{sha}"
    got = client.get(f"/v1/objects/{sha}")
    assert got.content == data and got.headers["content-type"] == "application/pdf"
    assert got.headers["etag"] == f'"{sha}"' and got.headers["x-signet-envelope"] == "env-3"
    # the FastAPI routes beside them still answer, behind the same token
    assert client.post(f"/v1/objects/{sha}/legal-hold", json={"on": True}).json()["legal_hold"]


def test_the_openapi_document_describes_the_byte_routes_as_they_answer(
    client: TestClient,
) -> None:
    """FastAPI cannot see the plain-ASGI routes; integrators read them in /openapi.json."""
    document = client.get("/openapi.json").json()
    put = document["paths"]["/v1/objects"]["put"]
    read = document["paths"]["/v1/objects/{sha256}"]
    assert {"get", "head"} <= read.keys()
    assert "delete" not in read and "delete" not in document["paths"]["/v1/objects"]
    assert put["responses"]["201"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ObjectInfo"
    }
    assert "ObjectInfo" in document["components"]["schemas"]
    kinds = next(p for p in put["parameters"] if p["name"] == "X-Signet-Kind")
    assert set(kinds["schema"]["enum"]) == {
        "original",
        "revision",
        "final",
        "report",
        "ledger",
        "evidence",
        "certificate",
        "attachment",
    }
    data = os.urandom(2_000)
    sha = hashlib.sha256(data).hexdigest()
    answers = {
        ("put", client.put("/v1/objects", content=data).status_code),
        ("put", client.put("/v1/objects", content=data).status_code),
        (
            "put",
            client.put("/v1/objects", content=data, headers={"X-Signet-Kind": "x"}).status_code,
        ),
        (
            "put",
            client.put("/v1/objects", content=b"x", headers={"X-Signet-Sha256": sha}).status_code,
        ),
        ("put", client.put("/v1/objects", headers={"Authorization": ""}).status_code),
        ("get", client.get(f"/v1/objects/{sha}").status_code),
        ("get", client.get("/v1/objects/" + "0" * 64).status_code),
        ("get", client.get("/v1/objects/nothex").status_code),
        ("head", client.head(f"/v1/objects/{sha}").status_code),
    }
    assert {status for _, status in answers} == {200, 201, 400, 401, 404, 422}
    for method, status in answers:
        operation = put if method == "put" else read[method]
        assert str(status) in operation["responses"], (method, status)


async def test_racing_identical_uploads_through_the_api_leave_one_version(
    s3_server: S3Server, tmp_path: Path
) -> None:
    """Eight PUTs of the same new bytes at once, on the event loop path: one 201, seven
    200 with the first upload's metadata, one version in the store."""
    app = create_app(_settings(tmp_path, s3_server))
    data = os.urandom(200_000)
    transport = httpx.ASGITransport(app=app)
    auth = {"Authorization": f"Bearer {SERVICE_TOKEN}"}
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t", headers=auth) as c:
            answers = await asyncio.gather(
                *(
                    c.put("/v1/objects", content=data, headers={"X-Signet-Envelope": f"e{n}"})
                    for n in range(8)
                )
            )
    finally:
        await close_loop_sessions()
    assert sorted(a.status_code for a in answers) == [200] * 7 + [201]
    first = next(a.json() for a in answers if a.status_code == 201)
    assert all(a.json() == first for a in answers)
    vault = app.state.service.vault
    assert isinstance(vault, S3Vault)
    raw = Minio(
        s3_server.endpoint,
        access_key=s3_server.access_key,
        secret_key=s3_server.secret_key,
        secure=False,
    )
    key = f"objects/{first['sha256']}"
    assert len(list(raw.list_objects(vault.bucket, key, include_version=True))) == 1


async def test_a_streamed_get_stops_reading_the_store_when_the_client_hangs_up() -> None:
    sent: list[Message] = []
    read = 0
    closed = asyncio.Event()
    hung_up = asyncio.Event()

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal read
        try:
            while True:
                read += 1
                if read == 3:
                    hung_up.set()
                await asyncio.sleep(0)
                yield b"x" * 1024
        finally:
            closed.set()

    async def receive() -> Message:
        await hung_up.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    await asyncio.wait_for(_stream(send, receive, [], chunks()), timeout=5)
    assert closed.is_set() and read < 10
    assert sent[0]["type"] == "http.response.start"
    assert all(m.get("more_body") for m in sent[1:])  # never claimed to have finished
