"""Webhooks through the portal's real application (its gate, routes, jobs thread) on
SQLite, with a real HTTP receiver on loopback: signed deliveries of an envelope's steps
verified with the docs' own snippet, in order per envelope, a receiver that is down
then back, replays, the SSRF rule at subscription and at delivery, and the hostile side
of every route.

The signer and storage are not running (nothing here needs them: envelopes are made
through the portal's envelope service with a document reference, as the service tests
do); the ledger drain and the readiness probe fail quietly meanwhile.  The test
resolver (`_fake_dns`) stands in for a name server only for names under
``.metadata.test``: real resolution for everything else.
"""

from __future__ import annotations

import json
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from signet.portal.accounts.models import Organisation, Role, User
from signet.portal.accounts.service import PortalScope, Principal
from signet.portal.app import create_app
from signet.portal.config import PortalSettings
from signet.portal.envelopes.contracts import EnvelopeCreate
from signet.portal.http.deps import Portal
from signet.portal.webhooks import signing

from tests.conftest import free_port
from tests.portal.conftest import DOC
from tests.support.postgres import start_postgres

DOCS = Path(__file__).parents[2] / "docs" / "api" / "webhooks.md"


# -- a real receiver ------------------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def event(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.body)
        return loaded


@dataclass
class Receiver:
    """An HTTP server on loopback that records every POST and answers `status`."""

    port: int
    status: int = 200
    got: list[Received] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        receiver = self

        class Handle(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                headers = {k.lower(): v for k, v in self.headers.items()}
                receiver.got.append(Received(self.path, headers, body))
                answer = b"ok " * 1000  # 3 KB: the log keeps the first KiB
                self.send_response(receiver.status)
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: object) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handle)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver(free_port())
    running.start()
    yield running
    running.stop()


# -- the portal -------------------------------------------------------------------------------


@dataclass
class World:
    client: TestClient
    portal: Portal
    admin_key: str
    organisation_id: str
    admin_id: str

    def headers(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.admin_key}"}

    def subscribe(self, url: str, **extra: object) -> dict[str, Any]:
        made = self.client.post(
            "/api/v1/webhooks", json={"url": url} | extra, headers=self.headers()
        )
        assert made.status_code == 201, made.text
        body: dict[str, Any] = made.json()
        return body

    def deliveries(self, webhook_id: str) -> list[dict[str, Any]]:
        found = self.client.get(f"/api/v1/webhooks/{webhook_id}/deliveries",
                                headers=self.headers())  # fmt: skip
        assert found.status_code == 200, found.text
        rows: list[dict[str, Any]] = found.json()
        return rows

    def envelope(self, *, approve: bool = True, void: bool = True) -> str:
        """An envelope through its steps: created, sent, the approver's link opened, the
        identity code passed, approved, and voided by the sender."""
        envelopes = self.portal.envelopes
        story = EnvelopeCreate.model_validate(
            {
                "title": "采购合同 / Contrato",
                "recipients": [
                    {"name": "Approver", "email": "boss@acme.example", "role": "approver"},
                    {"name": "María", "mobile": "+34600000000", "group": 1, "locale": "es"},
                ],
            }
        )
        org, sender = self.organisation_id, self.admin_id
        envelope_id = envelopes.create(org, sender, story, [DOC])
        envelopes.send(org, envelope_id, sender)
        if approve:
            token = self._held(envelope_id, r"/s/([A-Za-z0-9_-]{43})")
            envelopes.open(token)
            self.portal.identity.request_code(token)
            self.portal.identity.verify(token, self._held(envelope_id, r"\b(\d{6})\b"))
            envelopes.approve(token)
        if void:
            envelopes.void(org, envelope_id, sender, reason="superseded")
        return envelope_id

    def _held(self, envelope_id: str, pattern: str) -> str:
        outbox = self.client.get("/api/v1/outbox", params={"envelope_id": envelope_id},
                                 headers=self.headers())  # fmt: skip
        for message in outbox.json():  # newest first
            found = re.search(pattern, message["body"])
            if found:
                return found.group(1)
        raise AssertionError(f"nothing like {pattern} in the outbox")


def _settings(tmp_path: Path, **extra: object) -> PortalSettings:
    dead = free_port()  # the signer and storage are not running
    values: dict[str, Any] = {
        "home": tmp_path / "portal",
        "secret_key": "s" * 40,
        "service_caller_token": "t" * 40,
        "signer_url": f"http://127.0.0.1:{dead}",
        "storage_url": f"http://127.0.0.1:{dead}",
        "policy_dir": tmp_path / "policies",
        "port": free_port(),
        "job_check_seconds": 0.05,
        "webhook_retry_base_seconds": 0.2,
        "webhook_retry_cap_seconds": 0.5,
        "webhook_allow_loopback": True,
        "completion_check_seconds": 3600,
        "deadline_check_seconds": 3600,
    }
    return PortalSettings(**(values | extra))


@contextmanager
def running(settings: PortalSettings) -> Iterator[World]:
    app = create_app(settings)
    portal: Portal = app.state.portal
    first = portal.accounts.ensure_first_admin("Acme", "admin@acme.example", "Admin")
    assert first is not None
    with portal.envelopes.sessions() as session:
        admin = session.query(User).filter_by(email="admin@acme.example").one()
        org_id, admin_id = admin.organisation_id, admin.id
    with TestClient(app) as client:
        yield World(client, portal, first.api_key.secret, org_id, admin_id)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with running(_settings(tmp_path)) as started:
        yield started


def _wait(what: Callable[[], bool], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not what():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _docs_verify() -> Callable[[str, dict[str, str], bytes], bool]:
    """The five-line check exactly as docs/api/webhooks.md prints it."""
    text = DOCS.read_text(encoding="utf-8")
    snippet = re.search(r"```python\n(import base64.*?)```", text, re.DOTALL)
    assert snippet, "the docs lost their verification snippet"
    assert len(snippet.group(1).split("def verify")[1].strip().splitlines()) == 6  # def + 5
    namespace: dict[str, Any] = {}
    exec(snippet.group(1), namespace)  # noqa: S102 - the docs' own code, under test
    verify: Callable[[str, dict[str, str], bytes], bool] = namespace["verify"]
    return verify


# -- the story ------------------------------------------------------------------------------


def test_every_step_arrives_signed_in_order_and_the_docs_snippet_verifies_it(
    world: World, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    made = world.subscribe(receiver.url, description="ERP")
    secret = made["secret"]
    assert secret.startswith("whsec_") and made["event_types"] == ["envelope.*", "recipient.*"]
    everything = world.subscribe(receiver.url.replace("/hooks", "/all"), event_types=["*"])
    envelope_id = world.envelope()
    expected = ["envelope.created", "envelope.sent", "recipient.approved", "envelope.voided"]
    _wait(lambda: len([r for r in receiver.got if r.event["type"] in expected]) >= 4)
    _wait(lambda: all(d["state"] == "delivered" for d in world.deliveries(everything["id"])))
    time.sleep(0.3)  # nothing more is coming
    narrow = [r for r in receiver.got if r.path == "/hooks"]
    assert all(r.headers["host"] == f"127.0.0.1:{receiver.port}" for r in narrow)
    assert [r.event["type"] for r in narrow] == expected
    verify = _docs_verify()
    for got in narrow:
        assert verify(secret, got.headers, got.body)
        assert signing.verify(secret, got.headers, got.body, time.time())  # the library's
        assert not signing.verify(secret, got.headers, got.body, time.time() + 301)
        assert got.headers["webhook-id"] == got.event["id"]
        assert got.headers["content-type"] == "application/json"
        # a wrong secret, a changed body, an old timestamp: each refused
        assert not verify(everything["secret"], got.headers, got.body)
        assert not verify(secret, got.headers, got.body.replace(b"envelope", b"Envelope", 1))
        old = got.headers | {"webhook-timestamp": str(int(got.headers["webhook-timestamp"]) - 301)}
        assert not verify(secret, old, got.body)
    # the event ids are the timeline's, the sequence is the place in it
    timeline = world.client.get(f"/api/v1/envelopes/{envelope_id}/events",
                                headers=world.headers()).json()  # fmt: skip
    place = {e["id"]: n for n, e in enumerate(timeline, start=1)}
    assert [place[r.event["id"]] for r in narrow] == [r.event["sequence"] for r in narrow]
    assert [r.event["sequence"] for r in narrow] == sorted(r.event["sequence"] for r in narrow)
    voided = narrow[-1].event
    assert voided["data"]["details"] == {"reason": "superseded", "status": "voided"}
    assert "ip" not in json.dumps(voided["data"])
    # the "*" subscription got every step, the identity ones too, in timeline order
    wide = [d for d in world.deliveries(everything["id"]) if d["envelope_id"] == envelope_id]
    assert sorted(d["sequence"] for d in wide) == list(range(1, len(timeline) + 1))
    assert {"link.opened", "identity.code_sent", "identity.passed"} <= {
        d["event_type"] for d in wide
    }
    # the log: each attempt's status, latency and the first KiB of the answer
    log = world.deliveries(made["id"])
    assert len(log) == 4 and all(d["state"] == "delivered" for d in log)
    attempt = log[0]["log"][0]
    assert attempt["status_code"] == 200 and attempt["latency_ms"] >= 0
    assert attempt["response"] == ("ok " * 1000)[:1024] and attempt["address"] == "127.0.0.1"
    assert secret not in caplog.text and everything["secret"] not in caplog.text
    # the secret is shown once: never in a list or a get
    listed = world.client.get("/api/v1/webhooks", headers=world.headers()).json()
    assert len(listed) == 2 and all("secret" not in w for w in listed)
    one = world.client.get(f"/api/v1/webhooks/{made['id']}", headers=world.headers()).json()
    assert "secret" not in one and one["description"] == "ERP"


def test_a_receiver_down_gets_every_event_once_back_in_order_per_envelope(
    world: World,
) -> None:
    receiver = Receiver(free_port())  # nothing listens yet
    made = world.subscribe(receiver.url)
    first, second = world.envelope(), world.envelope(approve=False)
    _wait(lambda: any(len(d["log"]) >= 2 for d in world.deliveries(made["id"])))
    pending = world.deliveries(made["id"])
    assert {d["state"] for d in pending} == {"pending"}
    failed = next(d for d in pending if len(d["log"]) >= 2)["log"][0]
    assert failed["status_code"] is None and "ConnectError" in failed["error"]
    # the first event of each envelope holds back the rest: one envelope's later events
    # have not been tried while its first one was failing
    for envelope_id in (first, second):
        ordered = sorted(
            (d for d in pending if d["envelope_id"] == envelope_id), key=lambda d: d["sequence"]
        )
        assert all(d["attempts"] == 0 for d in ordered[1:]), ordered
    receiver.start()
    try:
        _wait(lambda: all(d["state"] == "delivered" for d in world.deliveries(made["id"])))
        got = [r.event for r in receiver.got]
        for envelope_id, count in ((first, 4), (second, 3)):
            sequences = [e["sequence"] for e in got if e["envelope_id"] == envelope_id]
            assert len(set(sequences)) == count
            assert sequences == sorted(sequences)  # in order, as they came
    finally:
        receiver.stop()


def test_replay_sends_the_same_event_again_and_is_logged(world: World, receiver: Receiver) -> None:
    made = world.subscribe(receiver.url, event_types=["envelope.sent"])
    world.envelope(approve=False, void=False)
    _wait(lambda: len(receiver.got) == 1)
    (delivery,) = world.deliveries(made["id"])
    _wait(lambda: world.deliveries(made["id"])[0]["state"] == "delivered")
    replay = f"/api/v1/webhooks/{made['id']}/deliveries/{delivery['id']}/replay"
    answer = world.client.post(replay, headers=world.headers())
    assert answer.status_code == 202, answer.text
    _wait(lambda: len(receiver.got) == 2)
    first, again = receiver.got
    assert again.headers["webhook-id"] == first.headers["webhook-id"] and again.body == first.body
    _docs = _docs_verify()
    assert _docs(made["secret"], again.headers, again.body)
    _wait(lambda: len(world.deliveries(made["id"])[0]["log"]) == 2)
    assert [a["trigger"] for a in world.deliveries(made["id"])[0]["log"]] == ["delivery", "replay"]
    # an unknown delivery, another webhook's delivery
    other = world.subscribe(receiver.url)
    missing = f"/api/v1/webhooks/{made['id']}/deliveries/{'0' * 8}-0000-0000-0000-{'0' * 12}/replay"
    assert world.client.post(missing, headers=world.headers()).status_code == 404
    crossed = f"/api/v1/webhooks/{other['id']}/deliveries/{delivery['id']}/replay"
    assert world.client.post(crossed, headers=world.headers()).status_code == 404


def test_replaying_a_delivery_still_being_retried_is_refused(world: World) -> None:
    receiver = Receiver(free_port())  # down
    made = world.subscribe(receiver.url, event_types=["envelope.sent"])
    world.envelope(approve=False, void=False)
    _wait(lambda: bool(world.deliveries(made["id"])))
    (delivery,) = world.deliveries(made["id"])
    replay = f"/api/v1/webhooks/{made['id']}/deliveries/{delivery['id']}/replay"
    refused = world.client.post(replay, headers=world.headers())
    assert refused.status_code == 409 and refused.json()["error"] == "conflict"


def test_a_disabled_webhook_gets_nothing_new(world: World, receiver: Receiver) -> None:
    made = world.subscribe(receiver.url, event_types=["envelope.created"])
    gone = world.client.delete(f"/api/v1/webhooks/{made['id']}", headers=world.headers())
    assert gone.status_code == 200 and gone.json()["disabled_at"] is not None
    world.envelope(approve=False, void=False)
    time.sleep(0.5)
    assert receiver.got == [] and world.deliveries(made["id"]) == []


def test_a_target_that_turns_into_the_metadata_address_is_refused_at_delivery(
    world: World, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: the name was fine when subscribed, and resolves to the cloud
    metadata service when the delivery is made."""
    answers = {"erp.metadata.test": "127.0.0.1"}
    _fake_dns(monkeypatch, answers)
    made = world.subscribe(f"http://erp.metadata.test:{receiver.port}/hooks",
                           event_types=["envelope.created"])  # fmt: skip
    answers["erp.metadata.test"] = "169.254.169.254"
    world.envelope(approve=False, void=False)
    _wait(lambda: [d["state"] for d in world.deliveries(made["id"])] == ["failed"])
    (delivery,) = world.deliveries(made["id"])
    assert "169.254.169.254" in delivery["last_error"] and receiver.got == []
    assert delivery["log"][0]["status_code"] is None  # never connected


def test_retries_give_up_and_the_delivery_is_failed_with_the_reason(tmp_path: Path) -> None:
    with running(_settings(tmp_path, webhook_give_up_seconds=1.0)) as world:
        receiver = Receiver(free_port())
        receiver.status = 503
        receiver.start()
        try:
            made = world.subscribe(receiver.url, event_types=["envelope.created"])
            world.envelope(approve=False, void=False)
            _wait(lambda: [d["state"] for d in world.deliveries(made["id"])] == ["failed"])
            (delivery,) = world.deliveries(made["id"])
            assert delivery["last_error"].startswith("gave up after")
            assert "503" in delivery["last_error"] and len(delivery["log"]) >= 2
            assert {a["status_code"] for a in delivery["log"]} == {503}
        finally:
            receiver.stop()


# -- the SSRF rule and hostile requests ----------------------------------------------------------


def _fake_dns(monkeypatch: pytest.MonkeyPatch, answers: dict[str, str]) -> None:
    real = socket.getaddrinfo

    def getaddrinfo(host: str, port: object, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, str) and host.endswith(".metadata.test"):
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answers[host], port))]
        return real(host, port, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254"),
        ("http://metadata.metadata.test/computeMetadata/v1/", "169.254.169.254"),
        ("http://[::ffff:169.254.169.254]/", "169.254.169.254"),
        ("http://[fd00:ec2::254]/", "fd00:ec2::254"),
        ("http://100.100.100.200/latest/meta-data/", "100.100.100.200"),
        ("http://[fe80::1]/", "fe80::1"),
        ("http://0.0.0.0:8080/", "0.0.0.0"),  # noqa: S104 - a target refused, not a bind
        ("ftp://erp.acme.example/hooks", "http:// or https://"),
        ("http://user:pass@erp.acme.example/hooks", "credentials"),
        ("http://erp.acme.example:99999/hooks", "not a URL"),
        ("http://erp.acme example/hooks", "spaces"),
        ("http:///hooks", "names a host"),
        ("http://erp.acme.example/hooks#x", "fragment"),
        ("http://no-such-host.invalid/hooks", "does not resolve"),
    ],
)
def test_forbidden_and_malformed_targets_are_refused_at_subscription(
    world: World, monkeypatch: pytest.MonkeyPatch, url: str, why: str
) -> None:
    _fake_dns(monkeypatch, {"metadata.metadata.test": "169.254.169.254"})
    refused = world.client.post("/api/v1/webhooks", json={"url": url}, headers=world.headers())
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"] == "webhook_target_refused" and why in refused.json()["detail"]
    assert world.client.get("/api/v1/webhooks", headers=world.headers()).json() == []


def test_the_appliances_own_ports_are_refused_even_with_loopback_allowed(world: World) -> None:
    settings = world.portal.settings
    for url in (settings.signer_url, settings.storage_url, settings.public_url,
                f"http://localhost:{settings.port}/api/v1/keys"):  # fmt: skip
        refused = world.client.post("/api/v1/webhooks", json={"url": url},
                                    headers=world.headers())  # fmt: skip
        assert refused.status_code == 422, (url, refused.text)
        assert "own services" in refused.json()["detail"]


def test_loopback_is_refused_by_default(tmp_path: Path, receiver: Receiver) -> None:
    with running(_settings(tmp_path, webhook_allow_loopback=False)) as world:
        for url in (receiver.url, f"http://localhost:{receiver.port}/", "http://[::1]:9/"):
            refused = world.client.post("/api/v1/webhooks", json={"url": url},
                                        headers=world.headers())  # fmt: skip
            assert refused.status_code == 422 and "loopback" in refused.json()["detail"], url
        # a private address of the cluster is a fine target
        fine = world.client.post("/api/v1/webhooks", json={"url": "http://10.20.30.40/hooks"},
                                 headers=world.headers())  # fmt: skip
        assert fine.status_code == 201, fine.text


def _other_organisation(world: World) -> str:
    """An administrator's key of a second organisation."""
    with world.portal.envelopes.sessions.begin() as session:
        org = Organisation(name="Globex")
        session.add(org)
        session.flush()
        admin = User(organisation_id=org.id, email="admin@globex.example", name="G",
                     role=Role.ADMIN.value)  # fmt: skip
        session.add(admin)
        session.flush()
        principal = Principal(org.id, admin.id, Role.ADMIN, "bootstrap",
                              frozenset({PortalScope.ADMIN}))  # fmt: skip
    return world.portal.accounts.create_key(principal, "globex", [PortalScope.ADMIN]).secret


def _admin_principal(world: World) -> Principal:
    return Principal(world.organisation_id, world.admin_id, Role.ADMIN, "bootstrap",
                     frozenset({PortalScope.ADMIN}))  # fmt: skip


def test_every_route_refuses_no_key_the_wrong_scope_a_sender_and_another_organisation(
    world: World, receiver: Receiver
) -> None:
    made = world.subscribe(receiver.url, event_types=["envelope.created"])
    world.envelope(approve=False, void=False)
    _wait(lambda: bool(world.deliveries(made["id"])))
    delivery = world.deliveries(made["id"])[0]["id"]
    base = f"/api/v1/webhooks/{made['id']}"
    routes = [
        ("POST", "/api/v1/webhooks", {"url": receiver.url}),
        ("GET", "/api/v1/webhooks", None),
        ("GET", base, None),
        ("DELETE", base, None),
        ("GET", f"{base}/deliveries", None),
        ("POST", f"{base}/deliveries/{delivery}/replay", None),
    ]
    accounts, admin = world.portal.accounts, _admin_principal(world)
    envelope_scopes = [PortalScope.ENVELOPES_WRITE, PortalScope.ENVELOPES_READ]
    envelopes_key = accounts.create_key(admin, "sender", envelope_scopes).secret
    sender = accounts.add_user(admin, "li@acme.example", "Li Wei", Role.SENDER)
    sender_key = accounts.create_key(admin, "li", [PortalScope.WEBHOOKS_MANAGE],
                                     user_id=sender.id).secret  # fmt: skip
    manager_key = accounts.create_key(admin, "hooks", [PortalScope.WEBHOOKS_MANAGE]).secret
    globex = _other_organisation(world)
    for method, path, body in routes:

        def call(key: str | None, method: str = method, path: str = path,
                 body: object = body) -> Any:  # fmt: skip
            headers = world.headers(key) if key else {}
            return world.client.request(method, path, json=body, headers=headers)

        assert call(None).status_code == 401, path
        assert call("sgk_" + "x" * 43).status_code == 401, path
        assert call(envelopes_key).status_code == 403, path  # the wrong scope
        forbidden = call(sender_key)  # the scope, but a sender: sees only their own
        assert forbidden.status_code == 403 and "administrator" in forbidden.json()["detail"]
        if path.startswith(base):
            assert call(globex).status_code == 404, path  # not "forbidden": not there
    # the scope webhooks:manage on an administrator's key is enough
    assert world.client.get(base, headers=world.headers(manager_key)).status_code == 200
    assert world.client.get("/api/v1/webhooks", headers=world.headers(globex)).json() == []
    # and the subscription is untouched by all of that
    assert world.client.get(base, headers=world.headers()).json()["disabled_at"] is None


def test_malformed_and_oversized_requests(world: World) -> None:
    post = lambda body, **kw: world.client.post(  # noqa: E731
        "/api/v1/webhooks", headers=world.headers() | kw.pop("headers", {}), **({"json": body} | kw)
    )
    assert post({"url": "http://10.0.0.1/", "event_types": ["envelope.signd"]}).status_code == 400
    assert post({"url": "http://10.0.0.1/", "event_types": ["nope.*"]}).status_code == 400
    assert post({"url": "http://10.0.0.1/", "secret": "mine"}).status_code == 422  # extra field
    assert post({"event_types": ["*"]}).status_code == 422  # no URL
    assert post({"url": "http://10.0.0.1/" + "a" * 2100}).status_code == 422
    oversized = world.client.post(
        "/api/v1/webhooks", content=b"{" + b" " * (70 * 1024) + b"}",
        headers=world.headers() | {"content-type": "application/json"},
    )  # fmt: skip
    assert oversized.status_code == 413, oversized.text
    as_json = world.headers() | {"content-type": "application/json"}
    not_json = world.client.post("/api/v1/webhooks", content=b"url=http://10.0.0.1/",
                                 headers=as_json)  # fmt: skip
    assert not_json.status_code == 422
    assert world.client.get("/api/v1/webhooks/not-an-id", headers=world.headers()).status_code in (
        403, 404, 422,
    )  # fmt: skip
    unknown = world.client.get(f"/api/v1/webhooks/{'0' * 8}-0000-0000-0000-{'0' * 12}",
                               headers=world.headers())  # fmt: skip
    assert unknown.status_code == 404 and unknown.json()["error"] == "not_found"
    assert world.client.get("/api/v1/webhooks", headers=world.headers()).json() == []


def test_on_postgresql_every_step_is_delivered_once_in_order(
    tmp_path: Path, receiver: Receiver
) -> None:
    server = start_postgres()
    try:
        url = server.create_database("webhooks")
        with running(_settings(tmp_path, database_url=url)) as world:
            made = world.subscribe(receiver.url, event_types=["*"])
            envelopes = [world.envelope(), world.envelope(approve=False)]
            steps = sum(
                len(
                    world.client.get(
                        f"/api/v1/envelopes/{e}/events", headers=world.headers()
                    ).json()
                )
                for e in envelopes
            )
            assert steps >= 9  # the first: created … approved, voided; the second: 2
            _wait(lambda: len(world.deliveries(made["id"])) == steps)
            _wait(lambda: all(d["state"] == "delivered" for d in world.deliveries(made["id"])))
            verify = _docs_verify()
            assert all(verify(made["secret"], r.headers, r.body) for r in receiver.got)
            for envelope_id in envelopes:
                timeline = world.client.get(f"/api/v1/envelopes/{envelope_id}/events",
                                            headers=world.headers()).json()  # fmt: skip
                got = [r.event for r in receiver.got if r.event["envelope_id"] == envelope_id]
                assert [e["id"] for e in got] == [e["id"] for e in timeline]
                assert [e["sequence"] for e in got] == list(range(1, len(timeline) + 1))
    finally:
        server.stop()


def _tls_files(folder: Path, name: str) -> tuple[Path, Path, Path]:
    """A test CA and a server certificate for `name` (files: CA, certificate, key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.now(UTC)

    def made(subject: str, issuer: x509.Name | None, key: ec.EllipticCurvePrivateKey,
             signer: ec.EllipticCurvePrivateKey, ca: bool) -> x509.Certificate:  # fmt: skip
        named = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
        builder = (
            x509.CertificateBuilder().subject_name(named).issuer_name(issuer or named)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )  # fmt: skip
        if not ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False
            )
        return builder.sign(signer, hashes.SHA256())

    ca_key, server_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    ca = made("Acme test CA", None, ca_key, ca_key, True)
    server = made(name, ca.subject, server_key, ca_key, False)
    pem = serialization.Encoding.PEM
    paths = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    paths[0].write_bytes(ca.public_bytes(pem))
    paths[1].write_bytes(server.public_bytes(pem))
    paths[2].write_bytes(server_key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))  # fmt: skip
    return paths


def test_https_is_verified_against_the_name_while_connecting_to_the_checked_address(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The request goes to the address checked (127.0.0.1 here), and TLS still checks
    the receiver's certificate against its name (SNI), with the admin's CA file."""
    name = "erp.metadata.test"
    ca, certificate, key = _tls_files(tmp_path, name)
    _fake_dns(monkeypatch, {name: "127.0.0.1"})
    receiver = Receiver(free_port())
    receiver.start()
    assert receiver.server is not None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificate, key)
    receiver.server.socket = context.wrap_socket(receiver.server.socket, server_side=True)
    url = f"https://{name}:{receiver.port}/hooks"
    try:
        with running(_settings(tmp_path / "with-ca", webhook_ca_file=ca)) as world:
            made = world.subscribe(url, event_types=["envelope.created"])
            world.envelope(approve=False, void=False)
            _wait(lambda: [d["state"] for d in world.deliveries(made["id"])] == ["delivered"])
            (got,) = receiver.got
            assert got.headers["host"] == f"{name}:{receiver.port}"
            assert _docs_verify()(made["secret"], got.headers, got.body)
        with running(_settings(tmp_path / "without")) as world:  # the system's CAs only
            made = world.subscribe(url, event_types=["envelope.created"])
            world.envelope(approve=False, void=False)
            _wait(lambda: bool(world.deliveries(made["id"])[0]["log"]))
            attempt = world.deliveries(made["id"])[0]["log"][0]
            assert "CERTIFICATE_VERIFY_FAILED" in attempt["error"], attempt
            assert len(receiver.got) == 1  # nothing reached the receiver's handler
    finally:
        receiver.stop()
