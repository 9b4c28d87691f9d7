"""`signet up`: the embedded default appliance on one machine, no cluster.

Creates what is missing (SoftHSM token, CA, service token) and runs the
services as local processes until interrupted.  Today that is the signer
and the storage service (filesystem vault); the portal joins when it is built.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from typing import Annotated

import httpx
import typer
from rich.console import Console
from signet.cli import embedded
from signet.cli.signer_commands import write_ca_files
from signet.common.metrics import multiprocess_environment
from signet.signer.pki.ca import fingerprint
from signet.storage.api.splice import SPLICE_PROTOCOL

console = Console(soft_wrap=True)


def up(
    port: Annotated[int, typer.Option(help="signer port (storage: the next one)")] = 8101,
    workers: Annotated[int, typer.Option(help="signer worker processes")] = 2,
    exit_when_ready: Annotated[
        bool, typer.Option(help="start, check readiness, stop (for smoke tests)")
    ] = False,
) -> None:
    """Start the appliance on its embedded default and print how to reach it."""
    base = embedded.home()
    token = embedded.dev_token()
    settings = embedded.signer_settings(port=port, public_url=f"http://127.0.0.1:{port}")
    service = embedded.SignerService(settings)
    issued = service.ca.ceremony()
    write_ca_files(settings.home / "ca", issued)
    root = issued[0]
    storage_settings = embedded.storage_settings(
        port=port + 1, signer_url=f"http://127.0.0.1:{port}"
    )
    service.ca.ensure_ledger_seal(storage_settings.ledger_key_label)
    service.close()
    # The signer's workers share one /metrics directory, removed when `up` returns.
    stack = contextlib.ExitStack()
    metrics_env = stack.enter_context(multiprocess_environment("signer", workers))
    signer = _uvicorn(
        "signet.signer.app:create_app",
        settings.host,
        port,
        workers,
        embedded.child_environment(settings) | metrics_env,
    )
    # The storage service runs as one process: its ledger has exactly one writer.
    storage = _uvicorn(
        "signet.storage.app:create_app",
        storage_settings.host,
        port + 1,
        1,
        embedded.storage_environment(storage_settings),
        http=SPLICE_PROTOCOL,  # spliced GET bodies
    )
    processes = [signer, storage]
    url, storage_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port + 1}"
    # A service manager stops us with SIGTERM: stop the services too, never orphan them.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        _wait_ready(url, signer, "signer")
        _wait_ready(storage_url, storage, "storage")
        assert settings.service_token is not None
        console.rule("[bold]Signet is up")
        console.print(f"data folder      {base}")
        console.print(
            f"HSM              SoftHSM2 token '{token.config.token_label}' ({token.conf_file})"
        )
        console.print(f"signer API       {url}  (docs: {url}/docs)")
        console.print(
            f"storage API      {storage_url}  (filesystem vault, "
            f"{storage_settings.retention_years}-year retention, evidence ledger)"
        )
        console.print(f"root CA          {settings.home / 'ca' / 'root.pem'}")
        console.print(f"root SHA-256     {fingerprint(root.certificate)}")
        console.print("admin API token  " + settings.service_token.get_secret_value())
        console.print(
            f"                 (also in {base / 'service-token'}; the portal and its "
            "admin account arrive with the portal service)"
        )
        console.print(
            "try              signet sign some.pdf --out signed.pdf && signet verify signed.pdf"
        )
        if exit_when_ready:
            return
        console.print("Ctrl-C stops the appliance.")
        while all(p.poll() is None for p in processes):
            time.sleep(0.5)
        for process, name in ((signer, "signer"), (storage, "storage")):
            if process.poll() is not None:
                console.print(f"[red]the {name} exited with status {process.returncode}[/]")
    except KeyboardInterrupt:
        pass
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        stack.close()


def _uvicorn(
    app: str,
    host: str,
    port: int,
    workers: int,
    env: dict[str, str],
    *,
    http: str | None = None,
) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "uvicorn", app, "--factory", "--host", host]
    command += ["--port", str(port), "--workers", str(workers), "--log-level", "warning"]
    if http is not None:
        command += ["--http", http]
    # Own session: a terminal's Ctrl-C reaches `signet up` alone, which then stops each
    # service exactly once (a second signal makes uvicorn abort its shutdown).
    return subprocess.Popen(command, env=env, start_new_session=True)


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _wait_ready(url: str, process: subprocess.Popen[bytes], name: str) -> None:
    deadline = time.monotonic() + 60
    last = "not started"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            console.print(f"[red]the {name} exited with status {process.returncode}[/]")
            raise typer.Exit(1)
        try:
            response = httpx.get(f"{url}/readyz", timeout=2)
            if response.status_code == 200:
                return
            last = response.text
        except httpx.HTTPError as exc:
            last = str(exc)
        time.sleep(0.3)
    console.print(f"[red]the {name} did not become ready:[/] {last}")
    raise typer.Exit(1)
