"""The TSA's clock check: stamps issued or refused over real HTTP, readiness following.

The kernel's status is injected (`Reading`, behind the `ClockReader` protocol) because
this machine's clock is whatever the test host's is; one test reads the real kernel
status and only checks that it parses.  NTP references are real: a minimal SNTP
server on loopback UDP (tests/support/sntp.py) answers `ntplib`'s queries.
"""

from __future__ import annotations

import hashlib
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from asn1crypto import tsp
from signet.signer import metrics
from signet.signer.pki.tables import TimeStatusRecord
from signet.signer.pki.timesource import (
    ClockReading,
    KernelClock,
    ReferenceWatch,
    TimeGuard,
    TimeState,
    TimeTrust,
    split_reference,
)
from signet.signer.service import SignerService
from sqlalchemy import select

from tests.signer.conftest import sign_via_api
from tests.support.pdfs import make_pdf
from tests.support.sntp import SntpServer

ACCURACY_MS = 500


@dataclass
class Reading:
    """An injected kernel answer (what `adjtimex` would say)."""

    synchronised: bool = True
    estimated_error_us: int | None = 2_000
    reads: int = 0

    def read(self) -> ClockReading:
        self.reads += 1
        detail = "" if self.synchronised else "injected: unsynchronised"
        return ClockReading(self.synchronised, self.estimated_error_us, detail)


class Monotonic:
    """A monotonic clock the test advances (reference expiry without waiting a minute)."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


Install = Callable[..., TimeGuard]


@pytest.fixture
def install_guard(signer_service: SignerService) -> Iterator[Install]:
    """Put a time check of the test's making into the live signer (the TSA and readiness),
    and the session's own back afterwards."""
    tsa = signer_service.tsa
    original_tsa, original_service = tsa.time, signer_service.time

    def install(**options: object) -> TimeGuard:
        guard = TimeGuard(
            **{"trust": TimeTrust.KERNEL, "accuracy_ms": ACCURACY_MS, "interval_s": 0, **options}  # type: ignore[arg-type]
        )
        tsa.time = guard
        signer_service.__dict__["time"] = guard
        return guard

    yield install
    tsa.time = original_tsa
    signer_service.__dict__["time"] = original_service


def _query(digest: bytes | None = None) -> bytes:
    request: bytes = tsp.TimeStampReq(
        {
            "version": 1,
            "message_imprint": {
                "hash_algorithm": {"algorithm": "sha256"},
                "hashed_message": digest or hashlib.sha256(b"contract").digest(),
            },
            "cert_req": True,
        }
    ).dump()
    return request


def _stamp(signer_url: str) -> httpx.Response:
    return httpx.post(
        f"{signer_url}/tsa",
        content=_query(),
        headers={"Content-Type": "application/timestamp-query"},
    )


def _readiness(signer_url: str) -> dict[str, object]:
    response = httpx.get(f"{signer_url}/readyz")
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def _granted(response: httpx.Response) -> tsp.TSTInfo:
    assert response.status_code == 200, response.text
    reply = tsp.TimeStampResp.load(response.content)
    assert reply["status"]["status"].native == "granted"
    info: tsp.TSTInfo = reply["time_stamp_token"]["content"]["encap_content_info"]["content"].parsed
    return info


def _refused(response: httpx.Response, *words: str) -> str:
    assert response.status_code == 503, response.text
    body = response.json()
    assert set(body) == {"error", "detail"} and body["error"] == "clock_unsynchronised"
    detail: str = body["detail"]
    for word in words:
        assert word in detail, detail
    return detail


def test_a_synchronised_clock_stamps_and_readiness_says_so(
    signer_url: str, install_guard: Install
) -> None:
    install_guard(clock=Reading(True, 2_000))
    info = _granted(_stamp(signer_url))
    assert info["accuracy"]["millis"].native == ACCURACY_MS
    ready = _readiness(signer_url)
    assert ready["time"] == "synchronised" and ready["time_source"] == "kernel"
    assert ready["time_estimated_error_ms"] == 2.0 and ready["time_accuracy_ms"] == ACCURACY_MS
    assert "time_problem" not in ready and "time_reference_offset_ms" not in ready
    assert metrics.TIME_SYNCHRONISED._value.get() == 1


def test_an_unsynchronised_clock_is_refused_with_503(
    signer_url: str, install_guard: Install
) -> None:
    refused_before = metrics.CLOCK_REFUSED._value.get()
    granted_before = metrics.GRANTED._value.get()
    install_guard(clock=Reading(False, 16_000_000))
    _refused(_stamp(signer_url), "unsynchronised")
    assert metrics.CLOCK_REFUSED._value.get() == refused_before + 1
    assert metrics.GRANTED._value.get() == granted_before
    ready = _readiness(signer_url)  # still ready (OCSP, CRLs, B-B go on); it says why
    assert ready["status"] == "ready" and ready["time"] == "unsynchronised"
    assert ready["time_estimated_error_ms"] == 16_000.0
    assert "unsynchronised" in str(ready["time_problem"])
    assert metrics.TIME_SYNCHRONISED._value.get() == 0


def test_an_error_above_the_accuracy_is_refused(signer_url: str, install_guard: Install) -> None:
    clock = Reading(True, 600_000)  # synchronised, but ±600 ms > 500 ms claimed
    install_guard(clock=clock)
    _refused(_stamp(signer_url), "600 ms exceeds the declared accuracy 500 ms")
    assert _readiness(signer_url)["time"] == "unsynchronised"
    clock.estimated_error_us = 499_000  # within: stamps again, nothing to restart
    _granted(_stamp(signer_url))
    clock.estimated_error_us = None
    _refused(_stamp(signer_url), "unknown")


def test_a_signature_needing_a_timestamp_is_refused_not_weakened(
    signer_client: httpx.Client, issue: Callable[..., str], install_guard: Install
) -> None:
    """B-T needs a stamp: 503 clock_unsynchronised, never a B-B in its place; B-B goes on."""
    serial = issue("Chen Jing")
    install_guard(clock=Reading(False, None))
    refused = sign_via_api(signer_client, make_pdf(1), serial, level="B-T")
    _refused(refused)
    plain = sign_via_api(signer_client, make_pdf(1), serial, level="B-B")
    assert plain.status_code == 200, plain.text


def test_trusted_host_stamps_unchecked_and_says_so(signer_url: str, install_guard: Install) -> None:
    clock = Reading(False, None)
    install_guard(trust=TimeTrust.TRUSTED_HOST, clock=clock)
    _granted(_stamp(signer_url))
    ready = _readiness(signer_url)
    assert ready["time"] == "trusted-host" and ready["time_source"] == "trusted-host"
    assert ready["time_estimated_error_ms"] is None
    assert clock.reads == 0  # the kernel is not even asked


def test_the_verdict_is_cached_for_its_interval() -> None:
    clock, now = Reading(True, 1_000), Monotonic()
    guard = TimeGuard(TimeTrust.KERNEL, ACCURACY_MS, clock=clock, interval_s=1.0, monotonic=now)
    for _ in range(1_000):
        guard.require()
    assert clock.reads == 1
    clock.synchronised = False
    now.now += 0.5
    guard.require()  # still the cached verdict
    now.now += 0.6
    with pytest.raises(Exception, match="unsynchronised") as raised:
        guard.require()
    assert getattr(raised.value, "code", None) == "clock_unsynchronised"
    assert clock.reads == 2


def test_the_kernel_status_of_this_machine_parses() -> None:
    kernel = KernelClock().kernel_status()
    reading = KernelClock().read()
    print(  # the point of the test: show what this machine's kernel says
        f"\nadjtimex: state={kernel.state} status={kernel.status:#x} "
        f"esterror={kernel.estimated_error_us}us maxerror={kernel.maximum_error_us}us "
        f"tai={kernel.tai} -> synchronised={reading.synchronised} {reading.detail}"
    )
    assert 0 <= kernel.state <= 5
    assert kernel.estimated_error_us >= 0 and kernel.maximum_error_us >= 0
    assert reading.estimated_error_us == kernel.estimated_error_us


def test_split_reference() -> None:
    assert split_reference("ntp.example.com") == ("ntp.example.com", 123)
    assert split_reference("127.0.0.1:1234") == ("127.0.0.1", 1234)
    assert split_reference("[::1]:5123") == ("::1", 5123)
    assert split_reference("[fe80::1]") == ("fe80::1", 123)


@pytest.fixture
def sntp() -> Iterator[SntpServer]:
    with SntpServer() as server:
        yield server


def _watched(server: SntpServer, now: Monotonic) -> ReferenceWatch:
    return ReferenceWatch([server.address], timeout_s=0.5, monotonic=now)


def test_a_reference_within_accuracy_lets_stamps_through_with_its_offset(
    signer_url: str, install_guard: Install, sntp: SntpServer
) -> None:
    now = Monotonic()
    watch = _watched(sntp, now)
    install_guard(clock=Reading(True, 1_000), references=watch, monotonic=now)
    sntp.offset_s = 0.120  # the reference is 120 ms ahead of us
    watch.poll()
    assert sntp.queries == 1
    _granted(_stamp(signer_url))
    ready = _readiness(signer_url)
    assert ready["time"] == "synchronised" and ready["time_references"] == [sntp.address]
    offset = ready["time_reference_offset_ms"]
    assert isinstance(offset, float) and 100 < offset < 140, offset
    assert "time_warning" not in ready
    measured = metrics.REFERENCE_OFFSET.labels(sntp.address)._value.get()
    assert 0.100 < measured < 0.140

    sntp.offset_s = -0.450  # 90 % of the accuracy: a warning, still stamping
    watch.poll()
    _granted(_stamp(signer_url))
    assert "near the declared accuracy" in str(_readiness(signer_url)["time_warning"])


def test_a_reference_offset_beyond_accuracy_refuses(
    signer_url: str, install_guard: Install, sntp: SntpServer
) -> None:
    now = Monotonic()
    watch = _watched(sntp, now)
    install_guard(clock=Reading(True, 1_000), references=watch, monotonic=now)
    sntp.offset_s = 0.800
    watch.poll()
    _refused(_stamp(signer_url), "off reference", "beyond the declared accuracy 500 ms")
    ready = _readiness(signer_url)
    assert ready["time"] == "unsynchronised"
    assert 780 < float(str(ready["time_reference_offset_ms"])) < 820


def test_a_reference_silent_past_its_expiry_refuses(
    signer_url: str, install_guard: Install, sntp: SntpServer
) -> None:
    now = Monotonic()
    watch = _watched(sntp, now)
    install_guard(
        clock=Reading(True, 1_000), references=watch, monotonic=now, reference_expiry_s=64
    )
    watch.poll()
    _granted(_stamp(signer_url))
    sntp.silent = True
    now.now += 30
    watch.poll()  # no answer: the last good one still counts, for its expiry
    _granted(_stamp(signer_url))
    now.now += 40  # 70 s since the last answer
    _refused(_stamp(signer_url), "no time reference answered within its expiry", "no answer")
    sntp.silent = False
    watch.poll()
    _granted(_stamp(signer_url))


def test_a_reference_in_alarm_counts_as_no_answer(
    signer_url: str, install_guard: Install, sntp: SntpServer
) -> None:
    now = Monotonic()
    watch = _watched(sntp, now)
    install_guard(clock=Reading(True, 1_000), references=watch, monotonic=now)
    sntp.leap = 3
    watch.poll()
    _refused(_stamp(signer_url), "leap indicator 3")
    sntp.leap, sntp.stratum = 0, 0  # stratum 0: a kiss-o'-death, not a time
    watch.poll()
    _refused(_stamp(signer_url), "stratum 0")


def test_the_watch_polls_in_the_background(sntp: SntpServer) -> None:
    watch = ReferenceWatch([sntp.address], interval_s=0.05, timeout_s=0.5)
    watch.start()
    try:
        # the first poll is done by start() itself: a stamp right after has an answer
        assert watch.readings()[0].offset_s is not None
        guard = TimeGuard(TimeTrust.TRUSTED_HOST, ACCURACY_MS, references=watch, interval_s=0)
        for _ in range(100):
            if sntp.queries >= 2 and guard.status().state is TimeState.TRUSTED_HOST:
                break
            time.sleep(0.05)
        assert sntp.queries >= 2
        assert guard.status().reference_offset_ms is not None
    finally:
        watch.stop()


def test_openssl_shows_the_accuracy_and_policy(
    signer_url: str, ca_files: Path, tmp_path: Path
) -> None:
    reply = tmp_path / "resp.tsr"
    reply.write_bytes(_stamp(signer_url).content)
    text = subprocess.run(
        ["openssl", "ts", "-reply", "-in", str(reply), "-text"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    assert "Status: Granted." in text
    assert "Policy OID: 2.25.258957351307187465095418553474553367133.2.1" in text
    assert "Accuracy: unspecified seconds, 0x01F4 millis, unspecified micros" in text
    # The TSA certificate names the same policy, and OpenSSL still verifies the token.
    certificate = subprocess.run(
        ["openssl", "x509", "-in", str(ca_files / "tsa.pem"), "-noout", "-text"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    assert "Policy: 2.25.258957351307187465095418553474553367133.2.1" in certificate
    verified = subprocess.run(
        [
            "openssl",
            "ts",
            "-verify",
            "-digest",
            hashlib.sha256(b"contract").hexdigest(),
            "-in",
            str(reply),
            "-CAfile",
            str(ca_files / "chain.pem"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert verified.stdout.strip() == "Verification: OK", verified.stderr


def test_the_status_a_token_was_stamped_under_is_in_the_registry(
    signer_url: str, signer_service: SignerService, install_guard: Install
) -> None:
    journal = signer_service.time_journal
    clock, now = Reading(True, 3_000), Monotonic()
    install_guard(clock=clock, monotonic=now, record=journal.record, record_every_s=60)
    first = _granted(_stamp(signer_url))["gen_time"].native
    recorded = journal.at(first)
    assert recorded is not None and recorded.state == "synchronised"
    assert recorded.source == "kernel" and recorded.estimated_error_ms == 3.0
    assert recorded.accuracy_ms == ACCURACY_MS and recorded.reference_offset_ms is None
    clock.estimated_error_us = 4_000  # drift alone: no new row within the minute
    now.now += 5
    second = _granted(_stamp(signer_url))["gen_time"].native
    same = journal.at(second)
    assert same is not None and same.id == recorded.id
    now.now += 60  # a minute on: the current figure is written again
    third = _granted(_stamp(signer_url))["gen_time"].native
    fresh = journal.at(third)
    assert fresh is not None and fresh.id > recorded.id and fresh.estimated_error_ms == 4.0
    clock.synchronised = False  # a change: recorded at once, with why
    now.now += 1
    _refused(_stamp(signer_url))
    with signer_service.registry.session() as session:
        newest = session.scalars(
            select(TimeStatusRecord).order_by(TimeStatusRecord.id.desc()).limit(1)
        ).one()
    assert newest.state == "unsynchronised" and "injected" in newest.problem
    assert journal.at(first) is not None and journal.at(first).id == recorded.id  # type: ignore[union-attr]
