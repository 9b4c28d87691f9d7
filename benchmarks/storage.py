"""Storage benchmark: our vault API beside the raw `minio` client on the same S3 server,
the ledger's append rate, and proof latency at a million leaves.

Run from the repository root: `make bench` (all suites) or
`.venv/bin/python -m benchmarks storage`.  BENCH_N scales the sample sizes.
The S3 server is SeaweedFS on loopback, started here (see tests/support/seaweed.py).

The comparison is kept fair: both sides use urllib3 with 8 threads and pooled
connections (the raw client reads each GET to its end, so its connection is
reused, as our vault's is), the raw PUT carries the same metadata and COMPLIANCE
retention as the vault's, and raw and API runs alternate for three rounds (the
table shows medians and each round's ratio), since the machine is shared.
For context, one more row sets our PUT beside a raw client that sends the vault's
own write-once PUT (``If-None-Match: *`` and the SHA-256 checksum), and every
comparison prints the CPU time per operation of each process (store, our server,
client): on a saturated machine the rates' ratio tends to the ratio of the totals.
Our server runs as `signet storage serve` does, with spliced GET bodies
(`signet.storage.api.splice`); BENCH_HTTP=httptools runs plain uvicorn instead, the
body relayed through Python, for a before/after in the same load window.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psutil
import urllib3

from tests.support.seaweed import S3Server, start_seaweedfs, stop

N = int(os.environ.get("BENCH_N", "200"))
THREADS = 8
#: Alternating raw/API runs per comparison; the table shows medians.
ROUNDS = 3
RETAIN_UNTIL = datetime(2040, 1, 1, tzinfo=UTC)
#: uvicorn's HTTP protocol for our server, as `signet storage serve` runs it; BENCH_HTTP
#: overrides it (``httptools``: uvicorn's own, without the spliced GET bodies).
HTTP = os.environ.get("BENCH_HTTP", "signet.storage.api.splice:SpliceProtocol")


def rate(once: Callable[[int], object], n: int, threads: int = THREADS) -> float:
    once(0)
    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(once, range(1, n + 1)))
    return n / (time.perf_counter() - start)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class StorageServer:
    def __init__(self, work: Path, s3: S3Server, bucket: str) -> None:
        self.port = _free_port()
        self.token = uuid.uuid4().hex
        env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNET_")}
        env |= {
            "SIGNET_STORAGE_HOME": str(work / "storage"),
            "SIGNET_STORAGE_VAULT": "s3",
            "SIGNET_STORAGE_S3_ENDPOINT": s3.endpoint,
            "SIGNET_STORAGE_S3_ACCESS_KEY": s3.access_key,
            "SIGNET_STORAGE_S3_SECRET_KEY": s3.secret_key,
            "SIGNET_STORAGE_S3_BUCKET": bucket,
            "SIGNET_STORAGE_SERVICE_TOKEN": self.token,
            "SIGNET_STORAGE_TREE_HEAD_INTERVAL": "0",
        }
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "signet.storage.app:create_app",
                "--factory",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
                *(["--http", HTTP] if HTTP else []),
            ],
            env=env,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.peak = 0
        self._stop = threading.Event()
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        process = psutil.Process(self.process.pid)
        while not self._stop.wait(0.02):
            try:
                self.peak = max(self.peak, process.memory_info().rss)
            except psutil.Error:
                return

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url,
            timeout=300,
            headers={"Authorization": f"Bearer {self.token}"},
            limits=httpx.Limits(max_connections=32),
        )

    def close(self) -> None:
        self._stop.set()
        self.process.terminate()
        self.process.wait(timeout=20)


def _interleaved(
    raw_once: Callable[[int], object],
    api_once: Callable[[int], object],
    count: int,
    processes: dict[str, psutil.Process],
) -> tuple[float, float, list[float], str]:
    """Median rates of `ROUNDS` alternating runs, each round's ratio, and the CPU split.

    The machine is shared: alternating raw and API runs exposes both to the same
    background load, and the median discards a round disturbed by someone else.
    The split is the median CPU time per operation of each process (the store, our
    server, this client), which background load changes far less than a rate: on a
    saturated machine the ratio of the totals is what the rates' ratio tends to.
    """
    raw_rates, api_rates = [], []
    cpu: dict[str, dict[str, list[float]]] = {"raw": {}, "api": {}}
    for _ in range(ROUNDS):
        for side, once, rates in (("raw", raw_once, raw_rates), ("api", api_once, api_rates)):
            before = {name: _cpu(p) for name, p in processes.items()}
            rates.append(rate(once, count))
            for name, p in processes.items():
                spent = (_cpu(p) - before[name]) / (count + 1) * 1000
                cpu[side].setdefault(name, []).append(spent)
    ratios = [a / r for a, r in zip(api_rates, raw_rates, strict=True)]
    split = []
    for side in ("raw", "api"):
        parts = {name: statistics.median(v) for name, v in cpu[side].items()}
        shown = " + ".join(f"{name} {ms:.2f}" for name, ms in parts.items() if ms >= 0.005)
        split.append(f"{side} {shown} = {sum(parts.values()):.2f}")
    return (
        statistics.median(raw_rates),
        statistics.median(api_rates),
        ratios,
        "CPU ms/op " + "; ".join(split),
    )


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def vault_rows(s3: S3Server, work: Path, store_pid: int) -> list[tuple[str, float, str]]:
    from minio import Minio
    from minio.commonconfig import COMPLIANCE
    from minio.retention import Retention

    raw = Minio(s3.endpoint, access_key=s3.access_key, secret_key=s3.secret_key, secure=False)
    raw_bucket = f"raw-{uuid.uuid4().hex[:12]}"
    raw.make_bucket(raw_bucket, object_lock=True)
    server = StorageServer(work, s3, f"api-{uuid.uuid4().hex[:12]}")
    processes = {
        "store": psutil.Process(store_pid),
        "server": psutil.Process(server.process.pid),
        "client": psutil.Process(),
    }
    client = server.client()
    # The same HTTP client stack as the minio client (urllib3), so the ratio measures
    # our service, not the difference between Python HTTP clients.
    pool = urllib3.PoolManager(maxsize=THREADS * 2)
    auth = {"Authorization": f"Bearer {server.token}"}
    rows = []
    try:
        # Enough operations that a round lasts about a second: a shorter one measures
        # the scheduler of a shared machine more than either client.
        for label, size, count, get_count in (
            ("100 KB", 100 * 1024, N * 10, N * 10),
            ("10 MB", 10 * 1024 * 1024, max(N // 2, 16), N * 2),
        ):
            payloads = [os.urandom(size) for _ in range(min(count, 64) + 1)]
            raw_names: list[str] = []
            api_names: list[str] = []

            def raw_put(
                i: int, payloads: list[bytes] = payloads, names: list[str] = raw_names
            ) -> object:
                # The S3 request the vault itself makes: COMPLIANCE retention and metadata.
                data = payloads[i % len(payloads)] + i.to_bytes(8, "big") + os.urandom(8)
                name = f"objects/{uuid.uuid4().hex}"
                result = raw.put_object(
                    raw_bucket,
                    name,
                    io.BytesIO(data),
                    len(data),
                    metadata={"signet-kind": "original", "signet-created": "2026-01-01"},
                    retention=Retention(COMPLIANCE, RETAIN_UNTIL),
                )
                names.append(name)
                return result

            def api_put(
                i: int, payloads: list[bytes] = payloads, names: list[str] = api_names
            ) -> str:
                data = payloads[i % len(payloads)] + i.to_bytes(8, "big") + os.urandom(8)
                response = pool.request("PUT", f"{server.url}/v1/objects", body=data, headers=auth)
                assert response.status in (200, 201), response.data[:200]
                sha256 = str(json.loads(response.data)["sha256"])
                names.append(sha256)
                return sha256

            def raw_put_once(
                i: int, payloads: list[bytes] = payloads, names: list[str] = raw_names
            ) -> object:
                # For context: the write-once PUT the vault itself sends (If-None-Match,
                # the SHA-256 checksum the store verifies), from the raw client.
                data = payloads[i % len(payloads)] + i.to_bytes(8, "big") + os.urandom(8)
                digest = hashlib.sha256(data)
                name = f"objects/{digest.hexdigest()}"
                headers = {
                    "x-amz-meta-signet-kind": "original",
                    "x-amz-meta-signet-created": "2026-01-01",
                    "x-amz-object-lock-mode": COMPLIANCE,
                    "x-amz-object-lock-retain-until-date": "2040-01-01T00:00:00.000Z",
                    "Content-Type": "application/octet-stream",
                    "x-amz-checksum-sha256": base64.b64encode(digest.digest()).decode(),
                    "If-None-Match": "*",
                }
                result = raw._execute("PUT", raw_bucket, name, body=data, headers=headers)
                names.append(name)
                return result

            raw_rate, api_rate, ratios, cpu = _interleaved(raw_put, api_put, count, processes)
            rows.append(_vault_row(f"PUT {label} objects/s", raw_rate, api_rate, ratios, size, cpu))
            if size <= 1024 * 1024:
                raw_rate, api_rate, ratios, cpu = _interleaved(
                    raw_put_once, api_put, count, processes
                )
                rows.append(
                    _vault_row(
                        f"PUT {label}, raw side also write-once (context)",
                        raw_rate,
                        api_rate,
                        ratios,
                        size,
                        cpu,
                    )
                )

            def raw_get(i: int, names: list[str] = raw_names[:64]) -> int:
                response = raw.get_object(raw_bucket, names[i % len(names)])
                data = response.read()  # read to the end: the connection goes back to the pool
                response.release_conn()
                return len(data)

            def api_get(i: int, names: list[str] = api_names[:64]) -> int:
                response = pool.request(
                    "GET", f"{server.url}/v1/objects/{names[i % len(names)]}", headers=auth
                )
                assert response.status == 200
                return len(response.data)

            raw_rate, api_rate, ratios, cpu = _interleaved(raw_get, api_get, get_count, processes)
            rows.append(_vault_row(f"GET {label} objects/s", raw_rate, api_rate, ratios, size, cpu))
        for label, size in (("1 MB", 2**20), ("200 MB", 200 * 2**20)):
            path = work / f"upload-{label}.bin"
            with path.open("wb") as handle:
                for _ in range(size // 2**20):
                    handle.write(os.urandom(2**20))
            server.peak = 0
            time.sleep(0.1)
            start = time.perf_counter()
            with path.open("rb") as handle:
                client.put("/v1/objects", content=handle).raise_for_status()
            elapsed = time.perf_counter() - start
            rows.append(
                (
                    f"PUT one {label} upload, server peak RSS",
                    size / 2**20 / elapsed,
                    f"MB/s; peak RSS {server.peak / 2**20:.0f} MiB",
                )
            )
    finally:
        client.close()
        server.close()
    return rows


def _vault_row(
    what: str, raw_rate: float, api_rate: float, ratios: list[float], size: int, cpu: str
) -> tuple[str, float, str]:
    rounds = ", ".join(f"{r:.2f}" for r in ratios)
    return (
        what,
        api_rate,
        f"raw minio {raw_rate:.1f}/s = {api_rate / raw_rate:.2f}x (rounds {rounds}); "
        f"{api_rate * size / 2**20:.1f} MB/s; {cpu}",
    )


def ledger_rows(work: Path) -> list[tuple[str, float, str]]:
    from signet.common.contracts.storage import LedgerEventIn
    from signet.storage.fs_vault import FilesystemVault
    from signet.storage.ledger import Ledger
    from signet.storage.merkle import MerkleTree, leaf_hash

    ledger = Ledger(FilesystemVault(work / "ledger-vault", retention_years=5))
    event = LedgerEventIn(
        event_type="document.signed",
        envelope_id="env-1",
        actor="a@example.com",
        ip="10.0.0.1",
        user_agent="bench",
        document_hashes=["ab" * 32],
        auth_method="otp",
    )
    count = N * 250
    start = time.perf_counter()
    futures = [ledger.append(event) for _ in range(count)]
    wait(futures)
    appended = count / (time.perf_counter() - start)
    ledger.close()
    rows = [
        (
            "ledger appends/s, in-process, many writers (durable in the vault)",
            appended,
            "goal >= 10,000/s",
        )
    ]

    tree = MerkleTree()
    start = time.perf_counter()
    for i in range(1_000_000):
        tree.append(leaf_hash(i.to_bytes(8, "big")))
    built = time.perf_counter() - start
    samples = []
    for index in random.Random(1).sample(range(1_000_000), 2000):
        t = time.perf_counter()
        tree.inclusion_proof(index)
        samples.append((time.perf_counter() - t) * 1000)
    samples.sort()
    rows.append(
        (
            "inclusion proof at 10^6 leaves, p50 ms",
            statistics.median(samples),
            f"p99 {samples[int(len(samples) * 0.99)]:.3f} ms; goal < 5 ms; "
            f"tree built in {built:.1f} s",
        )
    )
    samples = []
    for first in random.Random(2).sample(range(1, 1_000_000), 500):
        t = time.perf_counter()
        tree.consistency_proof(first)
        samples.append((time.perf_counter() - t) * 1000)
    samples.sort()
    rows.append(
        (
            "consistency proof at 10^6 leaves, p50 ms",
            statistics.median(samples),
            f"p99 {samples[int(len(samples) * 0.99)]:.3f} ms",
        )
    )
    return rows


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="signet-storage-bench-"))
    try:
        (work / "seaweedfs").mkdir()
        s3, process = start_seaweedfs(work / "seaweedfs")
        try:
            rows = vault_rows(s3, work, process.pid)
        finally:
            stop(process)
        rows += ledger_rows(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # gigabytes of objects and uploads
    print(f"\n{'what':66} {'value':>10}  notes")
    for what, value, note in rows:
        print(
            f"{what:66} {value:10.1f}  {note}"
            if value >= 10
            else f"{what:66} {value:10.3f}  {note}"
        )


if __name__ == "__main__":
    main()
