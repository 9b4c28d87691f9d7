"""The storage service's /metrics: vault writes, ledger appends and size, HTTP by route."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from signet.storage.app import create_app
from signet.storage.config import StorageSettings

from tests.common.test_metrics import Scrape
from tests.conftest import SERVICE_TOKEN, free_port


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[TestClient]:
    settings = StorageSettings(
        home=tmp_path / "storage",
        service_token=SecretStr(SERVICE_TOKEN),
        tree_head_interval=0,
        policy_dir=tmp_path / "policies",
    )
    with TestClient(create_app(settings)) as client:
        client.headers["Authorization"] = f"Bearer {SERVICE_TOKEN}"
        yield client


def _scrape(client: TestClient) -> Scrape:
    response = client.get("/metrics", headers={"Authorization": ""})
    assert response.status_code == 200
    return Scrape(response.text)


def test_storage_counts_writes_and_ledger_events(storage: TestClient) -> None:
    before = _scrape(storage)
    document = os.urandom(4096)
    for _ in range(2):  # the second PUT finds the same bytes retained already
        stored = storage.put(
            "/v1/objects",
            content=document,
            headers={"Content-Type": "application/pdf", "X-Signet-Kind": "final"},
        )
        assert stored.status_code in (200, 201)
    sha = stored.json()["sha256"]
    assert storage.get(f"/v1/objects/{sha}").content == document
    for index in range(3):
        event = {"event_type": "envelope.created", "envelope_id": f"m-{index}", "actor": "a"}
        assert storage.post("/v1/ledger/events", json=event).status_code == 201
    after = _scrape(storage)

    def delta(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    assert delta("signet_vault_writes_total", kind="final", outcome="created") == 1
    assert delta("signet_vault_writes_total", kind="final", outcome="existing") == 1
    assert delta("signet_vault_written_bytes_total") == len(document)
    assert delta("signet_ledger_appends_total") == 3
    assert after.value("signet_ledger_size") == 3  # this service's fresh ledger
    assert delta("signet_http_requests_total", route="/v1/objects/{sha256}", status="200") == 1
    assert sha not in after.text  # hashes are never labels


def test_storage_serve_answers_prometheus_on_its_own_port(tmp_path: Path) -> None:
    """`signet storage serve --metrics-port` (the operator's pod command): that port serves
    /metrics and nothing else, and the API port keeps its own /metrics."""
    api, scrape_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIGNET_", "PROMETHEUS_"))}
    env |= {"SIGNET_HOME": str(tmp_path), "SIGNET_STORAGE_TREE_HEAD_INTERVAL": "0"}
    command = [sys.executable, "-m", "signet.cli", "storage", "serve", "--port", str(api)]
    process = subprocess.Popen(
        [*command, "--metrics-port", str(scrape_port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base, metrics_url = f"http://127.0.0.1:{api}", f"http://127.0.0.1:{scrape_port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, "storage serve exited"
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "storage serve did not start"
            time.sleep(0.2)
        scraped = httpx.get(f"{metrics_url}/metrics", timeout=5)
        assert scraped.status_code == 200
        assert Scrape(scraped.text).value("signet_ledger_size") == 0
        assert "signet_http_requests_total" in scraped.text
        for path in ("/v1/ledger/tree-head", "/v1/objects", "/readyz", "/healthz", "/docs"):
            assert httpx.get(f"{metrics_url}{path}", timeout=5).status_code == 404, path
        assert httpx.get(f"{base}/metrics", timeout=5).status_code == 200
        assert httpx.get(f"{base}/v1/ledger/tree-head", timeout=5).status_code == 401
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
