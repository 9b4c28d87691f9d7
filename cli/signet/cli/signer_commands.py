"""`signet ca …`, `signet signer serve`, `signet sign` and `signet verify`."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Annotated

import typer
from asn1crypto import pem, x509
from rich.console import Console
from rich.table import Table
from signet.cli import embedded
from signet.common.contracts.signer import (
    CertificateKind,
    IssueCertificateRequest,
    SignatureLevel,
    SignOptions,
    SubjectIdentity,
    VerifyResponse,
)
from signet.common.errors import SignetError
from signet.hsm import KeyAlgorithm
from signet.signer.pki.ca import Issued, fingerprint
from signet.signer.service import SignerService

ca_app = typer.Typer(no_args_is_help=True, help="The internal CA and its key ceremony.")
signer_app = typer.Typer(no_args_is_help=True, help="The signer service.")
console = Console(soft_wrap=True)
err = Console(stderr=True)
DEFAULT_SEAL = "signet-default-seal"


def _fail(exc: SignetError) -> typer.Exit:
    err.print(f"[red]error:[/] {exc.detail}")
    return typer.Exit(2)


def write_ca_files(directory: Path, issued: list[Issued]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for item in issued:
        path = directory / f"{item.record.kind}.pem"
        path.write_bytes(pem.armor("CERTIFICATE", item.certificate.dump()))


@ca_app.command("init")
def ca_init(
    algorithm: Annotated[
        KeyAlgorithm, typer.Option(help="key type of the CA and TSA keys")
    ] = KeyAlgorithm.EC_P256,
    force: Annotated[
        bool,
        typer.Option(help="replace existing CA keys (invalidates all certificates issued so far)"),
    ] = False,
) -> None:
    """Key ceremony: root CA, issuing CA and TSA keys in the HSM, and their certificates."""
    if embedded.uses_dev_token():
        embedded.dev_token()
    service = embedded.signer_service()
    try:
        was_ready = service.ca.is_initialised()
        issued = service.ca.ceremony(algorithm, force=force)
    except SignetError as exc:
        raise _fail(exc) from exc
    write_ca_files(service.settings.home / "ca", issued)
    table = Table("role", "subject", "valid until")
    for item in issued:
        table.add_row(item.record.kind, item.record.subject, f"{item.record.not_after:%Y-%m-%d}")
    console.print(table)
    # Outside the table: a table cell is cut to the terminal's width ("ee2e42f7…"), and
    # a fingerprint is only worth anything whole (the admin compares it out of band).
    for item in issued:
        console.print(f"{item.record.kind:<8} SHA-256 {fingerprint(item.certificate)}")
    state = "already initialised, nothing changed" if was_ready and not force else "created"
    console.print(f"CA {state}; certificates in {service.settings.home / 'ca'}")


@ca_app.command("issue")
def ca_issue(
    name: Annotated[str, typer.Option(help="common name of the subject")],
    kind: Annotated[CertificateKind, typer.Option()] = CertificateKind.PERSON,
    email: Annotated[str | None, typer.Option()] = None,
    organization: Annotated[str | None, typer.Option()] = None,
    key_label: Annotated[str | None, typer.Option(help="certify an existing HSM key")] = None,
) -> None:
    """Issue a long-term certificate (person or seal) with a key made in the HSM."""
    service = embedded.signer_service()
    try:
        issued = service.ca.issue(
            IssueCertificateRequest(
                kind=kind,  # type: ignore[arg-type]
                subject=SubjectIdentity(common_name=name, email=email, organization=organization),
                key_label=key_label,
            )
        )
    except SignetError as exc:
        raise _fail(exc) from exc
    console.print(
        f"serial {issued.record.serial}  key {issued.key.label}  "
        f"SHA-256 {fingerprint(issued.certificate)}"
    )


@signer_app.command("serve")
def serve(
    host: Annotated[str | None, typer.Option()] = None,
    port: Annotated[int | None, typer.Option()] = None,
    workers: Annotated[int, typer.Option(help="worker processes (use the cores)")] = 1,
    metrics_port: Annotated[
        int | None, typer.Option(help="also serve only /metrics on this port (Prometheus)")
    ] = None,
) -> None:
    """Run the signer's HTTP API (uvicorn)."""
    import os

    import uvicorn
    from signet.cli.metrics_port import metrics_listener
    from signet.common.metrics import multiprocess_environment
    from signet.common.protocol import GUARDED_PROTOCOL

    settings = embedded.signer_settings()
    os.environ.update(embedded.child_environment(settings))
    host = host or settings.host
    port = port or settings.port
    # Several workers share one /metrics directory (signet.common.metrics); the metrics
    # port is served here, in the process that supervises them, and sums them all.
    with (
        multiprocess_environment("signer", workers) as metrics_env,
        metrics_listener(
            host,
            metrics_port if metrics_port is not None else settings.metrics_port,
            api_port=port,
        ),
    ):
        os.environ.update(metrics_env)
        uvicorn.run(
            "signet.signer.app:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level="warning",
            http=GUARDED_PROTOCOL,  # a bounded request head, JSON refusals
        )


def _default_seal(service: SignerService) -> str:
    name = f"{service.settings.organization} Seal"
    return str(service.ca.ensure_seal(DEFAULT_SEAL, name).record.serial)


def sign(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
    out: Annotated[Path, typer.Option(help="where to write the signed PDF")],
    level: Annotated[SignatureLevel, typer.Option()] = SignatureLevel.B_T,
    serial: Annotated[str | None, typer.Option(help="sign with this certificate")] = None,
    reason: Annotated[str | None, typer.Option()] = None,
    certify: Annotated[bool, typer.Option(help="certification (DocMDP) signature")] = False,
) -> None:
    """Sign a PDF in-process with this installation's keys (default: the organisation seal)."""
    service = embedded.signer_service()
    try:
        serial = serial or _default_seal(service)
        options = SignOptions(
            certificate_serial=serial, level=level, reason=reason, certify=certify
        )
        with file.open("rb") as source, io.BytesIO() as target:
            # the service's one path: a person's or event key is refused without its
            # holder's activation (they sign through the portal)
            done = service.sign_document(source, target, options)
            signed = target.getvalue()
        issued = done.issued
    except SignetError as exc:
        raise _fail(exc) from exc
    out.write_bytes(signed)
    console.print(f"signed {file} at {level.value} with {issued.record.subject} -> {out}")


def verify(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
    root: Annotated[
        Path | None,
        typer.Option(
            help="trust this root certificate (PEM/DER) instead of this installation's CA; "
            "works without an HSM, revocation is then not checked"
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the full JSON report")] = False,
) -> None:
    """Validate every signature in a PDF; exit 1 if any is not OK (2 if the PDF is unusable)."""
    from pyhanko_certvalidator import ValidationContext
    from signet.signer.pades.validation import verify_pdf

    try:
        if root is not None:
            data = root.read_bytes()
            der = pem.unarmor(data)[2] if pem.detect(data) else data
            context = ValidationContext(
                trust_roots=[x509.Certificate.load(der)],
                allow_fetching=False,
                revocation_mode="soft-fail",
            )
        else:
            context = embedded.signer_service().engine.validation_context()
        report = verify_pdf(file.read_bytes(), context)
    except SignetError as exc:
        raise _fail(exc) from exc
    if as_json:
        sys.stdout.write(report.model_dump_json(indent=2) + "\n")
    else:
        _print_report(report)
    raise typer.Exit(0 if report.valid else 1)


#: pyHanko's AdES indications as a reader says them (the JSON report keeps the codes).
_INDICATIONS = {
    "chain_constraints_failure": "signer certificate not issued by this appliance's root",
    "no_certificate_chain_found": "signer certificate not issued by this appliance's root",
    "revoked_no_pox": "the signer's certificate is revoked",
    "expired": "the signer's certificate had expired",
    "not_yet_valid": "the signer's certificate was not yet valid",
    "try_later": "revocation status not available yet; try later",
    "cryptographic_constraints_failure": "algorithm or key size not accepted",
    "signed_data_not_found": "the signed data is missing",
}


def _in_words(problem: str | None) -> str | None:
    """A validation code in words; a sentence already in words passes unchanged."""
    if problem is None:
        return None
    return _INDICATIONS.get(problem, problem.replace("_", " ") if " " not in problem else problem)


def _print_report(report: VerifyResponse) -> None:
    if not report.signatures:
        console.print("[red]no signatures in this document[/]")
        return
    table = Table("field", "kind", "signer", "time", "OK", "problem")
    for sig in report.signatures:
        when = sig.timestamp.time if sig.timestamp else sig.signing_time
        problem = _in_words(sig.trust_problem) or (
            "" if sig.intact else "document changed after signing"
        )
        if sig.modifications == "other":
            problem = problem or "disallowed modification after signing"
        table.add_row(
            sig.field_name,
            sig.kind,
            sig.signer.subject if sig.signer else "?",
            f"{when:%Y-%m-%d %H:%M:%S %Z}" if when else "",
            "[green]yes[/]" if sig.ok else "[red]no[/]",
            problem,
        )
    console.print(table)
    # Words, not JSON: a JSON line after the table broke scripts that read stdout as a
    # table and confused readers; the machine-readable report is `--json` alone.
    verdict = "[green]valid[/]" if report.valid else "[red]not valid[/]"
    console.print(f"document {verdict}  SHA-256 {report.document_sha256}")
