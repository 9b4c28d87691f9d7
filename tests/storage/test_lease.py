"""One storage replica publishes tree heads: the Lease elector against the Kubernetes emulator.

The emulator (kmock plus `tests.support.kube_emulator`) stores the Lease and
refuses a replace carrying a stale resourceVersion, as a real API server does;
the first test checks that, since every other test leans on it.

Short periods (lease 2 s, renew deadline 1.3 s, retry 0.2 s) keep this file to
seconds. Leadership is sampled every few milliseconds and every publication is
time-stamped, so an overlap, a late step-down or a missing takeover fails.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from signet.common.contracts.storage import LedgerEventIn
from signet.storage.config import StorageSettings
from signet.storage.lease import VERBS, LeaseElector, LeaseTiming, coordination_api
from signet.storage.service import StorageService

from tests.support.kube_emulator import RunningEmulator

ROOT = Path(__file__).resolve().parents[2]
NS = "signet"
FAST = LeaseTiming(lease_duration=2, renew_deadline=1.3, retry_period=0.2)
#: The margin the design promises between one leader's end and the next one's start
#: after a crash: the others wait lease_duration, the leader stops after renew_deadline.
MARGIN = FAST.lease_duration - FAST.renew_deadline


@pytest.fixture(scope="module")
def kube() -> Iterator[RunningEmulator]:
    emulator = RunningEmulator(ROOT / "helm" / "signet" / "crds")
    try:
        yield emulator
    finally:
        emulator.close()


@pytest.fixture
def lease_name() -> str:
    return f"t{uuid.uuid4().hex[:8]}-tree-head-publisher"


def wait_until(what: str, check: Callable[[], bool], timeout: float = 10.0) -> float:
    """Poll `check`; return the time.time() at which it first held."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return time.time()
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


class Sampler:
    """Samples a leadership predicate every 5 ms and keeps [start, end) intervals (time.time)."""

    def __init__(self, leading: Callable[[], bool]) -> None:
        self.intervals: list[list[float]] = []
        self._leading = leading
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        was = False
        while not self._stop.is_set():
            now, leads = time.time(), self._leading()
            if leads and not was:
                self.intervals.append([now, float("inf")])
            elif was and not leads:
                self.intervals[-1][1] = now
            was = leads
            time.sleep(0.005)
        if was:
            self.intervals[-1][1] = time.time()

    def stop(self) -> list[list[float]]:
        self._stop.set()
        self._thread.join()
        return self.intervals


def assert_disjoint(named: dict[str, list[list[float]]]) -> None:
    spans = sorted((start, end, who) for who, ivs in named.items() for start, end in ivs)
    for (_, end, who), (start, _, other) in itertools.pairwise(spans):
        assert end <= start, f"{who} led until {end:.3f}, {other} already from {start:.3f}"


class FakeSigner:
    """The TreeHeadSigner protocol without an HSM: the lease decides *whether*, not *how*."""

    def __init__(self) -> None:
        self.calls = 0

    def sign_digest(self, digest: bytes) -> tuple[bytes, str, list[str]]:
        self.calls += 1
        return b"signature-" + digest[:4], "ecdsa-with-SHA256", []

    def timestamp(self, digest: bytes) -> bytes:
        return b"token-" + digest[:4]

    def close(self) -> None:
        pass


class Proxy:
    """A TCP hop to the API server that a test can cut: `hang` (connections are accepted
    and never answered, like a partitioned network) or `drop` (closed at once)."""

    def __init__(self, upstream: str) -> None:
        host, port = upstream.removeprefix("http://").split(":")
        self._upstream = (host, int(port))
        self.mode = "forward"
        self._sockets: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            if self.mode == "drop":
                conn.close()
                continue
            self._sockets.append(conn)
            if self.mode == "hang":
                continue
            upstream = socket.create_connection(self._upstream)
            self._sockets.append(upstream)
            for src, dst in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def cut(self, mode: str) -> None:
        self.mode = mode
        sockets, self._sockets = self._sockets, []
        for sock in sockets:  # pooled keep-alive connections must not survive the cut
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self._listener.close()
        self.cut("drop")


def service(
    tmp_path: Path, name: str, *, lease: str | None, api_url: str | None, interval: float = 0.05
) -> StorageService:
    settings = StorageSettings(
        home=tmp_path / name,
        tree_head_interval=interval,
        lease_name=lease,
        lease_namespace=NS if lease else None,
        lease_duration=FAST.lease_duration,
        lease_renew_deadline=FAST.renew_deadline,
        lease_retry_period=FAST.retry_period,
        kube_api_url=api_url,
    )
    result = StorageService(settings)
    result._signer = FakeSigner()  # type: ignore[assignment]  # no signer service here
    return result


class TickingService(StorageService):
    """A StorageService whose publication step only records when it ran."""

    def __init__(self, settings: StorageSettings) -> None:
        super().__init__(settings)
        self.ticks: list[float] = []

    def _publish_tree_head(self) -> None:
        self.ticks.append(time.time())


def event(n: int) -> LedgerEventIn:
    return LedgerEventIn(event_type="envelope.created", envelope_id=f"env-{n}", actor="test")


# -- the emulator speaks the protocol the elector relies on ------------------------------------


def test_emulator_refuses_a_replace_with_a_stale_resource_version(kube: RunningEmulator) -> None:
    api = coordination_api(kube.url)
    name = f"t{uuid.uuid4().hex[:8]}"
    body = client.V1Lease(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1LeaseSpec(holder_identity="a", lease_duration_seconds=2),
    )
    api.create_namespaced_lease(NS, body)
    with pytest.raises(ApiException) as exists:
        api.create_namespaced_lease(NS, body)
    assert exists.value.status == 409

    read = api.read_namespaced_lease(name, NS)
    stale = api.read_namespaced_lease(name, NS)
    read.spec.holder_identity = "b"
    written = api.replace_namespaced_lease(name, NS, read)
    assert written.spec.holder_identity == "b"
    assert written.metadata.resource_version != read.metadata.resource_version
    assert written.metadata.uid == read.metadata.uid

    stale.spec.holder_identity = "c"
    with pytest.raises(ApiException) as conflict:
        api.replace_namespaced_lease(name, NS, stale)
    assert conflict.value.status == 409
    assert json.loads(conflict.value.body)["reason"] == "Conflict"
    assert api.read_namespaced_lease(name, NS).spec.holder_identity == "b"  # nothing changed

    with pytest.raises(ApiException) as missing:
        api.replace_namespaced_lease(f"{name}-x", NS, written)
    assert missing.value.status == 404
    api.api_client.close()


def test_the_verbs_are_the_ones_the_operator_grants() -> None:
    from signet.operator import desired  # the Role the operator renders for storage

    role = next(
        o
        for o in desired.desired_objects("acme", NS, _spec())
        if o["kind"] == "Role" and o["metadata"]["name"] == "acme-storage-lease"
    )
    granted = {verb for rule in role["rules"] for verb in rule["verbs"]}
    assert set(VERBS) == granted


def _spec() -> Any:
    from signet.common.contracts.appliance import ApplianceSpec

    return ApplianceSpec.model_validate(
        {
            "publicUrl": "https://sign.example.com",
            "hsm": {"softhsm": True},
            "objectStore": {
                "endpoint": "minio:9000",
                "accessKey": {"name": "s3", "key": "a"},
                "secretKey": {"name": "s3", "key": "s"},
            },
            "database": {"url": {"name": "postgres", "key": "url"}},
        }
    )


# -- electors in threads -------------------------------------------------------------------------


def test_candidates_racing_for_a_new_lease_elect_exactly_one(
    kube: RunningEmulator, lease_name: str
) -> None:
    electors = [
        LeaseElector(
            coordination_api(kube.url),
            name=lease_name,
            namespace=NS,
            identity=f"c{n}",
            timing=FAST,
        )
        for n in range(4)
    ]
    samplers = {e.identity: Sampler(e.is_leader) for e in electors}
    for e in electors:
        e.start()
    try:
        wait_until("a leader", lambda: any(e.is_leader() for e in electors))
        time.sleep(1.5)  # several renewals: the others stay candidates
        # Read the clock first: leading after it, the leader's last accepted write started
        # less than renew_deadline before it, and the Lease expires lease_duration after.
        picked = time.time()
        leader = next(e for e in electors if e.is_leader())
        leader.stop(release=False)  # it dies without a word: the Lease must expire
        lost = time.time()  # after the join of its thread (a renewal may have been in flight)
        taken = wait_until(
            "a successor", lambda: any(e.is_leader() for e in electors if e is not leader)
        )
        successor = next(e for e in electors if e is not leader and e.is_leader())
        assert taken - picked >= MARGIN
        assert taken - lost <= FAST.lease_duration + 3 * FAST.retry_period + 1.0
        time.sleep(1.0)
    finally:
        for e in electors:
            e.stop()
    intervals = {who: s.stop() for who, s in samplers.items()}
    assert_disjoint(intervals)
    # Exactly these two led, the successor only after the leader's end. Each may have led
    # in more than one interval: a renewal slower than renew_deadline (a loaded machine)
    # ends leadership until the next accepted one, by design.
    assert {who for who, ivs in intervals.items() if ivs} == {leader.identity, successor.identity}
    assert min(start for start, _ in intervals[successor.identity]) >= max(
        end for _, end in intervals[leader.identity]
    )
    lease = coordination_api(kube.url).read_namespaced_lease(lease_name, NS)
    assert lease.spec.holder_identity is None  # the last leader released it
    assert lease.spec.lease_transitions == 1


class Lockstep:
    """A CoordinationV1Api whose first read waits for the other candidate's first read:
    both then hold the same resourceVersion and both try to write it."""

    def __init__(self, api: Any, barrier: threading.Barrier) -> None:
        self.api = api
        self.api_client = api.api_client
        self.barrier = barrier
        self.refused: list[int] = []
        self._first = True

    def read_namespaced_lease(self, *args: Any, **kwargs: Any) -> Any:
        lease = self.api.read_namespaced_lease(*args, **kwargs)
        if self._first:
            self._first = False
            self.barrier.wait(timeout=5)
        return lease

    def replace_namespaced_lease(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return self.api.replace_namespaced_lease(*args, **kwargs)
        except ApiException as exc:
            self.refused.append(exc.status)
            raise


def test_two_candidates_that_read_the_same_free_lease_cannot_both_take_it(
    kube: RunningEmulator, lease_name: str
) -> None:
    api = coordination_api(kube.url)
    api.create_namespaced_lease(
        NS,
        client.V1Lease(
            metadata=client.V1ObjectMeta(name=lease_name),
            spec=client.V1LeaseSpec(lease_duration_seconds=2),  # released: no holder
        ),
    )
    barrier = threading.Barrier(2)
    apis = [Lockstep(coordination_api(kube.url), barrier) for _ in range(2)]
    electors = [
        LeaseElector(a, name=lease_name, namespace=NS, identity=f"c{n}", timing=FAST)
        for n, a in enumerate(apis)
    ]
    samplers = {e.identity: Sampler(e.is_leader) for e in electors}
    for e in electors:
        e.start()
    try:
        wait_until("a leader", lambda: any(e.is_leader() for e in electors))
        time.sleep(0.5)
        assert [a.refused for a in apis].count([409]) == 1  # the second write was refused
        assert sum(e.is_leader() for e in electors) == 1
    finally:
        for e in electors:
            e.stop()
    assert_disjoint({who: s.stop() for who, s in samplers.items()})
    api.api_client.close()


class SlowRenewals:
    """A CoordinationV1Api whose replaces (renewals, the release) each first wait longer
    than the renew deadline, as on an overloaded node: every renewal is accepted, late."""

    def __init__(self, api: Any) -> None:
        self.api = api
        self.api_client = api.api_client
        self.replaced = 0

    def read_namespaced_lease(self, *args: Any, **kwargs: Any) -> Any:
        return self.api.read_namespaced_lease(*args, **kwargs)

    def create_namespaced_lease(self, *args: Any, **kwargs: Any) -> Any:
        return self.api.create_namespaced_lease(*args, **kwargs)

    def replace_namespaced_lease(self, *args: Any, **kwargs: Any) -> Any:
        time.sleep(FAST.renew_deadline + 0.2)
        answer = self.api.replace_namespaced_lease(*args, **kwargs)
        self.replaced += 1
        return answer


def test_a_holder_whose_renewals_come_too_late_still_releases_the_lease_on_stop(
    kube: RunningEmulator, lease_name: str
) -> None:
    """Its deadline lapsed (it does not lead), but the Lease names it: stop(release=True)
    clears the holder, so a successor need not wait the Lease out."""
    slow = SlowRenewals(coordination_api(kube.url))
    elector = LeaseElector(slow, name=lease_name, namespace=NS, identity="late", timing=FAST)
    elector.start()
    try:
        wait_until("a late renewal", lambda: slow.replaced >= 1)
        assert not elector.is_leader()  # accepted after its own deadline
    finally:
        elector.stop()
    api = coordination_api(kube.url)
    lease = api.read_namespaced_lease(lease_name, NS)
    assert lease.spec.holder_identity is None
    api.api_client.close()


class StalledRead:
    """A CoordinationV1Api whose reads, once `stall` is set, wait for `go` (an API
    server that answers only after the elector was told to stop)."""

    def __init__(self, api: Any) -> None:
        self.api = api
        self.api_client = api.api_client
        self.stall, self.stalled, self.go = threading.Event(), threading.Event(), threading.Event()
        self.writes_after_go = 0

    def read_namespaced_lease(self, *args: Any, **kwargs: Any) -> Any:
        lease = self.api.read_namespaced_lease(*args, **kwargs)
        if self.stall.is_set():
            self.stalled.set()
            self.go.wait(timeout=10)
        return lease

    def create_namespaced_lease(self, *args: Any, **kwargs: Any) -> Any:
        return self.api.create_namespaced_lease(*args, **kwargs)

    def replace_namespaced_lease(self, *args: Any, **kwargs: Any) -> Any:
        if self.go.is_set():
            self.writes_after_go += 1
        return self.api.replace_namespaced_lease(*args, **kwargs)


def test_an_elector_stopped_during_a_slow_read_never_writes_again(
    kube: RunningEmulator, lease_name: str
) -> None:
    """`stop` joins the campaign thread for a bounded time, then releases: a read that
    answers after that must not be followed by a renewal that takes the Lease back."""
    stalled = StalledRead(coordination_api(kube.url))
    elector = LeaseElector(stalled, name=lease_name, namespace=NS, identity="gone", timing=FAST)
    elector.start()
    wait_until("leadership", elector.is_leader)
    stalled.stall.set()
    wait_until("a read that hangs", stalled.stalled.is_set)
    client_close = stalled.api_client.close
    stalled.api_client.close = lambda: None  # the thread's late write must reach the server
    elector.stop()  # joins for 2 x 1 + 0.2 s (request timeout, retry), then releases
    stalled.go.set()  # the read answers now, with the Lease as it was before the release
    time.sleep(0.5)
    assert stalled.writes_after_go == 0
    api = coordination_api(kube.url)
    assert api.read_namespaced_lease(lease_name, NS).spec.holder_identity is None
    api.api_client.close()
    client_close()


@pytest.mark.parametrize("outage", ["hang", "drop"])
def test_a_leader_cut_off_from_the_api_server_steps_down_and_stops_publishing(
    kube: RunningEmulator, lease_name: str, tmp_path: Path, outage: str
) -> None:
    proxy = Proxy(kube.url)
    cut_off = TickingService(
        service(tmp_path, "a", lease=lease_name, api_url=proxy.url, interval=0.02).settings
    )
    other = TickingService(
        service(tmp_path, "b", lease=lease_name, api_url=kube.url, interval=0.02).settings
    )
    samplers = {
        "a": Sampler(lambda: cut_off.publisher_role() == "leader"),
        "b": Sampler(lambda: other.publisher_role() == "leader"),
    }
    try:
        cut_off.start_publisher()
        wait_until("a leads", lambda: cut_off.publisher_role() == "leader")
        other.start_publisher()
        time.sleep(1.0)
        assert other.publisher_role() == "standby"
        assert not other.ticks

        proxy.cut(outage)
        cut = time.time()
        stepped = wait_until("a steps down", lambda: cut_off.publisher_role() == "standby")
        # Its last accepted renewal started before the cut: it leads at most renew_deadline on.
        assert stepped - cut <= FAST.renew_deadline + 0.3  # + polling under load
        last_tick = max(cut_off.ticks)
        assert last_tick <= cut + FAST.renew_deadline + 0.2
        time.sleep(0.3)
        assert max(cut_off.ticks) == last_tick  # nothing published while cut off

        taken = wait_until("b takes over", lambda: other.publisher_role() == "leader")
        assert taken - last_tick >= MARGIN
        wait_until("b publishes", lambda: bool(other.ticks))
        assert min(other.ticks) > last_tick

        proxy.cut("forward")  # back online: b holds the Lease, a stays a standby
        time.sleep(1.0)
        assert cut_off.publisher_role() == "standby"
        assert max(cut_off.ticks) == last_tick
    finally:
        cut_off.close()
        other.close()
        proxy.close()
    assert_disjoint({who: s.stop() for who, s in samplers.items()})


# -- real storage services: publication and readiness -----------------------------------------


def test_only_the_leader_publishes_signed_tree_heads(
    kube: RunningEmulator, lease_name: str, tmp_path: Path
) -> None:
    first = service(tmp_path, "a", lease=lease_name, api_url=kube.url)
    second = service(tmp_path, "b", lease=lease_name, api_url=kube.url)
    try:
        for s in (first, second):
            s.ledger.append_sync(event(1))
            assert s.readiness().tree_head_publisher is None  # no publisher yet
        first.start_publisher()
        wait_until("a leads", lambda: first.publisher_role() == "leader")
        second.start_publisher()
        head = wait_until("a's head", lambda: first.ledger.latest_head() is not None)
        assert first.ledger.latest_head() is not None
        assert first.ledger.latest_head().signature  # type: ignore[union-attr]
        time.sleep(0.5)
        assert second.ledger.latest_head() is None
        assert second._signer.calls == 0  # type: ignore[union-attr]
        assert first.readiness().tree_head_publisher == "leader"
        assert second.readiness().tree_head_publisher == "standby"
        assert second.readiness().status == "ready"  # a standby serves like the leader

        first.close()  # graceful: the Lease is released, no need to wait it out
        taken = wait_until("b leads", lambda: second.publisher_role() == "leader", timeout=3)
        assert taken - head < 5
        wait_until("b's head", lambda: second.ledger.latest_head() is not None)
    finally:
        first.close()
        second.close()


def test_without_a_lease_name_the_single_process_publishes_as_before(tmp_path: Path) -> None:
    single = service(tmp_path, "a", lease=None, api_url=None)
    try:
        single.ledger.append_sync(event(1))
        single.start_publisher()
        wait_until("a head", lambda: single.ledger.latest_head() is not None)
        assert single._elector is None
        assert single.readiness().tree_head_publisher == "single"
    finally:
        single.close()


def test_a_lease_that_cannot_be_set_up_is_unavailable_not_standby(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No namespace for the Lease (not in a pod, none configured): this replica never
    publishes, and says so, instead of posing as a standby waiting its turn."""
    monkeypatch.delenv("POD_NAMESPACE", raising=False)
    monkeypatch.setattr(
        "signet.storage.lease.SERVICE_ACCOUNT_NAMESPACE", tmp_path / "no-service-account"
    )
    broken = StorageService(
        StorageSettings(
            home=tmp_path / "a",
            tree_head_interval=0.05,
            lease_name="acme-tree-head-publisher",
            kube_api_url="http://127.0.0.1:9",
        )
    )
    broken._signer = FakeSigner()  # type: ignore[assignment]
    try:
        broken.ledger.append_sync(event(1))
        broken.start_publisher()
        time.sleep(0.3)
        ready = broken.readiness()
        assert ready.tree_head_publisher == "unavailable"
        assert ready.tree_head_publisher_problem is not None
        assert "acme-tree-head-publisher" in ready.tree_head_publisher_problem
        assert "namespace" in ready.tree_head_publisher_problem
        assert ready.status == "ready"  # it still serves every request
        assert broken.ledger.latest_head() is None  # and never publishes
    finally:
        broken.close()


def test_readiness_says_since_when_entries_wait_for_a_tree_head(tmp_path: Path) -> None:
    """What the operator measures staleness from: the oldest entry no signed head covers."""
    first_run = service(tmp_path, "a", lease=None, api_url=None, interval=0)
    try:
        assert first_run.readiness().unsigned_since is None  # an empty log waits for nothing
        first = first_run.ledger.append_sync(event(1))
        assert first_run.readiness().unsigned_since == first.time
        first_run._publish_tree_head()
        signed = first_run.readiness()
        assert signed.tree_head_size == 1 and signed.unsigned_since is None
        second = first_run.ledger.append_sync(event(2))
        first_run.ledger.append_sync(event(3))
        waiting = first_run.readiness()
        # the oldest unsigned entry: neither the newest one nor the (older) head's time
        assert waiting.unsigned_since == second.time
        assert waiting.tree_head_time is not None and waiting.tree_head_time < second.time
    finally:
        first_run.close()
    restarted = service(tmp_path, "a", lease=None, api_url=None, interval=0)
    try:  # read back from the ledger's records in the vault
        assert restarted.readiness().unsigned_since == second.time
    finally:
        restarted.close()


def test_readiness_reports_what_this_process_runs_with(tmp_path: Path) -> None:
    """The operator judges retention and staleness by these, not by a spec not running."""
    running = service(tmp_path, "a", lease=None, api_url=None, interval=120)
    try:
        ready = running.readiness()
        assert ready.tree_head_interval_seconds == 120
        assert ready.configured_retention_years == running.settings.retention_years == 10
    finally:
        running.close()


HOUR = 3600.0  # an interval no test waits out: a head within seconds is the first one


def test_a_restarted_publisher_covers_waiting_entries_at_once(tmp_path: Path) -> None:
    """Entries appended before a restart have waited already: no full interval first."""
    before = service(tmp_path, "a", lease=None, api_url=None, interval=HOUR)
    before.ledger.append_sync(event(1))
    before.close()
    restarted = service(tmp_path, "a", lease=None, api_url=None, interval=HOUR)
    try:
        restarted.start_publisher()
        wait_until("a head at once", lambda: restarted.ledger.latest_head() is not None, timeout=5)
        assert restarted.readiness().unsigned_since is None
    finally:
        restarted.close()
    quiet = service(tmp_path, "b", lease=None, api_url=None, interval=HOUR)
    try:  # nothing uncovered: nothing signed
        quiet.start_publisher()
        time.sleep(0.3)
        assert quiet.ledger.latest_head() is None and quiet._signer.calls == 0  # type: ignore[union-attr]
    finally:
        quiet.close()


def test_a_new_leader_covers_waiting_entries_at_once(
    kube: RunningEmulator, lease_name: str, tmp_path: Path
) -> None:
    first = service(tmp_path, "a", lease=lease_name, api_url=kube.url, interval=HOUR)
    second = service(tmp_path, "b", lease=lease_name, api_url=kube.url, interval=HOUR)
    try:
        first.start_publisher()
        wait_until("a leads", lambda: first.publisher_role() == "leader")
        second.start_publisher()
        second.ledger.append_sync(event(1))  # waits while b is a standby
        time.sleep(0.5)
        assert second.ledger.latest_head() is None
        first.close()  # releases the Lease: b takes over, and signs without an hour's wait
        wait_until("b leads", lambda: second.publisher_role() == "leader", timeout=5)
        wait_until("b's head", lambda: second.ledger.latest_head() is not None, timeout=5)
    finally:
        first.close()
        second.close()


def test_lease_timing_that_could_let_two_lead_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="lease timing"):
        StorageSettings(home=tmp_path, lease_duration=10, lease_renew_deadline=10)
    with pytest.raises(ValueError, match="lease timing"):
        LeaseTiming(lease_duration=2, renew_deadline=1.3, retry_period=1.5)


# -- replicas in processes -----------------------------------------------------------------------


def replica() -> None:
    """A storage replica in its own process: records its role and its publications as JSON lines.

    Runs until SIGTERM, then closes the service (which releases the Lease).
    """
    record = Path(os.environ["LEASE_TEST_RECORD"])
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    out = record.open("a", buffering=1, encoding="utf-8")

    class Recording(StorageService):
        def _publish_tree_head(self) -> None:
            out.write(json.dumps({"t": time.time(), "event": "publish"}) + "\n")

    replica_service = Recording(StorageSettings())
    replica_service.start_publisher()
    was = None
    while not stop.is_set():
        role = replica_service.publisher_role()
        if role != was:
            out.write(json.dumps({"t": time.time(), "event": role}) + "\n")
            was = role
        time.sleep(0.005)
    replica_service.close()
    out.write(json.dumps({"t": time.time(), "event": "closed"}) + "\n")


class Replica:
    def __init__(self, kube: RunningEmulator, lease_name: str, tmp_path: Path, name: str) -> None:
        self.name = name
        self.record = tmp_path / f"{name}.jsonl"
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "POD_NAME": f"storage-{name}",
            "POD_NAMESPACE": NS,
            "LEASE_TEST_RECORD": str(self.record),
            "SIGNET_STORAGE_HOME": str(tmp_path / name),
            "SIGNET_STORAGE_LEASE_NAME": lease_name,
            "SIGNET_STORAGE_KUBE_API_URL": kube.url,
            "SIGNET_STORAGE_TREE_HEAD_INTERVAL": "0.02",
            "SIGNET_STORAGE_LEASE_DURATION": str(FAST.lease_duration),
            "SIGNET_STORAGE_LEASE_RENEW_DEADLINE": str(FAST.renew_deadline),
            "SIGNET_STORAGE_LEASE_RETRY_PERIOD": str(FAST.retry_period),
        }
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from tests.storage.test_lease import replica; replica()"],
            cwd=ROOT,
            env=env,
        )

    def events(self) -> list[dict[str, Any]]:
        if not self.record.exists():
            return []
        lines = self.record.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.endswith("}")]

    def role(self) -> str | None:
        roles = [e["event"] for e in self.events() if e["event"] != "publish"]
        return roles[-1] if roles else None

    def intervals(self, end: float) -> list[list[float]]:
        """Leading intervals; one still open when the process died ends at `end`."""
        result: list[list[float]] = []
        for e in self.events():
            if e["event"] == "leader":
                result.append([e["t"], end])
            elif e["event"] in ("standby", "closed") and result and result[-1][1] == end:
                result[-1][1] = e["t"]
        return result

    def publications(self) -> list[float]:
        return [e["t"] for e in self.events() if e["event"] == "publish"]


@pytest.mark.slow
def test_replicas_in_processes_take_turns_and_never_lead_together(
    kube: RunningEmulator, lease_name: str, tmp_path: Path
) -> None:
    a = Replica(kube, lease_name, tmp_path, "a")
    replicas = [a]
    killed = float("inf")
    try:
        wait_until("a leads", lambda: a.role() == "leader", timeout=20)
        b = Replica(kube, lease_name, tmp_path, "b")
        replicas.append(b)
        wait_until("b is a standby", lambda: b.role() == "standby", timeout=20)
        time.sleep(1.5)
        assert b.role() == "standby"
        assert not b.publications()

        a.process.kill()  # a crash: no release, b waits the Lease out
        a.process.wait()
        killed = time.time()
        taken = wait_until("b leads", lambda: b.role() == "leader", timeout=10)
        assert taken - max(a.publications()) >= MARGIN
        assert taken - killed <= FAST.lease_duration + 3 * FAST.retry_period + 1.0

        c = Replica(kube, lease_name, tmp_path, "c")
        replicas.append(c)
        wait_until("c is a standby", lambda: c.role() == "standby", timeout=20)
        time.sleep(1.0)
        assert c.role() == "standby"

        b.process.send_signal(signal.SIGTERM)  # a graceful stop releases the Lease
        stopped = time.time()
        taken = wait_until("c leads", lambda: c.role() == "leader", timeout=10)
        assert taken - stopped < FAST.lease_duration  # no need to wait the Lease out
        wait_until("c publishes", lambda: bool(c.publications()))
        assert b.process.wait(timeout=10) == 0
    finally:
        for r in replicas:
            if r.process.poll() is None:
                r.process.send_signal(signal.SIGTERM)
                r.process.wait(timeout=10)
    intervals = {
        r.name: r.intervals(killed if r is a else float("inf"))
        for r in replicas  # a was killed while leading: its interval ends at the kill
    }
    assert [len(intervals[n]) for n in "abc"] == [1, 1, 1]
    assert_disjoint(intervals)
    for r in replicas:  # each publication happened while that replica led
        for t in r.publications():
            assert any(start - 0.1 <= t <= stop_ for start, stop_ in intervals[r.name]), (
                f"{r.name} published at {t:.3f} outside {intervals[r.name]}"
            )
