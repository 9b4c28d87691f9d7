"""`signet up`: the embedded default appliance on one machine, no cluster.

Creates what is missing (SoftHSM token, CA, service token) and runs the
services as local processes until interrupted.  Today that is the signer;
storage and the portal join as they are built.
"""

from __future__ import annotations

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
from signet.signer.ca import fingerprint

console = Console(soft_wrap=True)


def up(
    port: Annotated[int, typer.Option(help="signer port")] = 8101,
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
    service.close()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "signet.signer.app:create_app",
            "--factory",
            "--host",
            settings.host,
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--log-level",
            "warning",
        ],
        env=embedded.child_environment(settings),
    )
    url = f"http://127.0.0.1:{port}"
    # A service manager stops us with SIGTERM: stop the services too, never orphan them.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        _wait_ready(url, process)
        assert settings.service_token is not None
        console.rule("[bold]Signet is up")
        console.print(f"data folder      {base}")
        console.print(
            f"HSM              SoftHSM2 token '{token.config.token_label}' ({token.conf_file})"
        )
        console.print(f"signer API       {url}  (docs: {url}/docs)")
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
        process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    last = "not started"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            console.print(f"[red]the signer exited with status {process.returncode}[/]")
            raise typer.Exit(1)
        try:
            response = httpx.get(f"{url}/readyz", timeout=2)
            if response.status_code == 200:
                return
            last = response.text
        except httpx.HTTPError as exc:
            last = str(exc)
        time.sleep(0.3)
    console.print(f"[red]the signer did not become ready:[/] {last}")
    raise typer.Exit(1)
