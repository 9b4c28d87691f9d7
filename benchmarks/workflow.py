"""Workflow benchmark: complete two-party envelopes per second through the portal's API,
beside the signer's own `POST /v1/sign` B-T rate measured in the same run.

Run from the repository root: `.venv/bin/python -m benchmarks workflow` (BENCH_N
scales the sample sizes).  It starts `signet up` in a fresh home (three processes,
the signer with one worker) and plays each envelope as `signet demo` does: create
with one contract, send, then each of two signers in order opens the link, passes
the identity code, asks for the activation and signs; the last signature completes
the envelope (B-LTA, certificate of completion, evidence sealed) before its request
returns.  Codes are read from the held outboxes; that reading is not timed.

The ratio the issue asks for: envelopes/s x signatures per envelope / signer B-T
rate (how much of the machine the workflow leaves to signing).  The signing step
(activation + sign, as the signing page calls them) is timed per recipient with
`THREADS` envelopes in flight; the table gives p50/p95 for the first signer's step
(a signature) and for the last one's (a signature and the whole completion).
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil
from signet.cli.demo import Demo, contract_pdf, handwriting, signer_code

from tests.support.appliance import running_appliance

N = int(os.environ.get("BENCH_N", "24"))
THREADS = int(os.environ.get("BENCH_THREADS", "8"))
SERVICES = ("signer", "storage", "portal")


def _story(tag: str) -> dict[str, object]:
    return {
        "title": f"Benchmark {tag}",
        "recipients": [
            {"name": "First Signer", "email": f"first-{tag}@bench.example", "group": 0},
            {"name": "Second Signer", "email": f"second-{tag}@bench.example", "group": 1},
        ],
        "fields": [
            {"document": 0, "recipient": r, "kind": "signature", "page": 1, "x": 50 + 250 * r,
             "y": 100, "width": 160, "height": 50}
            for r in (0, 1)
        ],
    }  # fmt: skip


class Run:
    def __init__(self, demo: Demo) -> None:
        self.demo = demo
        self.pdf = contract_pdf("Benchmark", 1)
        self.image = base64.b64encode(handwriting()).decode()
        self.phases: dict[str, list[float]] = defaultdict(list)
        self.lock = threading.Lock()

    def _time(self, phase: str, started: float) -> None:
        with self.lock:
            self.phases[phase].append(time.perf_counter() - started)

    def envelope(self, number: int) -> None:
        demo, tag = self.demo, f"{number}-{time.time_ns()}"
        started = time.perf_counter()
        created = demo.admin.post(
            "/api/v1/envelopes", data={"envelope": json.dumps(_story(tag))},
            files=[("documents", ("contract.pdf", self.pdf, "application/pdf"))],
        )  # fmt: skip
        created.raise_for_status()
        envelope_id = created.json()["id"]
        demo.admin.post(f"/api/v1/envelopes/{envelope_id}/send").raise_for_status()
        self._time("create + send", started)
        for which in ("first", "second"):
            to = f"{which}-{tag}@bench.example"
            link = demo._held(envelope_id, to, r"/s/([A-Za-z0-9_-]+)")
            base = f"/api/v1/links/{link}"
            started = time.perf_counter()
            demo.person.post(f"{base}/identity/code").raise_for_status()
            self._time("identity code sent", started)
            code = demo._held(envelope_id, to, r"\b(\d{6})\b", notice="identity_code")
            started = time.perf_counter()
            demo.person.post(f"{base}/identity/verify", json={"code": code}).raise_for_status()
            self._time("identity verified", started)
            started = time.perf_counter()
            asked = demo.person.post(f"{base}/activation")
            asked.raise_for_status()
            activation = asked.json()["activation_id"]
            asking = time.perf_counter() - started
            code = signer_code(activation)
            started = time.perf_counter()
            signed = demo.person.post(f"{base}/sign", json={
                "activation_id": activation, "code": code, "image": self.image})  # fmt: skip
            signed.raise_for_status()
            signing = time.perf_counter() - started
            with self.lock:
                self.phases[f"signing step, {which} signer"].append(asking + signing)
                self.phases[f"  of which sign, {which} signer"].append(signing)
        if signed.json()["envelope_status"] != "completed":
            raise RuntimeError(f"{envelope_id} is {signed.json()['envelope_status']}")


def _signer_rate(port: int, token: str, n: int) -> float:
    pdf = contract_pdf("Benchmark", 1)
    options = json.dumps({"key_label": "signet-default-seal", "level": "B-T"})
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60,
                          headers={"Authorization": f"Bearer {token}"})  # fmt: skip

    def once(_: int) -> None:
        client.post("/v1/sign", files={"document": ("d.pdf", pdf, "application/pdf")},
                    data={"options": options}).raise_for_status()  # fmt: skip

    once(0)
    started = time.perf_counter()
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(once, range(n)))
    client.close()
    return n / (time.perf_counter() - started)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class PeakRss:
    """Each service's resident memory, sampled while the benchmark runs."""

    def __init__(self, up: psutil.Process) -> None:
        self.up = up
        self.peak: dict[str, int] = defaultdict(int)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            for child in self.up.children():
                line = " ".join(child.cmdline())
                name = next((m for m in SERVICES if f"signet.{m}.app" in line), None)
                if name is None:
                    continue
                try:
                    rss = child.memory_info().rss + sum(
                        c.memory_info().rss for c in child.children(recursive=True)
                    )
                except psutil.Error:
                    continue
                self.peak[name] = max(self.peak[name], rss)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="signet-bench-workflow-")) / "home"
    os.environ["SIGNET_HOME"] = str(home)  # where signer_code reads the held codes
    with running_appliance(home) as appliance:
        token = (home / "service-token").read_text().strip()
        demo = Demo(appliance.portal_url, appliance.admin_key())
        bt_rate = _signer_rate(appliance.port, token, max(N * 2, 16))
        run = Run(demo)
        run.envelope(-1)  # warm: the first envelope loads fonts, policies, connections
        run.phases.clear()
        with PeakRss(psutil.Process(appliance.process.pid)) as rss:
            started = time.perf_counter()
            with ThreadPoolExecutor(THREADS) as pool:
                list(pool.map(run.envelope, range(N)))
            wall = time.perf_counter() - started
        demo.close()
    envelopes = N / wall
    ratio = envelopes * 2 / bt_rate
    print(f"{N} two-party envelopes, {THREADS} in flight, on {os.cpu_count()} cores")
    print(f"{'measure':<40} {'value':>12}")
    print(f"{'signer POST /v1/sign B-T (seal), /s':<40} {bt_rate:>12.1f}")
    print(f"{'envelopes completed, /s':<40} {envelopes:>12.2f}")
    print(f"{'ratio envelopes x 2 / B-T rate':<40} {ratio:>12.3f}   (goal >= 0.1, aim 0.25)")
    print(f"{'phase (ms)':<40} {'p50':>12} {'p95':>8}")
    for phase, values in run.phases.items():
        p50, p95 = _percentile(values, 0.5) * 1000, _percentile(values, 0.95) * 1000
        print(f"{phase:<40} {p50:>12.0f} {p95:>8.0f}")
    for name, peak in sorted(rss.peak.items()):
        print(f"{'peak RSS ' + name + ' (MiB)':<40} {peak / 2**20:>12.0f}")
