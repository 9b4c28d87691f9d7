"""The route × hostile-input table of issue 24, generated against a running appliance.

Every operation of the signer's, storage's and the portal's own ``/openapi.json`` is
sent each input of `tests.support.hostile` (no token, a wrong-scope token, 2 GiB
declared, a malformed body, ``../``, control characters and 8 KiB in each path
parameter).  No answer may be a 5xx or a hang, and each must be of its input's class.
The table is written to ``build/artifacts/hostile-input-table.md`` and must equal the
one in docs/admin/hostile-input.md (``SIGNET_UPDATE_DOCS=1`` rewrites the page's copy).
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import SIGNER_DOCUMENT_LIMIT
from tests.support import hostile, hostile_services
from tests.support.appliance import Appliance

pytestmark = pytest.mark.slow  # starts the session's `signet up` (tests/e2e/conftest.py)

ROOT = Path(__file__).resolve().parents[2]
ARTIFACT = ROOT / "build" / "artifacts" / "hostile-input-table.md"
PAGE = ROOT / "docs" / "admin" / "hostile-input.md"
START, END = "<!-- hostile-table:start -->", "<!-- hostile-table:end -->"


def page_table(text: str) -> str:
    """The table between the page's markers."""
    return text.split(START, 1)[1].split(END, 1)[0].strip() + "\n"


def test_every_route_answers_every_hostile_input_in_its_class(appliance: Appliance) -> None:
    home, port = appliance.home, appliance.port
    services = [
        hostile_services.signer(home, port, SIGNER_DOCUMENT_LIMIT),
        hostile_services.storage(home, port + 1),
        hostile_services.portal(home, port + 2),
    ]
    tables = {}
    for service in services:
        document = httpx.get(f"{service.url}/openapi.json", timeout=30).json()
        tables[service.name] = hostile.probe(service, document)
        assert len(tables[service.name]) >= 10, service.name  # the document was real
    table = hostile.markdown(tables)
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    ARTIFACT.write_text(table, encoding="utf-8")

    assert not hostile.failures(tables), "\n".join(hostile.failures(tables))
    # every route is still answering after its hostile inputs, and nothing crashed
    # quietly: the services' log (all three write to signet up's) has no traceback
    for service in services:
        assert httpx.get(f"{service.url}/healthz", timeout=10).status_code == 200
    assert "Traceback" not in appliance.output(), appliance.output()[-4000:]

    text = PAGE.read_text(encoding="utf-8")
    if os.environ.get("SIGNET_UPDATE_DOCS") == "1":
        before, rest = text.split(START, 1)
        text = f"{before}{START}\n{table}{END}{rest.split(END, 1)[1]}"
        PAGE.write_text(text, "utf-8")
    assert page_table(text) == table, (
        f"the page's table is not the one measured: see {ARTIFACT}, "
        "or run again with SIGNET_UPDATE_DOCS=1"
    )


def test_each_service_closes_a_connection_that_sends_no_head(appliance: Appliance) -> None:
    """An idle connection and one dripping header lines, to each service of `signet up`
    at once: each gets 408 after `HEAD_TIMEOUT` (they were held for as long as the
    client liked), and the service answers others meanwhile."""
    from signet.common.protocol import HEAD_TIMEOUT

    sockets = []
    for offset in range(3):
        idle = socket.create_connection(("127.0.0.1", appliance.port + offset), timeout=5)
        drip = socket.create_connection(("127.0.0.1", appliance.port + offset), timeout=5)
        drip.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        sockets += [idle, drip]
    started = time.monotonic()
    answers: dict[int, bytes] = {}
    try:
        while len(answers) < len(sockets) and time.monotonic() - started < HEAD_TIMEOUT + 10:
            for n, sock in enumerate(sockets):
                if n in answers:
                    continue
                if n % 2:
                    with contextlib.suppress(OSError):
                        sock.sendall(b"X-Drip: a\r\n")
                sock.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    answers[n] = sock.recv(4096)
                sock.setblocking(True)
            assert httpx.get(f"{appliance.portal_url}/healthz", timeout=5).status_code == 200
            time.sleep(0.5)
    finally:
        for sock in sockets:
            sock.close()
    took = time.monotonic() - started
    assert sorted(answers) == list(range(len(sockets))), f"held: {len(sockets) - len(answers)}"
    assert all(a.startswith(b"HTTP/1.1 408 ") for a in answers.values()), answers
    assert HEAD_TIMEOUT - 2 < took < HEAD_TIMEOUT + 10
