"""Ledger events through the API: every hostile event is refused before it takes an index.

Issue 24: one event whose leaf could not be encoded (a lone surrogate) took an
index and then failed with a 500; every later receipt pointed one leaf off and the
restarted service never became ready.  Here each kind of bad event is sent to a
real storage app (filesystem vault), interleaved with good ones, and the ledger
must stay consistent: consecutive indexes, every receipt's proof verifying, the
same tree after a restart.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr
from signet.common.contracts.storage import LedgerEventIn
from signet.storage.app import create_app
from signet.storage.config import StorageSettings
from signet.storage.fs_vault import FilesystemVault
from signet.storage.ledger import InvalidEvent, Ledger
from signet.storage.merkle import leaf_hash, verify_inclusion

from tests.conftest import SERVICE_TOKEN


def _app(home: Path) -> TestClient:
    settings = StorageSettings(
        home=home, service_token=SecretStr(SERVICE_TOKEN), tree_head_interval=0
    )
    client = TestClient(create_app(settings))
    client.headers["Authorization"] = f"Bearer {SERVICE_TOKEN}"
    return client


@pytest.fixture
def api(tmp_path: Path) -> Iterator[TestClient]:
    with _app(tmp_path / "storage") as client:
        yield client


def good(n: int, envelope: str = "env-1") -> dict[str, Any]:
    return {
        "event_type": "document.viewed",
        "envelope_id": envelope,
        "actor": f"user-{n}@example.com",
        "ip": "192.0.2.7",
        "user_agent": "Mozilla/5.0 (X11; Linux x86_64)",
        "details": {"page": str(n), "note": "Grüße, 日本語 ✓"},
    }


def post(client: TestClient, event: dict[str, Any]) -> Any:
    """Sent as raw JSON (ASCII escapes), so that lone surrogates reach the server as
    they would from any client (`json.dumps` writes them as \\udxxx)."""
    return client.post(
        "/v1/ledger/events",
        content=json.dumps(event).encode(),
        headers={"Content-Type": "application/json"},
    )


def check_ledger(client: TestClient, receipts: list[dict[str, Any]]) -> None:
    """Consecutive indexes; each receipt's leaf is the one its proof proves, in the tree."""
    assert [r["index"] for r in receipts] == list(range(len(receipts)))
    service = client.app.state.service  # type: ignore[attr-defined]
    ledger: Ledger = service.ledger
    assert ledger.size == len(receipts)
    root = ledger.root()
    for receipt in receipts:
        leaf = ledger.leaf(receipt["index"])
        assert json.loads(leaf)["index"] == receipt["index"]
        assert leaf_hash(leaf).hex() == receipt["leaf_hash"]
        proof = client.get("/v1/ledger/proof/inclusion", params={"index": receipt["index"]})
        assert proof.status_code == 200
        body = proof.json()
        assert body["leaf_hash"] == receipt["leaf_hash"]
        assert verify_inclusion(
            receipt["index"],
            len(receipts),
            bytes.fromhex(body["leaf_hash"]),
            [bytes.fromhex(p) for p in body["audit_path"]],
            root,
        )


HOSTILE: dict[str, dict[str, Any]] = {
    "details lone surrogate": {"details": {"k": "\ud800"}},
    "details key lone surrogate": {"details": {"\udfff": "v"}},
    "actor lone surrogate": {"actor": "bob\udc80"},
    "actor CR/LF": {"actor": "bob\r\n  #99 forged line"},
    "actor NUL": {"actor": "bob\x00"},
    "actor ANSI escape": {"actor": "\x1b[31mbob\x1b[0m"},
    "actor bidi override U+202E": {"actor": "bob\u202emoc.elpmaxe"},
    "actor bidi isolate U+2066": {"actor": "\u2066bob"},
    "actor C1 control U+0085": {"actor": "bob\x85"},
    "actor empty": {"actor": ""},
    "actor 257 characters": {"actor": "a" * 257},
    "details value LF": {"details": {"k": "a\nb"}},
    "details value ESC": {"details": {"k": "\x1b]0;title\x07"}},
    "details value U+2069": {"details": {"k": "x\u2069"}},
    "details key with space": {"details": {"a key": "v"}},
    "details key 65 characters": {"details": {"k" * 65: "v"}},
    "details value 4097 characters": {"details": {"k": "v" * 4097}},
    "details 64 KiB in all": {"details": {f"k{i}": "v" * 4000 for i in range(20)}},
    "details 20 MB value": {"details": {"k": "v" * 20_000_000}},
    "details 33 entries": {"details": {f"k{i}": "v" for i in range(33)}},
    "details nested": {"details": {"k": {"deep": "v"}}},
    "details a list": {"details": ["k", "v"]},
    "details value a number": {"details": {"k": 1}},
    "user agent ESC": {"user_agent": "curl\x1b[2J"},
    "user agent CR": {"user_agent": "curl\r"},
    "ip with a space": {"ip": "10.0.0.1 evil"},
    "ip with LF": {"ip": "10.0.0.1\n"},
    "auth method with LF": {"auth_method": "otp\n"},
    "envelope ../../etc": {"envelope_id": "../../etc"},
    "envelope ..": {"envelope_id": ".."},
    "envelope tab": {"envelope_id": "env\t1"},
    "envelope Latin-1": {"envelope_id": "envé"},
    "envelope 65 characters": {"envelope_id": "e" * 65},
    "event type upper case": {"event_type": "Document.Viewed"},
    "document hash upper case": {"document_hashes": ["AB" * 32]},
    "101 document hashes": {"document_hashes": ["ab" * 32] * 101},
    "unknown field": {"previous": "00" * 32},
    "index forged": {"index": 0},
}


@pytest.mark.parametrize("change", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_hostile_event_is_refused_with_422_and_takes_no_index(
    api: TestClient, change: dict[str, Any]
) -> None:
    first = post(api, good(1))
    assert first.status_code == 201
    refused = post(api, {**good(2), **change})
    # a body above the service's limit is refused by the gate before it is parsed
    oversized = len(json.dumps(change)) > 1024 * 1024
    assert refused.status_code == (413 if oversized else 422), refused.text
    assert refused.json()["error"] == ("payload_too_large" if oversized else "invalid_request")
    second = post(api, good(3))
    assert second.status_code == 201, second.text
    check_ledger(api, [first.json(), second.json()])


def test_after_a_refused_event_a_restart_finds_the_same_ledger_ready(tmp_path: Path) -> None:
    """The issue's sequence: good, lone surrogate, good; then restart storage."""
    home = tmp_path / "storage"
    with _app(home) as client:
        receipts = [post(client, good(0)).json()]
        assert post(client, {**good(1), "details": {"k": "\ud800"}}).status_code == 422
        receipts.append(post(client, good(2)).json())
        check_ledger(client, receipts)
        root = client.app.state.service.ledger.root()  # type: ignore[attr-defined]
    with _app(home) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["ledger_size"] == 2, ready.text
        assert client.app.state.service.ledger.root() == root  # type: ignore[attr-defined]
        receipts.append(post(client, good(3)).json())
        check_ledger(client, receipts)


def test_an_event_built_around_the_contract_takes_no_index(tmp_path: Path) -> None:
    """In-process callers can skip validation (`model_construct`): the ledger checks again."""
    ledger = Ledger(FilesystemVault(tmp_path / "vault", retention_years=5))
    try:
        ledger.append_sync(LedgerEventIn.model_validate(good(0)))
        for bad in (
            {**good(1), "details": {"k": "\ud800"}},
            {**good(1), "actor": "bob\r\nforged"},
            {**good(1), "details": {"k": "v" * 200_000}},
        ):
            with pytest.raises(InvalidEvent):
                ledger.append(LedgerEventIn.model_construct(**bad))
        receipt = ledger.append_sync(LedgerEventIn.model_validate(good(2)))
        assert receipt.index == 1 and ledger.size == 2
        assert json.loads(ledger.leaf(1))["index"] == 1
    finally:
        ledger.close()


_text = st.one_of(
    st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=12),
    st.sampled_from(["\ud800", "bob\udfff", "a\r\nb", "\x1b[1m", "x\u202e", "\x00", "ok"]),
)
_event = st.fixed_dictionaries(
    {
        "event_type": st.sampled_from(["document.viewed", "envelope.sent", "Bad Type", ""]),
        "envelope_id": st.sampled_from(["env-a", "env-b", "env-c", "../x", "a b"]),
        "actor": _text,
        "details": st.dictionaries(
            st.sampled_from(["k", "note", "page", "bad key", ""]), _text, max_size=3
        ),
    },
    optional={"user_agent": _text, "ip": st.sampled_from(["10.0.0.1", "::1", "1 2", "\n"])},
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(events=st.lists(_event, min_size=1, max_size=12))
def test_random_events_valid_and_invalid_keep_the_ledger_consistent(
    events: list[dict[str, Any]],
) -> None:
    home = Path(tempfile.mkdtemp(prefix="ledger-prop-"))
    try:
        receipts: list[dict[str, Any]] = []
        with _app(home / "storage") as client:
            for event in events:
                try:
                    LedgerEventIn.model_validate(event)
                    valid = True
                except ValueError:
                    valid = False
                answer = post(client, event)
                assert answer.status_code == (201 if valid else 422), (event, answer.text)
                if valid:
                    receipts.append(answer.json())
            check_ledger(client, receipts)
            service = client.app.state.service  # type: ignore[attr-defined]
            root = service.ledger.root()
        with _app(home / "storage") as client:
            assert client.get("/readyz").status_code == 200
            assert client.app.state.service.ledger.root() == root  # type: ignore[attr-defined]
            check_ledger(client, receipts)
    finally:
        shutil.rmtree(home, ignore_errors=True)
