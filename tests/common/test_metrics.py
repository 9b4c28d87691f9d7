"""`/metrics` and the request middleware that `service_app` gives every service.

A small app built with the real `service_app` (no HSM needed): requests are
counted by route template, never by raw path; unknown paths and methods fold
into one label; a crash counts as a 500 and a caller hanging up as 499; the
launcher's multiprocess directory is fresh and removed afterwards.  `Scrape`
parses the exposition format with prometheus-client's own parser and is shared
with the signer's tests.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from signet.common import metrics
from signet.common.http import service_app
from starlette.requests import ClientDisconnect


@dataclass(frozen=True)
class Scrape:
    """One `/metrics` answer, parsed."""

    text: str

    def value(self, name: str, **labels: str) -> float:
        """Sum of the samples called `name` whose labels include `labels` (0 if none)."""
        return sum(
            sample.value
            for family in text_string_to_metric_families(self.text)
            for sample in family.samples
            if sample.name == name and labels.items() <= sample.labels.items()
        )


def settled(read: Callable[[], Scrape], done: Callable[[Scrape], bool]) -> Scrape:
    """Scrape until `done` (a request is recorded just after its last byte is sent)."""
    deadline = time.monotonic() + 5
    scrape = read()
    while not done(scrape) and time.monotonic() < deadline:
        time.sleep(0.02)
        scrape = read()
    return scrape


@asynccontextmanager
async def _nothing(_: FastAPI) -> AsyncIterator[None]:
    yield


@pytest.fixture
def client() -> TestClient:
    app = service_app("Signet test", _nothing)

    @app.get("/v1/items/{item_id}")
    async def read_item(item_id: str) -> dict[str, str]:
        return {"id": item_id}

    @app.get("/v1/crash")
    async def crash() -> None:
        raise RuntimeError("a bug")

    @app.post("/v1/upload")
    async def upload() -> None:
        raise ClientDisconnect  # what reading the body raises when the caller hangs up

    return TestClient(app, raise_server_exceptions=False)


def _scrape(client: TestClient) -> Scrape:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return Scrape(response.text)


def test_requests_are_labelled_by_route_template_never_by_path(client: TestClient) -> None:
    before = _scrape(client)
    for item in ("serial-4f2a9c", "serial-77e1b0", "serial-4f2a9c"):
        assert client.get(f"/v1/items/{item}").status_code == 200
    assert client.get("/v1/no-such-thing/9d1e").status_code == 404
    assert client.request("BREW", "/v1/items/x").status_code == 405
    assert client.get("/v1/crash").status_code == 500
    assert client.post("/v1/upload").status_code == 500
    after = _scrape(client)

    def delta(name: str, **labels: str) -> float:
        return after.value(name, service="test", **labels) - before.value(
            name, service="test", **labels
        )

    route = "/v1/items/{item_id}"
    requests = "signet_http_requests_total"
    assert delta(requests, method="GET", route=route, status="200") == 3
    assert delta("signet_http_request_duration_seconds_count", method="GET", route=route) == 3
    assert delta(requests, method="GET", route=metrics.UNMATCHED, status="404") == 1
    assert delta(requests, method="OTHER", route=route, status="405") == 1
    assert delta(requests, method="GET", route="/v1/crash", status="500") == 1
    assert delta(requests, method="POST", route="/v1/upload", status="499") == 1
    assert delta(requests, method="POST", route="/v1/upload", status="500") == 0
    for raw in ("serial-4f2a9c", "serial-77e1b0", "no-such-thing", "9d1e", "BREW"):
        assert raw not in after.text


def test_metrics_and_health_need_no_token(client: TestClient) -> None:
    assert client.get("/healthz").status_code == 200
    scrape = _scrape(client)
    assert scrape.value("signet_http_requests_total", route="/healthz", status="200") >= 1


def test_launcher_gets_a_fresh_directory_only_for_several_workers(tmp_path: Path) -> None:
    with metrics.multiprocess_environment("signer", 1) as single:
        assert single == {}
    with metrics.multiprocess_environment("signer", 2) as first:
        directory = Path(first[metrics.MULTIPROC_ENV])
        assert directory.is_dir() and not any(directory.iterdir())
        (directory / "counter_1.db").write_bytes(b"left by a worker")
        with metrics.multiprocess_environment("signer", 2) as second:
            assert second[metrics.MULTIPROC_ENV] != str(directory)
    assert not directory.exists()


def test_a_shared_gauge_shows_on_metrics(client: TestClient) -> None:
    size = metrics.gauge("signet_test_ledger_size", "Leaves in a test ledger.")
    size.set(1234)
    assert _scrape(client).value("signet_test_ledger_size") == 1234


def test_the_metrics_port_serves_metrics_and_nothing_else(client: TestClient) -> None:
    """The port the cluster's scraper may reach: no API route, no health, no other verb."""
    import httpx

    from tests.conftest import free_port

    assert client.get("/v1/items/counted").status_code == 200
    port = free_port()
    with metrics.serve_metrics("127.0.0.1", port):
        url = f"http://127.0.0.1:{port}"
        answer = httpx.get(f"{url}/metrics", timeout=5)
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/plain")
        scrape = Scrape(answer.text)  # the same registry as the service's own /metrics
        assert scrape.value("signet_http_requests_total", route="/v1/items/{item_id}") >= 1
        for path in ("/v1/items/counted", "/healthz", "/readyz", "/", "/metrics/../v1/items/x"):
            assert httpx.get(f"{url}{path}", timeout=5).status_code == 404, path
        assert httpx.post(f"{url}/metrics", timeout=5).status_code == 501
    with pytest.raises(httpx.ConnectError):  # closed with the block
        httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2)
    with metrics.serve_metrics("127.0.0.1", None) as nothing:
        assert nothing is None


def test_an_idle_connection_to_the_metrics_port_is_closed() -> None:
    """Each connection holds a thread: one that sends nothing is dropped, not kept forever."""
    import socket

    with metrics.serve_metrics("127.0.0.1", 0, idle_timeout=0.3) as server:
        assert server is not None
        port = server.server_address[1]
        assert metrics.METRICS_IDLE_TIMEOUT == 10  # the default, which a test cannot wait out
        with socket.create_connection(("127.0.0.1", port), timeout=5) as idle:
            started = time.monotonic()
            assert idle.recv(1) == b""  # closed by the server (a TimeoutError otherwise)
            assert time.monotonic() - started < 3
        # ... and the port goes on answering.
        answer = socket.create_connection(("127.0.0.1", port), timeout=5)
        with answer:
            answer.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
            assert answer.recv(12).startswith(b"HTTP/1.0 200")


def _ipv6_loopback() -> bool:
    import socket

    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback here")
def test_the_metrics_port_listens_in_the_hosts_address_family() -> None:
    """``serve --host ::`` binds the API on IPv6; the metrics port follows, not gaierror."""
    import httpx

    with metrics.serve_metrics("::", 0) as server:
        assert server is not None
        port = server.server_address[1]
        assert httpx.get(f"http://[::1]:{port}/metrics", timeout=5).status_code == 200
    with metrics.serve_metrics("::1", 0) as server:
        assert server is not None
        assert httpx.get(f"http://[::1]:{server.server_address[1]}/metrics").status_code == 200


def test_a_metrics_port_that_cannot_be_served_is_one_clear_error() -> None:
    import socket

    with (
        pytest.raises(metrics.MetricsPortError, match="is the API port"),
        metrics.serve_metrics("127.0.0.1", 8102, api_port=8102),
    ):
        pass
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with (
            pytest.raises(metrics.MetricsPortError) as refused,
            metrics.serve_metrics("127.0.0.1", port),
        ):
            pass
    message = str(refused.value)
    assert f"port {port}" in message and "in use" in message and "\n" not in message
    with (
        pytest.raises(metrics.MetricsPortError, match=r"no-such-host\.invalid"),
        metrics.serve_metrics("no-such-host.invalid", 0),
    ):
        pass


# -- `signet signer serve` and `signet storage serve`: the metrics listener -----------------


@pytest.fixture
def serve_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, object]]]:
    """`serve` in this process with uvicorn replaced: each "run" records its arguments and
    whether the metrics listener was up meanwhile.  The commands set variables for their
    workers (and SOFTHSM2_CONF): the environment is restored afterwards."""
    import threading

    import uvicorn

    saved = dict(os.environ)
    for key in [k for k in os.environ if k.startswith(("SIGNET_", metrics.MULTIPROC_ENV))]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("SIGNET_HOME", str(tmp_path))
    runs: list[dict[str, object]] = []

    def run(*_: object, **options: object) -> None:
        listening = [t for t in threading.enumerate() if t.name == "metrics-port"]
        runs.append({**options, "metrics_listening": bool(listening)})

    monkeypatch.setattr(uvicorn, "run", run)
    yield runs
    os.environ.clear()
    os.environ.update(saved)


def _serve(service: str, *options: str) -> Any:
    from signet.cli.main import app
    from typer.testing import CliRunner

    return CliRunner().invoke(app, [service, "serve", "--port", "18555", *options])


@pytest.mark.parametrize("service", ["signer", "storage"])
def test_serve_refuses_a_metrics_port_it_cannot_serve_in_one_line(
    service: str, serve_cli: list[dict[str, object]]
) -> None:
    import socket

    same = _serve(service, "--metrics-port", "18555")
    assert same.exit_code == 2 and not serve_cli
    assert same.stderr.strip().count("\n") == 0 and "is the API port" in same.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = _serve(service, "--metrics-port", str(taken.getsockname()[1]))
    assert busy.exit_code == 2 and not serve_cli
    assert busy.stderr.strip().count("\n") == 0 and "in use" in busy.stderr
    assert "Traceback" not in busy.output + busy.stderr


@pytest.mark.parametrize("service", ["signer", "storage"])
def test_serve_takes_metrics_port_0_and_an_ipv6_host(
    service: str, serve_cli: list[dict[str, object]]
) -> None:
    zero = _serve(service, "--metrics-port", "0")  # any free port, not "none"
    assert zero.exit_code == 0, zero.stderr
    assert serve_cli[-1]["metrics_listening"] is True
    assert "/metrics on port" in zero.stderr
    assert _serve(service).exit_code == 0
    assert serve_cli[-1]["metrics_listening"] is False  # no option, no setting: none
    if _ipv6_loopback():
        six = _serve(service, "--host", "::", "--metrics-port", "0")
        assert six.exit_code == 0, six.stderr
        assert serve_cli[-1]["host"] == "::" and serve_cli[-1]["metrics_listening"] is True
