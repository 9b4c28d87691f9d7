"""Webhook benchmark: deliveries per second to a local receiver, and the latency a
webhook adds (the step's commit → the receiver has the request), p50/p99.

Run from the repository root: `.venv/bin/python -m benchmarks webhooks` (BENCH_N
scales the sample sizes).  The portal's real application runs in this process (its
jobs thread, the delivery handler, SQLite in WAL mode; then PostgreSQL from Debian's
package), with one subscription to ``*`` pointing at a threaded HTTP receiver on
loopback.  Envelopes are made through the envelope service (create and send: two
events each; signer and storage are not needed for those steps).

Two loads per database: "trickle" (one envelope at a time, 50 ms apart: the added
latency an integrator sees, dominated by the jobs thread's polling interval, given in
the row) and "burst" (envelopes from 4 threads as fast as they go: steps made per
second by the load, deliveries per second from the first step to the last delivery,
and the latency under that backlog).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from signet.portal.app import create_app
from signet.portal.config import PortalSettings
from signet.portal.envelopes.contracts import EnvelopeCreate
from signet.portal.envelopes.service import StoredDocument
from signet.portal.evidence.models import LedgerEvent
from signet.portal.http.deps import Portal
from sqlalchemy import select

from tests.conftest import free_port
from tests.support.postgres import start_postgres

N = int(os.environ.get("BENCH_N", "24"))
DOC = StoredDocument("contract.pdf", "cd" * 32, 1234, 1)
STORY = EnvelopeCreate.model_validate(
    {"title": "Bench", "recipients": [{"name": "A", "email": "a@bench.example"}]}
)


class Arrivals:
    def __init__(self) -> None:
        self.at: dict[str, float] = {}
        self.lock = threading.Lock()

    def serve(self, port: int) -> ThreadingHTTPServer:
        arrivals = self

        class Handle(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["content-length"]))
                with arrivals.lock:
                    arrivals.at.setdefault(self.headers["webhook-id"], time.time())
                self.send_response(204)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", port), Handle)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server


@contextmanager
def _portal(home: Path, database_url: str | None) -> Iterator[tuple[Portal, TestClient, str]]:
    dead = free_port()
    settings = PortalSettings(
        home=home, secret_key="b" * 40, service_caller_token="t" * 40,
        signer_url=f"http://127.0.0.1:{dead}", storage_url=f"http://127.0.0.1:{dead}",
        policy_dir=home / "policies", port=free_port(), database_url=database_url,
        webhook_allow_loopback=True, completion_check_seconds=3600,
        deadline_check_seconds=3600, log_level="ERROR",
    )  # fmt: skip
    app = create_app(settings)
    portal: Portal = app.state.portal
    first = portal.accounts.ensure_first_admin("Bench", "admin@bench.example", "Admin")
    assert first is not None
    with TestClient(app) as client:
        yield portal, client, first.api_key.secret


def _run(portal: Portal, arrivals: Arrivals, org: str, user: str, envelopes: int,
         threads: int, pause: float) -> dict[str, Any]:  # fmt: skip
    made: list[str] = []
    lock = threading.Lock()

    def one() -> None:
        envelope_id = portal.envelopes.create(org, user, STORY, [DOC])
        portal.envelopes.send(org, envelope_id, user)
        with lock:
            made.append(envelope_id)

    start = time.time()
    if threads == 1:
        for _ in range(envelopes):
            one()
            time.sleep(pause)
    else:
        per = envelopes // threads
        workers = [threading.Thread(target=lambda: [one() for _ in range(per)])
                   for _ in range(threads)]  # fmt: skip
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    made_in = time.time() - start
    with portal.envelopes.sessions() as session:
        events: list[tuple[str, datetime]] = [
            (row.id, row.created_at)
            for row in session.scalars(
                select(LedgerEvent).where(LedgerEvent.envelope_id.in_(made))
            )
        ]  # fmt: skip
    deadline = time.time() + 120
    while any(e not in arrivals.at for e, _ in events) and time.time() < deadline:
        time.sleep(0.02)
    latencies = sorted((arrivals.at[e] - at.timestamp()) * 1000 for e, at in events)
    end = max(arrivals.at[e] for e, _ in events)
    return {
        "deliveries": len(events),
        "steps_per_s": len(events) / made_in,
        "per_s": len(events) / (end - start),
        "p50": statistics.median(latencies),
        "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
    }


def _suite(label: str, database_url: str | None, rows: list[list[str]]) -> None:
    arrivals = Arrivals()
    port = free_port()
    server = arrivals.serve(port)
    with tempfile.TemporaryDirectory() as home, _portal(Path(home), database_url) as (
        portal, client, key,
    ):  # fmt: skip
        wanted = {"url": f"http://127.0.0.1:{port}/h", "event_types": ["*"]}
        made = client.post("/api/v1/webhooks", json=wanted,
                           headers={"Authorization": f"Bearer {key}"})  # fmt: skip
        assert made.status_code == 201, made.text
        principal = portal.accounts.authenticate(f"Bearer {key}")
        org, user = principal.organisation_id, principal.user_id
        check = portal.settings.job_check_seconds
        trickle = _run(portal, arrivals, org, user, max(N, 10), 1, 0.05)
        burst = _run(portal, arrivals, org, user, max(N * 8, 40), 4, 0.0)
        for name, result in (("trickle, 1 envelope / 50 ms", trickle),
                             ("burst, 4 threads", burst)):  # fmt: skip
            rows.append([
                f"{label}, {name} (poll {check:g} s, {portal.settings.job_concurrency} at once)",
                str(result["deliveries"]), f"{result['steps_per_s']:.1f}",
                f"{result['per_s']:.1f}",
                f"{result['p50']:.0f}", f"{result['p99']:.0f}",
            ])  # fmt: skip
    server.shutdown()
    server.server_close()


def main() -> None:
    rows: list[list[str]] = []
    _suite("SQLite", None, rows)
    server = start_postgres()
    try:
        _suite("PostgreSQL", server.create_database("bench"), rows)
    finally:
        server.stop()
    print("| load | deliveries | steps made/s | delivered/s | added p50 ms | added p99 ms |")
    print("|---|---:|---:|---:|---:|---:|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
