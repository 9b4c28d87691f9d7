"""kill -9 in the middle of completion: the portal, the signer or storage dies after the
first document reached B-LTA and before the evidence is sealed.  `signet up` starts
the dead service again; the portal's completion sweep finishes the envelope; every
step happened once: one `certificate.issued`, one `document.completed` per document,
one `envelope.completed`, every event in storage's ledger exactly once, and the
evidence package verifies offline.

The story is `signet demo`'s (the same client code), through HTTP only; the moment
to kill is found by reading the portal's own database (SQLite), as an operator
watching it would.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import psutil
import pytest
import sqlalchemy as sa
from signet.cli.demo import PARTIES, Demo, DemoFailed

from tests.support.appliance import SIGNET, Appliance, running_appliance

_MODULES = {"portal": "signet.portal.app", "signer": "signet.signer.app",
            "storage": "signet.storage.app"}  # fmt: skip


@pytest.fixture(scope="module")
def appliance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Appliance]:
    with running_appliance(
        tmp_path_factory.mktemp("home"),
        SIGNET_PORTAL_COMPLETION_CHECK_SECONDS="1",
        SIGNET_PORTAL_COMPLETION_GRACE_SECONDS="2",
    ) as running:
        yield running


def _events(appliance: Appliance, envelope_id: str) -> list[str]:
    engine = sa.create_engine(f"sqlite:///{appliance.home / 'portal' / 'portal.db'}",
                              poolclass=sa.NullPool)  # fmt: skip
    try:
        with engine.connect() as connection:
            return list(
                connection.execute(
                    sa.text("SELECT event_type FROM ledger_events WHERE envelope_id = :e "
                            "ORDER BY sequence"), {"e": envelope_id},
                ).scalars()
            )  # fmt: skip
    except sa.exc.OperationalError:
        return []  # the database is busy for a moment: look again
    finally:
        engine.dispose()


def _kill(appliance: Appliance, service: str) -> None:
    for child in psutil.Process(appliance.process.pid).children():
        if any(_MODULES[service] in part for part in child.cmdline()):
            os.killpg(os.getpgid(child.pid), signal.SIGKILL)
            return
    raise AssertionError(f"no {service} process:\n{appliance.output()}")


@pytest.mark.parametrize("service", ["portal", "signer", "storage"])
def test_a_service_killed_during_completion_leaves_it_done_once(
    appliance: Appliance, service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIGNET_HOME", str(appliance.home))  # where the demo reads codes
    # the demo's settings point this process at the appliance's SoftHSM folder: put the
    # session's back afterwards, or later tests' children miss their token
    if "SOFTHSM2_CONF" in os.environ:
        monkeypatch.setenv("SOFTHSM2_CONF", os.environ["SOFTHSM2_CONF"])
    else:
        monkeypatch.delenv("SOFTHSM2_CONF", raising=False)
    demo = Demo(appliance.portal_url, appliance.admin_key())
    envelope_id = demo.send()
    for index, party in enumerate(PARTIES[:-1]):
        demo.act(envelope_id, index, party)
    last = threading.Thread(
        target=_quietly, args=(demo.act, envelope_id, len(PARTIES) - 1, PARTIES[-1])
    )
    last.start()
    deadline = time.monotonic() + 60
    while "document.completed" not in (seen := _events(appliance, envelope_id)):
        assert time.monotonic() < deadline, seen
        time.sleep(0.01)
    _kill(appliance, service)
    at_kill = _events(appliance, envelope_id)
    assert "envelope.completed" not in at_kill, f"the kill came too late: {at_kill}"
    last.join(timeout=120)
    admin = httpx.Client(base_url=appliance.portal_url, timeout=30,
                         headers={"Authorization": f"Bearer {appliance.admin_key()}"})  # fmt: skip
    deadline = time.monotonic() + 120
    while True:
        try:
            events = admin.get(f"/api/v1/envelopes/{envelope_id}/events").json()
            if (isinstance(events, list) and any(e["type"] == "envelope.completed" for e in events)
                    and all(e["ledger_index"] is not None for e in events)):  # fmt: skip
                break
        except httpx.HTTPError:
            pass  # the portal is starting again
        assert time.monotonic() < deadline, appliance.output()[-3000:]
        time.sleep(0.5)
    types = [e["type"] for e in events]
    assert types.count("envelope.completed") == 1 and types.count("certificate.issued") == 1
    assert types.count("document.completed") == 2, types
    assert types.index("certificate.issued") < types.index("envelope.completed")
    indexes = [e["ledger_index"] for e in events]
    assert len(set(indexes)) == len(indexes) == len(events)
    assert "restarting it in" in appliance.output()
    evidence = admin.get(f"/api/v1/envelopes/{envelope_id}/evidence")
    assert evidence.status_code == 200, evidence.text
    package = appliance.home / f"evidence-{service}.zip"
    package.write_bytes(evidence.content)
    checked = subprocess.run(
        [str(SIGNET), "verify-evidence", str(package), "--root",
         str(appliance.home / "signer" / "ca" / "root.pem")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    envelope = admin.get(f"/api/v1/envelopes/{envelope_id}").json()
    assert envelope["status"] == "completed"
    certificate = admin.get(f"/api/v1/envelopes/{envelope_id}/certificate")
    assert certificate.status_code == 200
    admin.close()
    demo.close()


def _quietly(act: Callable[..., None], *args: object) -> None:
    """The last party's request: it may die with the portal (the answer is lost, the
    step is not)."""
    with contextlib.suppress(httpx.HTTPError, DemoFailed):
        act(*args)
