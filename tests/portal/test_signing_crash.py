"""kill -9 in the middle of a signing step: the portal or the signer dies after the
signer signed the first of a recipient's two documents and before the portal recorded
the step.  `signet up` starts it again; the step happened not at all (nothing recorded,
the documents as the recipient saw them); the recipient asks for a new code and signs;
the envelope completes with each document signed once per signer in the final PDFs,
every event in the ledger exactly once, and the evidence verifies offline.

The moment to kill is found by reading the signer's own database (SQLite): the
activation whose first digest is signed, as an operator watching it would.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import sqlalchemy as sa
from signet.cli.demo import PARTIES, Demo

from tests.portal.test_completion_crash import _events, _kill, _quietly
from tests.support.appliance import SIGNET, Appliance, running_appliance

ANA = 2  # her fields are on both documents: one activation, two signatures


@pytest.fixture(scope="module")
def appliance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Appliance]:
    with running_appliance(tmp_path_factory.mktemp("home")) as running:
        yield running


def _signed_digests(appliance: Appliance) -> list[list[str]]:
    engine = sa.create_engine(f"sqlite:///{appliance.home / 'signer' / 'signer.db'}",
                              poolclass=sa.NullPool)  # fmt: skip
    try:
        with engine.connect() as connection:
            rows = connection.execute(sa.text("SELECT signed_sha256 FROM activations")).scalars()
            return [json.loads(row) for row in rows]
    except sa.exc.OperationalError:
        return []  # busy for a moment: look again
    finally:
        engine.dispose()


def _admin(appliance: Appliance) -> httpx.Client:
    return httpx.Client(base_url=appliance.portal_url, timeout=30,
                        headers={"Authorization": f"Bearer {appliance.admin_key()}"})  # fmt: skip


def _wait_ready(admin: httpx.Client, envelope_id: str) -> None:
    deadline = time.monotonic() + 120
    while True:
        try:
            # the portal answers and reaches the signer and storage again
            if (admin.get(f"/api/v1/envelopes/{envelope_id}").status_code == 200
                    and admin.get("/readyz").status_code == 200):  # fmt: skip
                return
        except httpx.HTTPError:
            pass  # starting again
        assert time.monotonic() < deadline
        time.sleep(0.5)


@pytest.mark.parametrize("service", ["portal", "signer"])
def test_a_service_killed_during_a_signing_step_leaves_it_undone_then_done_once(
    appliance: Appliance, service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIGNET_HOME", str(appliance.home))  # where the demo reads codes
    if "SOFTHSM2_CONF" in os.environ:  # the demo's settings would re-point it
        monkeypatch.setenv("SOFTHSM2_CONF", os.environ["SOFTHSM2_CONF"])
    else:
        monkeypatch.delenv("SOFTHSM2_CONF", raising=False)
    demo = Demo(appliance.portal_url, appliance.admin_key())
    admin = _admin(appliance)
    envelope_id = demo.send()
    demo.act(envelope_id, 0, PARTIES[0])  # the approver
    before = admin.get(f"/api/v1/envelopes/{envelope_id}").json()
    hashes = [d["current_sha256"] for d in before["documents"]]
    known = len(_signed_digests(appliance))
    step = threading.Thread(target=_quietly, args=(demo.act, envelope_id, ANA, PARTIES[ANA]))
    step.start()
    deadline = time.monotonic() + 90
    while not any(len(d) == 1 for d in _signed_digests(appliance)[known:]):
        assert time.monotonic() < deadline, "the signer never signed the first document"
        assert step.is_alive() or any(len(d) for d in _signed_digests(appliance)[known:])
        time.sleep(0.005)
    _kill(appliance, service)
    step.join(timeout=120)
    _wait_ready(admin, envelope_id)
    # not at all: nothing recorded, the documents as Ana saw them
    types = _events(appliance, envelope_id)
    assert "document.signed" not in types and "recipient.signed" not in types, types
    now = admin.get(f"/api/v1/envelopes/{envelope_id}").json()
    assert [d["current_sha256"] for d in now["documents"]] == hashes

    # Ana asks for a new code and signs; Li signs; the envelope completes
    demo.act(envelope_id, ANA, PARTIES[ANA])
    demo.act(envelope_id, 1, PARTIES[1])
    written = demo.download(envelope_id, appliance.home / f"crash-{service}")
    deadline = time.monotonic() + 60
    while True:
        events = admin.get(f"/api/v1/envelopes/{envelope_id}/events").json()
        if all(e["ledger_index"] is not None for e in events) or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    types = [e["type"] for e in events]
    assert types.count("recipient.signed") == 2, types
    assert types.count("document.signed") == 3, types  # Ana: two documents, Li: one
    indexes = [e["ledger_index"] for e in events]
    assert None not in indexes and len(set(indexes)) == len(indexes), indexes
    assert "restarting it in" in appliance.output()

    from pyhanko.pdf_utils.reader import PdfFileReader

    signers = {"final-1": 2, "final-2": 1}  # signatures before the document timestamp
    for path in written:
        if path.name.startswith("final-"):
            reader = PdfFileReader(io.BytesIO(path.read_bytes()))
            kinds = [s.sig_object.get("/Type") for s in reader.embedded_signatures]
            assert len(kinds) == signers[path.name[:7]] + 1, (path.name, kinds)
    evidence = next(p for p in written if p.suffix == ".zip")
    checked = subprocess.run(
        [str(SIGNET), "verify-evidence", str(evidence), "--root",
         str(appliance.home / "signer" / "ca" / "root.pem")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    admin.close()
    demo.close()
