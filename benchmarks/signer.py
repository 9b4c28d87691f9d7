"""Signer benchmark: our engine, API, batches and TSA beside Documenso's engine and pyHanko.

Run from the repository root: `make bench` (all suites) or
`.venv/bin/python -m benchmarks signer`.  BENCH_N scales the sample sizes.
`BENCH_SIGNER_ONLY=batches` runs only the `/v1/batches` cases (BENCH_REPEAT
times, default 3), each round beside the Documenso peer measured right before it
(BENCH_PEER_N signatures), with the median of the rounds: the quick loop for batch work.
`BENCH_SIGNER_ONLY=engine` runs only the in-process engine on one core (BENCH_REPEAT
times) beside the peer: the quick loop for engine work; BENCH_ENGINE_PROCESSES=1
adds the multi-process and `signet seal-batch` rows once.

Every rate is printed with its ratio to Documenso's engine (`@documenso/pdf-sign`,
Rust via N-API, adbe.pkcs7.detached with an EC P-256 software key) measured in
the same run on the same PDF, by `../shared/peers/sign-bench.mjs`.  The peer's
npm packages are installed into a temporary folder from the npm registry the
machine is configured with; without Node.js or that registry, the peer column
says so and the other figures still print.

Our figures use an HSM key (SoftHSM, EC P-256) and make PAdES (ETSI.CAdES.detached
with signing-certificate-v2); the PDFs have classic xref tables because the
peer's placeholder code cannot read xref streams.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from tests.support.pdfs import make_pdf

N = int(os.environ.get("BENCH_N", "200"))
ROOT = Path(__file__).resolve().parent.parent
PEER_SCRIPT = ROOT.parent / "shared" / "peers" / "sign-bench.mjs"
PEER_PACKAGES = [
    "@documenso/pdf-sign@0.1.0",
    "@signpdf/signpdf@3.3.0",
    "@signpdf/utils@3.3.0",
    "@signpdf/placeholder-plain@3.3.0",
    "@signpdf/signer-p12@3.3.0",
]


@dataclass
class Row:
    what: str
    rate: float
    p50_ms: float | None = None
    p99_ms: float | None = None
    peer: str = "documenso 1-page"
    note: str = ""
    #: The peer measured beside this row alone (a batch round); else the run's figure.
    peer_rate: float | None = None


def timed(once: Callable[[], object], n: int, threads: int = 1) -> tuple[float, float, float]:
    """(rate, p50 ms, p99 ms) of `n` calls on `threads` threads after one warm-up call."""
    once()
    latencies: list[float] = []
    lock = threading.Lock()

    def one(_: int) -> None:
        start = time.perf_counter()
        once()
        with lock:
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, range(n)))
    elapsed = time.perf_counter() - start
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return n / elapsed, statistics.median(latencies) * 1000, p99 * 1000


# -- the peers ------------------------------------------------------------------------------


class Peer:
    """Documenso's engine, installed once into `work`; `rate` runs it on one PDF."""

    def __init__(self, work: Path, node: str, prefix: Path) -> None:
        from asn1crypto import pem
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        from tests.support.selfsigned import self_signed

        key = ec.generate_private_key(ec.SECP256R1())
        self.key, self.cert = work / "peer-key.pem", work / "peer-cert.pem"
        self.key.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        self.cert.write_bytes(pem.armor("CERTIFICATE", self_signed(key).dump()))
        self.node = node
        self.env = dict(os.environ, PEERS_NODE_MODULES=str(prefix / "node_modules"))

    @classmethod
    def install(cls, work: Path) -> Peer | None:
        """None when it cannot run (no Node.js, npm, script or registry)."""
        node, npm = shutil.which("node"), shutil.which("npm")
        if not (node and npm and PEER_SCRIPT.exists()):
            return None
        prefix = work / "peers"
        installed = subprocess.run(
            [
                npm,
                "install",
                "--silent",
                "--no-audit",
                "--no-fund",
                "--prefix",
                str(prefix),
                *PEER_PACKAGES,
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if installed.returncode != 0:
            print(f"peer install failed: {installed.stderr.strip()[:300]}", file=sys.stderr)
            return None
        return cls(work, node, prefix)

    def rate(self, pdf: Path, n: int) -> float | None:
        """Signatures/s of `n` signatures of `pdf` after one warm-up, one thread."""
        result = subprocess.run(
            [self.node, str(PEER_SCRIPT), str(pdf), str(self.key), str(self.cert), str(n)],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=600,
        )
        for line in result.stdout.splitlines():
            record = json.loads(line)
            if record["engine"] == "documenso-pdf-sign":
                return float(record["rate_per_s"])
        return None


def peer_rates(peer: Peer | None, pdfs: dict[str, Path], n: int) -> dict[str, float]:
    """Documenso's engine on each PDF: {label: signatures/s}; empty when it cannot run."""
    if peer is None:
        return {}
    rates = {f"documenso {label}": peer.rate(pdf, n) for label, pdf in pdfs.items()}
    return {label: rate for label, rate in rates.items() if rate is not None}


def pyhanko_defaults(pdf: bytes) -> Callable[[], object]:
    """Plain pyHanko `sign_pdf`, default settings, software EC P-256 key."""
    import io

    from asn1crypto import keys
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign import signers
    from pyhanko_certvalidator.registry import SimpleCertificateStore

    from tests.support.selfsigned import self_signed

    key = ec.generate_private_key(ec.SECP256R1())
    cert = self_signed(key)
    signer = signers.SimpleSigner(
        signing_cert=cert,
        signing_key=keys.PrivateKeyInfo.load(
            key.private_bytes(
                serialization.Encoding.DER,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        ),
        cert_registry=SimpleCertificateStore.from_certs([cert]),
    )

    def once() -> object:
        writer = IncrementalPdfFileWriter(io.BytesIO(pdf))
        return signers.sign_pdf(
            writer, signers.PdfSignatureMetadata(field_name="Sig1"), signer=signer
        )

    return once


# -- our engine in-process ------------------------------------------------------------------


def engine_rows(
    home: Path, docs: dict[str, bytes], work: Path, *, one_core_only: bool = False
) -> list[Row]:
    from signet.cli import embedded
    from signet.common.contracts.signer import SignOptions
    from signet.signer.batch.bulk import BulkSealer, SealJob

    service = embedded.signer_service()
    serial = seal_serial(home)
    issued = service.ca.signing_material(serial)
    rows = []
    for label, pdf in docs.items():
        for level in ("B-B", "B-T") if label == "1-page" else ("B-B",):
            options = SignOptions(certificate_serial=serial, level=level)
            rate, p50, p99 = timed(
                lambda pdf=pdf, options=options: service.engine.sign(pdf, issued, options),
                N * 2,
            )
            rows.append(
                Row(
                    f"our engine in-process {level}, {label}, 1 core",
                    rate,
                    p50,
                    p99,
                    f"documenso {label}",
                )
            )
    if one_core_only:
        service.close()
        return rows
    cores = os.cpu_count() or 1
    from signet.signer.batch import bulk

    for label, pdf in docs.items():
        for level in ("B-B", "B-T") if label == "1-page" else ("B-B",):
            options = SignOptions(certificate_serial=serial, level=level)
            context = multiprocessing.get_context("spawn")
            with context.Pool(
                cores,
                initializer=bulk._initialise,
                initargs=(embedded.signer_settings(), serial, options.model_dump_json(), None),
            ) as pool:
                pool.map(sign_repeatedly, [(pdf, 20)] * cores)  # warm-up
                each = (N * 5 if label == "1-page" else N) // cores
                start = time.perf_counter()
                done = sum(pool.map(sign_repeatedly, [(pdf, each)] * cores))
                elapsed = time.perf_counter() - start
            rows.append(
                Row(
                    f"our engine in-process {level}, {label}, {cores} processes",
                    done / elapsed,
                    peer=f"documenso {label}",
                )
            )
    # The same engine behind `signet seal-batch`: files read, signed, fsync'd, renamed.
    source = work / "bulk-1-page"
    source.mkdir()
    count = N * 5
    for i in range(count):
        (source / f"{i:05d}.pdf").write_bytes(docs["1-page"])
    options = SignOptions(certificate_serial=serial, level="B-B")
    with BulkSealer(embedded.signer_settings(), serial, options) as sealer:
        warm = [SealJob(source / "00000.pdf", work / "warm" / f"{i}.pdf") for i in range(cores * 8)]
        list(sealer.run(warm))
        jobs = [SealJob(p, work / "bulk-out" / p.name) for p in sorted(source.iterdir())]
        start = time.perf_counter()
        failures = sum(1 for r in sealer.run(jobs) if not r.ok)
        elapsed = time.perf_counter() - start
    assert failures == 0
    rows.append(
        Row(f"signet seal-batch B-B, 1-page files (fsync'd), {cores} processes", count / elapsed)
    )
    service.close()
    return rows


def sign_repeatedly(job: tuple[bytes, int]) -> int:
    """In a pool process set up by `bulk._initialise`: sign one document `count` times."""
    from signet.signer.batch import bulk

    pdf, count = job
    worker = bulk._worker
    assert worker is not None
    for _ in range(count):
        worker.service.engine.sign(pdf, worker.issued, worker.options)
    return count


def seal_serial(home: Path) -> str:
    serial_file = home / "bench-seal-serial"
    if serial_file.exists():
        return serial_file.read_text().strip()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "signet.cli",
            "ca",
            "issue",
            "--name",
            "Bench Seal",
            "--kind",
            "seal",
        ],
        env=_env(home),
        capture_output=True,
        text=True,
        check=True,
    )
    serial = result.stdout.split()[1]
    serial_file.write_text(serial)
    return serial


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNET_")}
    env["SIGNET_HOME"] = str(home)
    return env


# -- through HTTP ---------------------------------------------------------------------------


class Server:
    """`signet up` on a free port, 2 worker processes; peak RSS sampled while it runs."""

    def __init__(self, home: Path, port: int) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "signet.cli", "up", "--port", str(port), "--workers", "2"],
            env=_env(home),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.token = ""
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("admin API token"):
                self.token = line.split()[-1]
            if line.startswith("Ctrl-C"):
                break
        self.url = f"http://127.0.0.1:{port}"
        self.peak_rss = 0
        self._stop = threading.Event()
        threading.Thread(target=self._sample, daemon=True).start()

    def rss(self) -> int:
        return sum(_rss(p) for p in self._children())

    def cpu_seconds(self, *, with_client: bool = True) -> float:
        """CPU used so far by the server's processes and (`with_client`) this one."""
        total = 0.0
        for process in [*self._children(), *([psutil.Process()] if with_client else [])]:
            try:
                times = process.cpu_times()
            except psutil.Error:
                continue
            total += times.user + times.system
        return total

    def _children(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.process.pid).children(recursive=True)
        except psutil.Error:
            return []

    def _sample(self) -> None:
        """Every 50 ms; the process list is read again only every 2 s: finding children
        reads every process on the machine (a few ms), and this runs beside the server."""
        children: list[psutil.Process] = []
        listed = 0.0
        while not self._stop.wait(0.05):
            if time.monotonic() - listed > 2.0:
                children, listed = self._children(), time.monotonic()
            self.peak_rss = max(self.peak_rss, sum(_rss(p) for p in children))

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, timeout=300, headers={"Authorization": f"Bearer {self.token}"}
        )

    def stop(self) -> None:
        self._stop.set()
        self.process.terminate()
        self.process.wait(timeout=30)


def _machine_busy() -> float:
    """CPU seconds the whole machine has been busy (every process), from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _rss(process: psutil.Process) -> int:
    try:
        return int(process.memory_info().rss)
    except psutil.Error:
        return 0


def api_rows(server: Server, serial: str, docs: dict[str, bytes], work: Path) -> list[Row]:
    client = server.client()
    rows = []
    for label, pdf in docs.items():
        for level in ("B-B", "B-T") if label == "1-page" else ("B-B",):
            options = json.dumps({"certificate_serial": serial, "level": level})
            if shutil.which("wrk"):
                boundary = "SignetBenchBoundary"
                body = (
                    (
                        f'--{boundary}\r\nContent-Disposition: form-data; name="options"\r\n\r\n'
                        f"{options}\r\n--{boundary}\r\n"
                        'Content-Disposition: form-data; name="document"; filename="d.pdf"\r\n'
                        "Content-Type: application/pdf\r\n\r\n"
                    ).encode()
                    + pdf
                    + f"\r\n--{boundary}--\r\n".encode()
                )
                rate, p50, p99 = wrk(
                    f"{server.url}/v1/sign",
                    body,
                    {
                        "Content-Type": f"multipart/form-data; boundary={boundary}",
                        "Authorization": f"Bearer {server.token}",
                    },
                    work,
                    connections=4,
                )
                rows.append(
                    Row(
                        f"HTTP /v1/sign {level}, {label}, 2 workers, wrk 4 connections",
                        rate,
                        p50,
                        p99,
                        f"documenso {label}",
                    )
                )
                continue

            def once(pdf: bytes = pdf, options: str = options) -> object:
                r = client.post(
                    "/v1/sign", files={"document": ("d.pdf", pdf)}, data={"options": options}
                )
                r.raise_for_status()
                return r

            rate, p50, p99 = timed(once, N, threads=4)
            rows.append(
                Row(
                    f"HTTP /v1/sign {level}, {label}, 2 workers, 4 clients",
                    rate,
                    p50,
                    p99,
                    f"documenso {label}",
                )
            )
    return rows + batch_rows(server, serial, docs)


def batch_rows(
    server: Server,
    serial: str,
    docs: dict[str, bytes],
    repeat: int = 1,
    peer: tuple[Peer, dict[str, Path]] | None = None,
) -> list[Row]:
    """`POST /v1/batches` timed from the start of the upload until the batch is finished.

    With `peer` (Documenso and the PDFs' paths), its engine is measured on the same
    PDF right before every round (BENCH_PEER_N signatures, default 1,000 for 1-page and
    200 for 100-page, about a second each) and the round's ratio is to that figure:
    the peer is one thread for about a second, the round two processes for about one,
    so a figure measured once per run moved the ratio with the machine's load.
    """
    client = server.client()
    rows = []
    peer_n = int(os.environ.get("BENCH_PEER_N", "1000"))
    for label, pdf, count, n in (
        ("1-page", docs["1-page"], 1000, peer_n),
        ("100-page", docs["100-page"], 200, max(peer_n // 5, 50)),
    ) * repeat:
        peer_rate = peer[0].rate(peer[1][label], n) if peer is not None else None
        server.peak_rss = 0
        busy = _machine_busy(), server.cpu_seconds()
        served = server.cpu_seconds(with_client=False)
        start = time.perf_counter()
        created = client.post(
            "/v1/batches",
            files=[("documents", (f"{i}.pdf", pdf)) for i in range(count)],
            data={"options": json.dumps({"certificate_serial": serial, "level": "B-B"})},
        )
        created.raise_for_status()
        uploaded = time.perf_counter()
        batch = created.json()["id"]
        # a long poll, as an integrator should wait: polling every 50 ms made sealing
        # 15-20% slower (each poll competes with the signing for the GIL)
        while client.get(f"/v1/batches/{batch}?items=false&wait=55").json()["state"] != "finished":
            pass
        elapsed = time.perf_counter() - start
        others = (_machine_busy() - busy[0]) - (server.cpu_seconds() - busy[1])
        served = server.cpu_seconds(with_client=False) - served
        rows.append(
            Row(
                f"HTTP /v1/batches B-B, {count} x {label} (upload to finish)",
                count / elapsed,
                peer=f"documenso {label}",
                # the two phases apart: which one varies from round to round
                note=f"upload {(uploaded - start) * 1000:.0f} ms + sealing "
                f"{(elapsed - (uploaded - start)) * 1000:.0f} ms; "
                # the work, whatever the scheduling: steadier than the rate on a busy machine
                f"server CPU {served / count * 1000:.2f} ms/doc; "
                f"server peak RSS {server.peak_rss / 2**20:.0f} MiB; other processes "
                f"{max(others, 0) / (elapsed * (os.cpu_count() or 1)):.0%} of the CPUs"
                + (f"; peer {peer_rate:.0f}/s before the round" if peer_rate else ""),
                peer_rate=peer_rate,
            )
        )
    client.close()
    return rows


def tsa_row(server: Server, work: Path) -> Row:
    query = subprocess.run(
        ["openssl", "ts", "-query", "-digest", "00" * 32, "-sha256", "-cert"],
        capture_output=True,
        check=True,
    ).stdout
    (work / "q.tsq").write_bytes(query)
    if shutil.which("wrk"):
        rate, p50, p99 = wrk(
            f"{server.url}/tsa",
            query,
            {"Content-Type": "application/timestamp-query"},
            work,
            connections=8,
        )
        return Row(
            "HTTP POST /tsa, 2 workers, wrk 8 connections",
            rate,
            p50,
            p99,
            peer="openssl ts -reply",
            note="goal 2,000/s, p99 < 20 ms",
        )
    client = server.client()
    rate, p50, p99 = timed(
        lambda: client.post("/tsa", content=query).raise_for_status(), N * 10, threads=8
    )
    return Row(
        "HTTP POST /tsa, 2 workers, 8 httpx threads (no wrk)",
        rate,
        p50,
        p99,
        peer="openssl ts -reply",
    )


def wrk(
    url: str, body: bytes, headers: dict[str, str], work: Path, *, connections: int
) -> tuple[float, float, float]:
    """(rate, p50 ms, p99 ms) of POSTing `body` for 10 s with wrk (a C load generator, so
    the client does not share the Python interpreter's cost with the server)."""
    body_file = work / f"wrk-{abs(hash(url)) % 10**8}.body"
    body_file.write_bytes(body)
    script = work / "wrk.lua"
    lines = [
        f'local f = io.open("{body_file}", "rb")',
        'wrk.method = "POST"',
        'wrk.body = f:read("*all")',
        "f:close()",
    ]
    lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()]
    script.write_text("\n".join(lines) + "\n")
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", "-d10s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"wrk saw errors: {out}")
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    return (
        rate,
        _wrk_ms(re.search(r"50%\s+([\d.]+)(\w+)", out)),
        _wrk_ms(re.search(r"99%\s+([\d.]+)(\w+)", out)),
    )


def _wrk_ms(match: re.Match[str] | None) -> float:
    assert match is not None
    value, unit = float(match.group(1)), match.group(2)
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def openssl_ts_reply_rate(home: Path, work: Path) -> float:
    """The classic TSA: one `openssl ts -reply` process per timestamp, software key."""
    conf = work / "tsa.cnf"
    conf.write_text(
        "[tsa]\ndefault_tsa = tsa_config\n[tsa_config]\n"
        f"serial = {work / 'serial'}\nsigner_cert = {work / 'ts.pem'}\n"
        f"signer_key = {work / 'ts.key'}\ndefault_policy = 1.2.3.4\n"
        "digests = sha256\nsigner_digest = sha256\naccuracy = secs:1\ness_cert_id_alg = sha256\n"
    )
    (work / "serial").write_text("01\n")
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            str(work / "ts.key"),
            "-out",
            str(work / "ts.pem"),
            "-subj",
            "/CN=bench tsa",
            "-days",
            "1",
            "-addext",
            "extendedKeyUsage=critical,timeStamping",
        ],
        capture_output=True,
        check=True,
    )
    n = max(N // 2, 50)
    start = time.perf_counter()
    for _ in range(n):
        subprocess.run(
            [
                "openssl",
                "ts",
                "-reply",
                "-config",
                str(conf),
                "-queryfile",
                str(work / "q.tsq"),
                "-out",
                os.devnull,
            ],
            capture_output=True,
            check=True,
        )
    return n / (time.perf_counter() - start)


def big_document_row(home: Path, work: Path) -> Row:
    """One 200 MB PDF signed in a fresh process; its peak RSS (VmHWM, which, unlike
    ru_maxrss, is not inherited from the parent across exec) is the figure."""
    big = work / "big.pdf"
    big.write_bytes(make_pdf(1, padding_bytes=200 * 1024 * 1024, xref_stream=False))
    code = (
        "import sys, time\n"
        "from signet.cli import embedded\n"
        "from signet.common.contracts.signer import SignOptions\n"
        "s = embedded.signer_service(); serial = sys.argv[1]\n"
        "issued = s.ca.signing_material(serial)\n"
        "status = lambda: open('/proc/self/status').read().split('VmHWM:')[1]\n"
        "hwm = lambda: int(status().split()[0])\n"
        "s.engine.sign(open(sys.argv[4], 'rb').read(), issued,"
        " SignOptions(certificate_serial=serial, level='B-B'))\n"
        "base = hwm()\n"
        "t = time.perf_counter()\n"
        "with open(sys.argv[2], 'rb') as src, open(sys.argv[3], 'w+b') as out:\n"
        "    s.engine.sign_stream(src, out, issued, SignOptions(certificate_serial=serial,"
        " level='B-B'))\n"
        "print(time.perf_counter() - t, base, hwm())\n"
    )
    small = work / "small.pdf"
    small.write_bytes(make_pdf(1, xref_stream=False))
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            seal_serial(home),
            str(big),
            str(work / "big-signed.pdf"),
            str(small),
        ],
        env=_env(home),
        capture_output=True,
        text=True,
        check=True,
    )
    seconds, base, peak = result.stdout.split()
    return Row(
        "our engine, one 200 MB PDF, B-B",
        1 / float(seconds),
        peer="-",
        note=f"peak RSS {int(peak) / 1024:.0f} MiB (after warm-up: {int(base) / 1024:.0f})",
    )


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="signet-bench-"))
    home = work / "home"
    os.environ["SIGNET_HOME"] = str(home)
    subprocess.run(
        [sys.executable, "-m", "signet.cli", "ca", "init"],
        env=_env(home),
        capture_output=True,
        check=True,
    )
    docs = {"1-page": make_pdf(1, xref_stream=False), "100-page": make_pdf(100, xref_stream=False)}
    paths = {}
    for label, pdf in docs.items():
        paths[label] = work / f"{label}.pdf"
        paths[label].write_bytes(pdf)

    peer = Peer.install(work)
    if os.environ.get("BENCH_SIGNER_ONLY") == "batches":
        # the quick loop for batch work: the batch cases (BENCH_REPEAT times), each round
        # beside its own measurement of the peer
        server = Server(home, 18101)
        try:
            rows = batch_rows(
                server,
                seal_serial(home),
                docs,
                int(os.environ.get("BENCH_REPEAT", "3")),
                None if peer is None else (peer, paths),
            )
        finally:
            server.stop()
        _print({}, rows)
        shutil.rmtree(work, ignore_errors=True)
        return
    peers = peer_rates(peer, paths, max(N, 200))
    if os.environ.get("BENCH_SIGNER_ONLY") == "engine":
        rows = []
        for _ in range(int(os.environ.get("BENCH_REPEAT", "3"))):
            rows += engine_rows(home, docs, work, one_core_only=True)
        if os.environ.get("BENCH_ENGINE_PROCESSES") == "1":
            rows += [r for r in engine_rows(home, docs, work) if "1 core" not in r.what]
        _print(peers, rows)
        shutil.rmtree(work, ignore_errors=True)
        return
    rows = [
        Row(
            "pyHanko sign_pdf defaults, software key, 1-page",
            *timed(pyhanko_defaults(docs["1-page"]), N // 2),
        ),
        Row(
            "pyHanko sign_pdf defaults, software key, 100-page",
            *timed(pyhanko_defaults(docs["100-page"]), N // 4),
            peer="documenso 100-page",
        ),
    ]
    rows += engine_rows(home, docs, work)
    server = Server(home, 18101)
    try:
        rows += api_rows(server, seal_serial(home), docs, work)
        rows.append(tsa_row(server, work))
    finally:
        server.stop()
    rows.append(big_document_row(home, work))
    peers["openssl ts -reply"] = openssl_ts_reply_rate(home, work)
    _print(peers, rows)
    shutil.rmtree(work, ignore_errors=True)


def _print(peers: dict[str, float], rows: list[Row]) -> None:
    print()
    for label, rate in peers.items():
        print(f"peer: {label:40} {rate:9.1f}/s")
    if not any(k.startswith("documenso") for k in peers) and not any(r.peer_rate for r in rows):
        print("peer: documenso engine unavailable (no node/npm or no registry): no ratios")
    print(f"\n{'what':66} {'ops/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'ratio':>7}  vs / note")
    for row in rows:
        peer = row.peer_rate or peers.get(row.peer)
        ratio = f"{row.rate / peer:6.2f}x" if peer else "     -"
        p50 = f"{row.p50_ms:7.2f}" if row.p50_ms is not None else "      -"
        p99 = f"{row.p99_ms:7.2f}" if row.p99_ms is not None else "      -"
        print(f"{row.what:66} {row.rate:9.1f} {p50} {p99} {ratio}  {row.peer} {row.note}")
    rounds: dict[str, list[Row]] = {}
    for row in rows:
        if row.peer_rate:
            rounds.setdefault(row.what, []).append(row)
    for what, measured in rounds.items():
        ratios = sorted(r.rate / (r.peer_rate or 1) for r in measured)
        peer_rates_ = [r.peer_rate or 0.0 for r in measured]
        print(
            f"median of {len(measured)} rounds: {what}: "
            f"{statistics.median(r.rate for r in measured):.1f}/s, "
            f"ratio {statistics.median(ratios):.2f}x (range {ratios[0]:.2f}-{ratios[-1]:.2f}x), "
            f"peer {statistics.median(peer_rates_):.0f}/s "
            f"({min(peer_rates_):.0f}-{max(peer_rates_):.0f})"
        )


if __name__ == "__main__":
    main()
