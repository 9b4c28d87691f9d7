"""`signet up`: the embedded default appliance on one machine, no cluster.

Creates what is missing (SoftHSM token, CA, tokens, the portal's first
administrator) and runs the signer, the storage service (filesystem vault) and the
portal as local processes until interrupted, restarting any that exits.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from signet.cli import embedded
from signet.cli.signer_commands import DEFAULT_SEAL, write_ca_files
from signet.cli.supervisor import PortTaken, Service, port_free, stop_all
from signet.common.metrics import multiprocess_environment
from signet.common.protocol import GUARDED_PROTOCOL
from signet.portal.accounts.service import Accounts, FirstAdmin
from signet.portal.config import PortalSettings
from signet.portal.database import open_portal_database
from signet.signer.pki.ca import fingerprint
from signet.storage.api.splice import SPLICE_PROTOCOL
from signet.storage.config import StorageSettings
from sqlalchemy.orm import sessionmaker

console = Console(soft_wrap=True)


def up(
    port: Annotated[
        int, typer.Option(help="signer port (storage: the next one, the portal: the one after)")
    ] = 8101,
    workers: Annotated[int, typer.Option(help="signer worker processes")] = 2,
    exit_when_ready: Annotated[
        bool, typer.Option(help="start, check readiness, stop (for smoke tests)")
    ] = False,
) -> None:
    """Start the appliance on its embedded default and print how to reach it."""
    for name, number in (("signer", port), ("storage", port + 1), ("portal", port + 2)):
        if not port_free("127.0.0.1", number):  # before any work: start nothing
            console.print(f"[red]{PortTaken(name, '127.0.0.1', number)}[/]")
            raise typer.Exit(1)
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
    # The seal `signet sign` and the examples use (the API needs key_label or serial).
    seal = service.ca.ensure_seal(DEFAULT_SEAL, f"{settings.organization} Seal")
    service.close()
    # The signer's workers share one /metrics directory, removed when `up` returns.
    stack = contextlib.ExitStack()
    metrics_env = stack.enter_context(multiprocess_environment("signer", workers))
    signer = Service(
        "signer",
        _uvicorn("signet.signer.app:create_app", settings.host, port, workers),
        embedded.child_environment(settings) | metrics_env,
        settings.host,
        port,
        log=_log,
    )
    # The storage service runs as one process: its ledger has exactly one writer.
    storage = Service(
        "storage",
        _uvicorn(
            "signet.storage.app:create_app",
            storage_settings.host,
            port + 1,
            1,
            http=SPLICE_PROTOCOL,  # spliced GET bodies
        ),
        embedded.storage_environment(storage_settings),
        storage_settings.host,
        port + 1,
        log=_log,
    )
    portal_settings = embedded.portal_settings(
        port=port + 2,
        public_url=f"http://127.0.0.1:{port + 2}",
        signer_url=f"http://127.0.0.1:{port}",
        storage_url=f"http://127.0.0.1:{port + 1}",
    )
    first_admin = _first_admin(portal_settings, settings.organization)
    portal = Service(
        "portal",
        _uvicorn("signet.portal.app:create_app", portal_settings.host, port + 2, 1),
        embedded.portal_environment(portal_settings),
        portal_settings.host,
        port + 2,
        log=_log,
    )
    services = [signer, storage, portal]
    url, storage_url = signer.url, storage.url
    # A service manager stops us with SIGTERM: stop the services too, never orphan them.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        for supervised in services:
            supervised.start()
            problem = supervised.wait_ready()
            if problem is not None:
                console.print(f"[red]{problem}[/]")
                raise typer.Exit(1)
        assert settings.service_token is not None
        console.rule("[bold]Signet is up")
        console.print(f"data folder      {base}")
        console.print(
            f"HSM              SoftHSM2 token '{token.config.token_label}' ({token.conf_file})"
        )
        console.print(f"signer API       {url}  (docs: {url}/docs)")
        console.print(
            f"storage API      {storage_url}  ({_vault_label(storage_settings)}, "
            f"{storage_settings.retention_years}-year retention, evidence ledger)"
        )
        console.print(f"root CA          {settings.home / 'ca' / 'root.pem'}")
        console.print(f"root SHA-256     {fingerprint(root.certificate)}")
        console.print(
            f"organisation seal key_label {seal.record.key_label}, "
            f"certificate_serial {seal.record.serial}  (for POST /v1/sign)"
        )
        console.print(f"portal API       {portal.url}/api/v1  (docs: {portal.url}/docs)")
        key_file = portal_settings.home / "admin-api-key"
        if first_admin is not None:
            console.print(
                f"portal admin     {first_admin.email}  password {first_admin.password}"
                "  (shown once)"
            )
            console.print(f"portal API key   {first_admin.api_key.secret}")
        console.print(f"                 (the admin's API key is in {key_file})")
        console.print(
            f"messages         {_cli_command()} outbox  (no mail or SMS gateway: codes and "
            "links wait there)"
        )
        console.print("signer admin token " + settings.service_token.get_secret_value())
        console.print(f"                 (also in {base / 'service-token'})")
        cli = _cli_command()
        console.print(
            f"try              {cli} sign some.pdf --out signed.pdf && {cli} verify signed.pdf"
        )
        if exit_when_ready:
            return
        console.print("Ctrl-C stops the appliance; a service that exits is started again.")
        while True:
            for supervised in services:
                supervised.supervise()
            time.sleep(0.2)
    except PortTaken as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        pass
    finally:
        # A second Ctrl-C must not cut the stop short and leave children behind.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            stop_all(services)
        finally:
            signal.signal(signal.SIGINT, previous)
            stack.close()


def _vault_label(settings: StorageSettings) -> str:
    """What the vault is, as the admin configured it (S3 names its endpoint and bucket)."""
    if settings.vault == "s3":
        return f"S3 vault {settings.s3_endpoint}/{settings.s3_bucket} with Object Lock"
    return "filesystem vault"


def _first_admin(settings: PortalSettings, organisation: str) -> FirstAdmin | None:
    """On the first start: the organisation, its administrator and their API key (the
    key kept 0600 beside the portal's database for the CLI); None later."""
    database = open_portal_database(settings.database())
    try:
        made = Accounts(sessionmaker(database.engine)).ensure_first_admin(
            organisation, "admin@signet.local", "Administrator"
        )
    finally:
        database.engine.dispose()
    if made is not None:
        embedded.write_private(settings.home / "admin-api-key", made.api_key.secret)
    return made


def _log(message: str) -> None:
    console.print(f"[yellow]{time.strftime('%H:%M:%S')} {message}[/]")


def _cli_command() -> str:
    """The `signet` command as the user can type it here: on PATH, or the path of ours."""
    ours = Path(sys.argv[0]).resolve()
    on_path = shutil.which("signet")
    if on_path is not None and Path(on_path).resolve() == ours:
        return "signet"
    if ours.name != "signet":
        ours = Path(sys.executable).parent / "signet"
    try:
        return str(ours.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(ours)


def _uvicorn(
    app: str, host: str, port: int, workers: int, *, http: str = GUARDED_PROTOCOL
) -> list[str]:
    """The service's uvicorn command; `http`: its protocol class (a bounded head and JSON
    refusals, `signet.common.protocol`; storage's adds splicing)."""
    command = [sys.executable, "-m", "uvicorn", app, "--factory", "--host", host]
    command += ["--port", str(port), "--workers", str(workers), "--log-level", "warning"]
    # A request still open some seconds after a stop is cut rather than holding it up.
    command += ["--timeout-graceful-shutdown", "5"]
    command += ["--http", http]
    return command


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt
