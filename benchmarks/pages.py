"""Pages benchmark: how fast the portal answers the pages people load most, under
concurrent users on loopback.

Run from the repository root: `.venv/bin/python -m benchmarks pages` (BENCH_USERS
concurrent users, default 20; BENCH_SECONDS per route, default 8).  It starts `signet up`
in a fresh home, makes one envelope per user through the API and takes each link
through the identity check with the pages' own forms, signs the first admin in (a
password set as an admin's reset would), then for each route lets every user request it
in a loop for the time given and prints requests/s and p50/p95/p99 latency.

The signer's document page (`GET /s/<token>` after the identity check) is the page a
phone loads first; each load also records `link.opened` in the ledger (a write).  The
issue's goal is p95 < 100 ms with 100 users; on this 2-core shared machine run it with
`BENCH_USERS=100` when nothing else is running.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import sqlalchemy as sa
from argon2 import PasswordHasher

from tests.support.appliance import Appliance, running_appliance
from tests.support.pdfs import make_pdf

USERS = int(os.environ.get("BENCH_USERS", "20"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "8"))


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html[:300]
    return found.group(1)


def _verified_link(appliance: Appliance, admin: httpx.Client, number: int) -> httpx.Client:
    """A person's client (cookies) past the identity check of their own envelope."""
    email = f"bench-{number}@pages.example"
    story = {"title": f"Pages benchmark {number}",
             "recipients": [{"name": f"Reader {number}", "email": email}]}  # fmt: skip
    created = admin.post(
        "/api/v1/envelopes", data={"envelope": json.dumps(story)},
        files=[("documents", ("contract.pdf", make_pdf(2), "application/pdf"))],
    )  # fmt: skip
    created.raise_for_status()
    envelope_id = created.json()["id"]
    admin.post(f"/api/v1/envelopes/{envelope_id}/send").raise_for_status()
    outbox = admin.get("/api/v1/outbox", params={"envelope_id": envelope_id}).json()
    found = re.search(r"/s/[A-Za-z0-9_-]+", outbox[0]["body"])
    assert found
    link = found.group(0)
    person = httpx.Client(base_url=appliance.portal_url, timeout=60, follow_redirects=True)
    sent = person.post(f"{link}/code", data={"csrf": _csrf(person.get(link).text)})
    outbox = admin.get("/api/v1/outbox", params={"envelope_id": envelope_id}).json()
    code = next(re.search(r"\b(\d{6})\b", m["body"]) for m in outbox
                if m["notice"] == "identity_code")  # fmt: skip
    assert code
    page = person.post(f"{link}/verify", data={"csrf": _csrf(sent.text), "code": code.group(1)})
    assert 'class="viewer"' in page.text
    person.headers["x-bench-link"] = link
    return person


def _signed_in_admin(appliance: Appliance) -> httpx.Client:
    password = "bench-" + os.urandom(6).hex()
    engine = sa.create_engine(f"sqlite:///{appliance.home / 'portal' / 'portal.db'}",
                              poolclass=sa.NullPool)  # fmt: skip
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE users SET password_hash = :h WHERE role = 'admin'"),
                           {"h": PasswordHasher().hash(password)})  # fmt: skip
    engine.dispose()
    client = httpx.Client(base_url=appliance.portal_url, timeout=60)
    token = _csrf(client.get("/signin").text)
    signed = client.post("/signin", data={"email": "admin@signet.local", "password": password,
                                          "csrf": token})  # fmt: skip
    assert signed.status_code == 303, signed.text
    return client


def _load(clients: list[httpx.Client], path_of: Callable[[httpx.Client], str]) -> list[float]:
    """Every client requests its path in a loop for SECONDS; the latencies in seconds."""
    latencies: list[float] = []
    lock = threading.Lock()
    stop = time.monotonic() + SECONDS

    def user(client: httpx.Client) -> None:
        mine = []
        path = path_of(client)
        while time.monotonic() < stop:
            started = time.perf_counter()
            response = client.get(path)
            mine.append(time.perf_counter() - started)
            assert response.status_code == 200, (path, response.status_code)
        with lock:
            latencies.extend(mine)

    with ThreadPoolExecutor(len(clients)) as pool:
        list(pool.map(user, clients))
    return latencies


def _row(name: str, latencies: list[float]) -> str:
    cuts = statistics.quantiles(latencies, n=100)
    return (f"| {name} | {USERS} | {len(latencies) / SECONDS:.0f} | {cuts[49] * 1000:.1f} | "
            f"{cuts[94] * 1000:.1f} | {cuts[98] * 1000:.1f} |")  # fmt: skip


def main() -> None:
    with (
        tempfile.TemporaryDirectory(prefix="signet-bench-pages-") as home,
        running_appliance(Path(home) / "home") as appliance,
    ):
        key = appliance.admin_key()
        with appliance.portal(key) as admin:
            people = [_verified_link(appliance, admin, n) for n in range(USERS)]
        inbox = _signed_in_admin(appliance)
        sessions = [inbox] + [
            httpx.Client(base_url=appliance.portal_url, timeout=60, cookies=inbox.cookies)
            for _ in range(USERS - 1)
        ]
        rows = [
            _row("signer's document page `GET /s/<token>`",
                 _load(people, lambda c: c.headers["x-bench-link"])),
            _row("signature page `GET /s/<token>/sign`",
                 _load(people, lambda c: c.headers["x-bench-link"] + "/sign")),
            _row("inbox `GET /inbox` (admin, signed in)", _load(sessions, lambda c: "/inbox")),
            _row("static `pdf.min.mjs` (416 KB)",
                 _load(people, lambda c: "/static/vendor/pdfjs/pdf.min.mjs")),
        ]  # fmt: skip
        for client in people + sessions:
            client.close()
    print("| route | users | requests/s | p50 ms | p95 ms | p99 ms |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"({SECONDS:.0f} s per route, loopback, one portal worker; goal p95 < 100 ms)")


if __name__ == "__main__":
    main()
