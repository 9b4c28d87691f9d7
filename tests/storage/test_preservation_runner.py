"""The preservation job in the service: newer evidence packages, resumability, the period,
the Lease (tests/storage/test_preservation_service.py runs it all through processes).

A real signer (the session's, over HTTP where the service calls it) and real vaults;
where a rolled-over TSA is needed, the job is told another certificate is current,
as in tests/storage/test_preservation.py.
"""

from __future__ import annotations

import io
import json
import time
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from signet.common.contracts.signer import SignatureLevel, SignOptions
from signet.common.contracts.storage import LedgerEventIn, ObjectKind
from signet.common.errors import ServiceUnavailable
from signet.signer.pades.renewal import renew_pdf
from signet.signer.service import SignerService
from signet.storage.config import StorageSettings
from signet.storage.evidence import seal_package, sealed, verify_package
from signet.storage.evidence_seal import supersede_package
from signet.storage.preservation import RECORD_PREFIX, PreservationJob
from signet.storage.preservation_runner import NotLeader, PassRunning
from signet.storage.service import StorageService
from signet.storage.vault import ObjectNotFound

from tests.conftest import SERVICE_TOKEN
from tests.storage.test_api import LEDGER_KEY, _rezip
from tests.support.kube_emulator import RunningEmulator
from tests.support.pdfs import make_pdf

SEAL = "preservation-test-seal"
ROOT = Path(__file__).resolve().parents[2]


def _b_lta(signer: SignerService, title: str) -> bytes:
    signer.ca.ensure_seal(SEAL, "Preservation Test Seal")
    output = io.BytesIO()
    options = SignOptions(key_label=SEAL, level=SignatureLevel.B_LTA)
    signer.sign_document(io.BytesIO(make_pdf(title=title)), output, options)
    return output.getvalue()


def _settings(tmp_path: Path, signer_url: str, **overrides: object) -> StorageSettings:
    values: dict[str, object] = {
        "home": tmp_path / "storage",
        "service_token": SecretStr(SERVICE_TOKEN),
        "signer_url": signer_url,
        "ledger_key_label": LEDGER_KEY,
        "tree_head_interval": 0,
        "policy_dir": tmp_path / "policies",
        "preservation_interval": 0,
    }
    return StorageSettings(**(values | overrides))  # type: ignore[arg-type]


@pytest.fixture
def service(
    tmp_path: Path, signer_service: SignerService, signer_url: str
) -> Iterator[StorageService]:
    signer_service.ca.ensure_ledger_seal(LEDGER_KEY)
    storage = StorageService(_settings(tmp_path, signer_url))
    yield storage
    storage.close()


def _envelope(service: StorageService, signer: SignerService, envelope: str) -> str:
    """A sealed envelope holding one B-LTA final document; its hash."""
    pdf = _b_lta(signer, f"Contract {envelope}")
    info, _ = service.vault.put(
        io.BytesIO(pdf), content_type="application/pdf", kind=ObjectKind.FINAL, envelope_id=envelope
    )
    for event_type in ("envelope.created", "envelope.completed"):
        service.ledger.append_sync(
            LedgerEventIn(
                event_type=event_type,
                envelope_id=envelope,
                actor="alice@example.com",
                document_hashes=[info.sha256],
            )
        )
    seal_package(
        envelope,
        vault=service.vault,
        ledger=service.ledger,
        signer=service.signer,
        pki=service.signer.pki(),
    )
    return info.sha256


def _job(service: StorageService, signer: SignerService, **kw: object) -> PreservationJob:
    stand_in = signer.ca.issuing.certificate  # "the current TSA is another": all are due
    pki = service.signer.pki()

    def reseal(envelope: str) -> bool:
        made = supersede_package(
            envelope, vault=service.vault, ledger=service.ledger, signer=service.signer, pki=pki
        )
        return made is not None

    return PreservationJob(
        service.vault,
        service.ledger,
        renew=lambda pdf: renew_pdf(signer.engine, pdf),
        current_tsa=lambda: stand_in,
        **({"reseal": reseal} | kw),  # type: ignore[arg-type]
    )


def _package(service: StorageService, sha256: str) -> bytes:
    return b"".join(service.vault.open(sha256))


def _failed(package: bytes, root_pem: bytes) -> dict[str, str]:
    return {c.what: c.detail for c in verify_package(io.BytesIO(package), root_pem) if not c.ok}


def test_a_renewal_supersedes_the_sealed_package_by_a_newer_one_that_names_it(
    service: StorageService, signer_service: SignerService, ca_files: Path
) -> None:
    root_pem = (ca_files / "root.pem").read_bytes()
    envelope = f"env-{uuid.uuid4().hex[:8]}"
    document = _envelope(service, signer_service, envelope)
    first = sealed(service.vault, envelope)
    assert first is not None and first.get("generation", 1) == 1

    report = _job(service, signer_service).run()
    assert report.failed == {} and report.renewed == 1
    assert report.packages_renewed == [envelope]
    newer = sealed(service.vault, envelope)
    assert newer is not None and newer["generation"] == 2
    assert newer["supersedes"] == first["package_sha256"] != newer["package_sha256"]
    assert (
        service.vault.head(newer["package_sha256"]).retain_until
        >= service.vault.head(first["package_sha256"]).retain_until
    )

    old, new = (
        _package(service, first["package_sha256"]),
        _package(service, newer["package_sha256"]),
    )
    assert _failed(old, root_pem) == {} and _failed(new, root_pem) == {}
    checks = {c.what: c for c in verify_package(io.BytesIO(new), root_pem)}
    assert first["package_sha256"] in checks["supersedes"].detail
    with zipfile.ZipFile(io.BytesIO(new)) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        names = set(archive.namelist())
        events = [
            json.loads(archive.read(n))["event_type"]
            for n in sorted(names)
            if n.startswith("ledger/entries/")
        ]
    assert manifest["supersedes"] == {
        "package_sha256": first["package_sha256"],
        "manifest_sha256": first["manifest_sha256"],
        "generation": 1,
    }
    ((_, renewed),) = report.renewals
    assert {f"documents/{document}.pdf", f"documents/{renewed}.pdf"} <= names
    assert events[-2:] == ["evidence.sealed", "document.preserved"]

    # The statement of what it supersedes is signed: changed, the manifest is named.
    for change in (
        {**manifest["supersedes"], "package_sha256": "0" * 64},
        {**manifest["supersedes"], "generation": 7},
        None,
    ):
        statement = {"supersedes": change} if change is not None else {}
        changed = {k: v for k, v in manifest.items() if k != "supersedes"} | statement
        data = json.dumps(changed, indent=2, sort_keys=True).encode()
        failed = _failed(_rezip(new, "manifest.json", data), root_pem)
        assert "does not match its signature" in failed["manifest signature"]
        assert "summary.txt" in failed  # rendered again from the changed statement
    # Malformed, the manifest check says so.
    data = json.dumps(manifest | {"supersedes": "yesterday's"}, indent=2, sort_keys=True).encode()
    failed = _failed(_rezip(new, "manifest.json", data), root_pem)
    assert "'supersedes' is not a package's hashes" in failed["manifest"]
    # The summary's line naming the package it supersedes, edited: named.
    summary = zipfile.ZipFile(io.BytesIO(new)).read("summary.es.txt")
    assert first["package_sha256"].encode() in summary
    lie = summary.replace(first["package_sha256"].encode(), b"f" * 64)
    failed = _failed(_rezip(new, "summary.es.txt", lie), root_pem)
    assert "disagrees with the signed manifest" in failed["summary.es.txt"]

    # Sealing again (the portal's retry) answers the newest seal, its event replayed.
    size = service.ledger.size
    seal, made = seal_package(
        envelope,
        vault=service.vault,
        ledger=service.ledger,
        signer=service.signer,
        pki=service.signer.pki(),
    )
    assert not made and seal.generation == 2 and seal.supersedes == first["package_sha256"]
    assert service.ledger.size == size
    # A third generation names the second.
    third = supersede_package(
        envelope,
        vault=service.vault,
        ledger=service.ledger,
        signer=service.signer,
        pki=service.signer.pki(),
    )
    assert third is not None and third.generation == 3
    assert third.supersedes == newer["package_sha256"]
    assert sealed(service.vault, envelope)["package_sha256"] == third.package_sha256  # type: ignore[index]


def test_a_package_that_cannot_be_made_leaves_the_renewals_to_the_next_pass(
    service: StorageService, signer_service: SignerService
) -> None:
    envelope = f"env-{uuid.uuid4().hex[:8]}"
    document = _envelope(service, signer_service, envelope)

    def broken(_: str) -> bool:
        raise ServiceUnavailable("the signer is unreachable")

    report = _job(service, signer_service, reseal=broken).run()
    assert report.renewed == 0 and report.packages_renewed == []
    assert report.failed == {document: "evidence package not renewed: the signer is unreachable"}
    assert report.backlog == 1 and report.backlog_deadline is not None
    with pytest.raises(ObjectNotFound):
        service.vault.get_record(f"{RECORD_PREFIX}{document}")

    again = _job(service, signer_service).run()  # resumed: renewed, and the package follows
    assert (again.packages_renewed, again.backlog, again.failed) == ([envelope], 0, {})
    # (the first pass's renewed object is in the vault too, and to the stand-in "current"
    # TSA it is due as well; with the real one it would not be)
    assert document in [original for original, _ in again.renewals]
    assert json.loads(service.vault.get_record(f"{RECORD_PREFIX}{document}"))["renewed"]


def test_several_workers_renew_every_envelope_once(
    service: StorageService, signer_service: SignerService
) -> None:
    envelopes = [f"env-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    documents = {_envelope(service, signer_service, e): e for e in envelopes}
    seen: list[tuple[int, int]] = []
    report = _job(service, signer_service, workers=3).run(
        progress=lambda done, total: seen.append((done, total))
    )
    assert report.failed == {} and report.backlog == 0
    assert sorted(original for original, _ in report.renewals) == sorted(documents)
    assert sorted(report.packages_renewed) == sorted(envelopes)
    done = [d for d, _ in seen]
    assert done == sorted(set(done)) and seen[-1][0] == seen[-1][1]  # in order, to the end
    for envelope in envelopes:
        newest = sealed(service.vault, envelope)
        assert newest is not None and newest["generation"] == 2
    for document in documents:
        assert json.loads(service.vault.get_record(f"{RECORD_PREFIX}{document}"))["renewed"]


def test_a_pass_stops_between_objects_when_told(
    service: StorageService, signer_service: SignerService
) -> None:
    for _ in range(2):
        _envelope(service, signer_service, f"env-{uuid.uuid4().hex[:8]}")
    asked: list[int] = []

    def stop() -> str | None:
        asked.append(1)
        return "lost the Lease" if len(asked) > 1 else None

    report = _job(service, signer_service, stop=stop).run()
    assert report.stopped == "lost the Lease" and len(asked) == 2
    # one object looked at (a document, or a package), and what it renewed recorded
    assert report.scanned <= 1 and report.renewed == report.scanned
    assert len(service.vault.records(RECORD_PREFIX)) == report.renewed


def _wait(what: str, check: object, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_the_period_runs_passes_and_readiness_reports_them(
    tmp_path: Path, signer_service: SignerService, signer_url: str
) -> None:
    signer_service.ca.ensure_ledger_seal(LEDGER_KEY)
    settings = _settings(
        tmp_path, signer_url, preservation_interval=3600, preservation_start_delay=0
    )
    service = StorageService(settings)
    try:
        pdf = _b_lta(signer_service, "Periodic")
        service.vault.put(io.BytesIO(pdf), content_type="application/pdf", kind=ObjectKind.FINAL)
        service.start_preservation()
        _wait("a periodic pass", lambda: service.preservation.status().last_run is not None)
        status = service.readiness().preservation
        assert status is not None and status.role == "single"
        last = status.last_run
        assert last is not None and not last.dry_run and last.error is None
        # stamped by the signer's current TSA, valid for years: nothing due
        assert (last.scanned, last.due, last.renewed, last.backlog) == (1, 0, 0, 0)
        assert status.last_success is not None and status.next_run is not None
        assert status.next_run.timestamp() > time.time() + 3000  # the next one in an hour
        # one pass at a time
        service.preservation._claim(dry_run=False)
        with pytest.raises(PassRunning, match="running since"):
            service.preservation.request(dry_run=True)
    finally:
        service.close()
    # The pass is recorded in the vault: a restarted service reports it before its own.
    restarted = StorageService(settings.model_copy(update={"preservation_interval": 0}))
    try:
        assert restarted.preservation.status().last_run is None
        restarted.start_preservation()
        _wait("the recorded pass", lambda: restarted.preservation.status().last_run is not None)
        again = restarted.preservation.status()
        assert again.last_run == last and again.last_success == status.last_success
        assert again.next_run is None  # no periodic passes here
    finally:
        restarted.close()


def test_a_pass_whose_signer_is_unreachable_says_why(tmp_path: Path) -> None:
    service = StorageService(_settings(tmp_path, "http://127.0.0.1:9"))
    try:
        result = service.preservation.run(dry_run=True)
        assert result.error is not None and "signer is unreachable" in result.error
        assert service.preservation.status().last_success is None
    finally:
        service.close()


@pytest.fixture(scope="module")
def kube() -> Iterator[RunningEmulator]:
    emulator = RunningEmulator(ROOT / "helm" / "signet" / "crds")
    try:
        yield emulator
    finally:
        emulator.close()


def test_only_the_leader_renews_a_standby_only_counts(
    tmp_path: Path, kube: RunningEmulator, signer_service: SignerService, signer_url: str
) -> None:
    lease = f"t{uuid.uuid4().hex[:8]}-tree-head-publisher"
    replicas = [
        StorageService(
            _settings(
                tmp_path / name,
                signer_url,
                lease_name=lease,
                lease_namespace="signet",
                lease_duration=2,
                lease_renew_deadline=1.3,
                lease_retry_period=0.2,
                kube_api_url=kube.url,
                vault_path=tmp_path / "shared-vault",
            )
        )
        for name in ("a", "b")
    ]
    try:
        for replica in replicas:
            replica.start_preservation()
        _wait(
            "a leader",
            lambda: sorted(r.lease_role() for r in replicas) == ["leader", "standby"],
            timeout=20,
        )
        standby = next(r for r in replicas if r.lease_role() == "standby")
        with pytest.raises(NotLeader) as refused:
            standby.preservation.request(dry_run=False)
        assert refused.value.code == "not_leader" and refused.value.status_code == 409
        assert "standby" in refused.value.detail
        counted = standby.preservation.run(dry_run=True)  # reading is anyone's
        assert counted.error is None and counted.dry_run
        assert standby.readiness().preservation.role == "standby"  # type: ignore[union-attr]
    finally:
        for replica in replicas:
            replica.close()


def test_a_generation_recorded_but_not_announced_is_announced_before_the_next(
    service: StorageService, signer_service: SignerService
) -> None:
    """A crash between a newer package's record and its ledger event: the next one
    announces it first, so every generation has its `evidence.sealed` event."""
    from signet.storage.evidence_seal import _make_seal

    envelope = f"env-{uuid.uuid4().hex[:8]}"
    _envelope(service, signer_service, envelope)
    pki = service.signer.pki()
    first = sealed(service.vault, envelope)
    orphan = _make_seal(
        envelope, service.vault, service.ledger, service.signer, pki, previous=first
    )  # recorded, then "the process died"
    assert sealed(service.vault, envelope) == orphan

    def announced() -> list[dict[str, str]]:
        leaves = [
            json.loads(service.ledger.leaf(i)) for i in service.ledger.envelope_indexes(envelope)
        ]
        return [leaf["details"] for leaf in leaves if leaf["event_type"] == "evidence.sealed"]

    assert [d.get("generation", "1") for d in announced()] == ["1"]
    third = supersede_package(
        envelope, vault=service.vault, ledger=service.ledger, signer=service.signer, pki=pki
    )
    assert third is not None and third.generation == 3
    details = announced()
    assert [d.get("generation", "1") for d in details] == ["1", "2", "3"]
    assert details[1]["package_sha256"] == orphan["package_sha256"]
    assert details[2]["supersedes"] == orphan["package_sha256"]
