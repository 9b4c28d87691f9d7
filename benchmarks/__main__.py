"""Signer benchmark: raw HSM, plain pyHanko, and our HTTP API, measured in the same run.

Run from the repository root: `make bench` (BENCH_N sets the sample size).
The ratio column compares each row with plain single-process pyHanko
`sign_pdf` (default settings, software EC P-256 key) on the same machine and
document — the baseline the signer issue's performance goal is stated against.
"""

from __future__ import annotations

import io
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil

from tests.support.pdfs import make_pdf

N = int(os.environ.get("BENCH_N", "200"))


def measure(label: str, once: Callable[[], object], n: int, threads: int = 1) -> dict[str, object]:
    once()  # warm-up
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
    return {
        "what": label,
        "rate": n / elapsed,
        "p50": statistics.median(latencies) * 1000,
        "p95": latencies[int(len(latencies) * 0.95) - 1] * 1000,
    }


def plain_pyhanko(pdf: bytes) -> Callable[[], object]:
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
        signing_key=__import__("asn1crypto.keys", fromlist=["x"]).PrivateKeyInfo.load(
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


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="signet-bench-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNET_")}
    env["SIGNET_HOME"] = str(home)
    port = 18101
    one_page, hundred = make_pdf(1), make_pdf(100)
    rows: list[dict[str, object]] = []

    baseline = measure(
        "plain pyHanko sign_pdf, software key, 1 process", plain_pyhanko(one_page), max(N // 4, 20)
    )
    rows.append(baseline)

    server = subprocess.Popen(
        [sys.executable, "-m", "signet.cli", "up", "--port", str(port), "--workers", "2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        token = ""
        assert server.stdout is not None
        for line in server.stdout:
            if line.startswith("admin API token"):
                token = line.split()[-1]
            if line.startswith("Ctrl-C"):
                break
        os.environ["SIGNET_HOME"] = str(home)
        from signet.cli import embedded

        service = embedded.signer_service()
        hsm = service.hsm
        rows.append(
            measure(
                "raw HSM ECDSA P-256 sign (SoftHSM, 1 thread)",
                lambda: hsm.sign("signet-tsa", b"x" * 64),
                N * 10,
            )
        )
        seal = subprocess.run(
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
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()[1]
        client = httpx.Client(
            base_url=f"http://127.0.0.1:{port}",
            timeout=60,
            headers={"Authorization": f"Bearer {token}"},
        )

        def api(pdf: bytes, level: str) -> Callable[[], object]:
            options = f'{{"certificate_serial": "{seal}", "level": "{level}"}}'

            def once() -> object:
                r = client.post(
                    "/v1/sign", files={"document": ("d.pdf", pdf)}, data={"options": options}
                )
                r.raise_for_status()
                return r

            return once

        for label, pdf in (("1-page", one_page), ("100-page", hundred)):
            for level in ("B-B", "B-T"):
                rows.append(
                    measure(
                        f"HTTP /v1/sign {level}, {label}, 2 workers, 4 clients",
                        api(pdf, level),
                        N,
                        threads=4,
                    )
                )
        query = subprocess.run(
            ["openssl", "ts", "-query", "-digest", "00" * 32, "-sha256", "-cert"],
            capture_output=True,
            check=True,
        ).stdout
        rows.append(
            measure(
                "HTTP POST /tsa, 2 workers, 8 clients",
                lambda: client.post("/tsa", content=query).raise_for_status(),
                N * 10,
                threads=8,
            )
        )
        big = make_pdf(1, padding_bytes=20 * 1024 * 1024)
        rows.append(measure("HTTP /v1/sign B-B, 20 MB PDF", api(big, "B-B"), 5))
        rss = sum(p.memory_info().rss for p in psutil.Process(server.pid).children(recursive=True))
    finally:
        server.terminate()
        server.wait(timeout=20)

    base_rate = float(baseline["rate"])  # type: ignore[arg-type]
    print(f"\n{'what':62} {'ops/s':>9} {'p50 ms':>8} {'p95 ms':>8} {'vs pyHanko':>10}")
    for row in rows:
        rate = float(row["rate"])  # type: ignore[arg-type]
        print(
            f"{row['what']:62} {rate:9.1f} {row['p50']:8.2f} {row['p95']:8.2f} "
            f"{rate / base_rate:9.2f}x"
        )
    print(f"\nsigner worker processes' RSS after the run: {rss / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
