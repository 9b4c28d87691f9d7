"""The preservation job wired into storage, through real processes.

`signet up` (signer, storage and portal processes) with its vault on a real S3
server with Object Lock (SeaweedFS): documents sealed at B-LTA by the running
signer, stored, named by ledger events and sealed into an evidence package; then
`signet ca rotate-tsa` in its own process, and `signet storage preserve` (dry run,
pass, pass again) asking the storage process.  What the operator sees is read where
they read it: the command's output, storage's `/readyz`, its `/metrics`, the newer
evidence package and `signet verify-evidence` on both packages.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import time
import zipfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from asn1crypto import x509

from tests.common.test_metrics import Scrape
from tests.support.appliance import SIGNET, Appliance, running_appliance
from tests.support.pdfs import make_pdf
from tests.support.seaweed import start_seaweedfs, stop

ENVELOPE = "env-preserve-1"
SEAL_KEY = "signet-default-seal"


@pytest.fixture(scope="module")
def appliance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Appliance]:
    base = tmp_path_factory.mktemp("preserve-e2e")
    (base / "seaweedfs").mkdir()
    s3, weed = start_seaweedfs(base / "seaweedfs")
    env = {
        "SIGNET_STORAGE_VAULT": "s3",
        "SIGNET_STORAGE_S3_ENDPOINT": s3.endpoint,
        "SIGNET_STORAGE_S3_ACCESS_KEY": s3.access_key,
        "SIGNET_STORAGE_S3_SECRET_KEY": s3.secret_key,
        "SIGNET_STORAGE_S3_BUCKET": "signet-preserve",
        # the periodic pass is tested in-process; here every pass is asked for by hand
        "SIGNET_STORAGE_PRESERVATION_START_DELAY": "3600",
    }
    try:
        with running_appliance(base / "home", **env) as running:
            yield running
    finally:
        stop(weed)


def _admin(appliance: Appliance, port: int) -> httpx.Client:
    token = (appliance.home / "service-token").read_text().strip()
    return httpx.Client(
        base_url=f"http://127.0.0.1:{port}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=120,
    )


def _cli(appliance: Appliance, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"SIGNET_HOME": str(appliance.home), "COLUMNS": "200", "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [SIGNET, *args], env=env | appliance.extra_env, capture_output=True, text=True, timeout=300
    )


def _preserve(appliance: Appliance, *flags: str) -> subprocess.CompletedProcess[str]:
    url = f"http://127.0.0.1:{appliance.port + 1}"
    return _cli(appliance, "storage", "preserve", "--url", url, "--poll", "0.2", *flags)


def _seal_b_lta(signer: httpx.Client, title: str) -> bytes:
    options = {"key_label": SEAL_KEY, "level": "B-LTA"}
    response = signer.post(
        "/v1/sign",
        files={"document": ("d.pdf", make_pdf(title=title), "application/pdf")},
        data={"options": json.dumps(options)},
    )
    assert response.status_code == 200, response.text
    return response.content


def _store(storage: httpx.Client, pdf: bytes, kind: str) -> str:
    headers = {
        "Content-Type": "application/pdf",
        "X-Signet-Kind": kind,
        "X-Signet-Envelope": ENVELOPE,
    }
    response = storage.put("/v1/objects", content=pdf, headers=headers)
    assert response.status_code in (200, 201), response.text
    return str(response.json()["sha256"])


def _event(storage: httpx.Client, event_type: str, hashes: list[str]) -> None:
    body = {
        "event_type": event_type,
        "envelope_id": ENVELOPE,
        "actor": "alice@example.com",
        "document_hashes": hashes,
    }
    assert storage.post("/v1/ledger/events", json=body).status_code == 201


def _verify(appliance: Appliance, package: Path, root: Path) -> dict[str, Any]:
    done = _cli(appliance, "verify-evidence", str(package), "--root", str(root), "--json")
    verdict: dict[str, Any] = json.loads(done.stdout)
    assert done.returncode == (0 if verdict["intact"] else 1), done.stderr
    return verdict


def test_a_rollover_then_preserve_renews_into_new_objects_and_a_newer_package(
    appliance: Appliance, tmp_path: Path
) -> None:
    signer, storage = _admin(appliance, appliance.port), _admin(appliance, appliance.port + 1)
    root = tmp_path / "root.cer"
    root.write_bytes(signer.get("/ca/root.cer").content)
    revision = _seal_b_lta(signer, "Revision")
    final = _seal_b_lta(signer, "Final")
    original = _store(storage, make_pdf(title="Unsigned"), "original")
    revision_sha, final_sha = _store(storage, revision, "revision"), _store(storage, final, "final")
    _event(storage, "envelope.created", [original])
    _event(storage, "document.signed", [revision_sha])
    _event(storage, "envelope.completed", [final_sha])
    sealed = storage.post(f"/v1/envelopes/{ENVELOPE}/evidence")
    assert sealed.status_code == 201, sealed.text
    first = storage.get(f"/v1/envelopes/{ENVELOPE}/evidence")
    old_package = tmp_path / "old.zip"
    old_package.write_bytes(first.content)
    old_sha = hashlib.sha256(first.content).hexdigest()
    assert first.headers["X-Signet-Sha256"] == old_sha == sealed.json()["package_sha256"]

    # Before the rollover nothing is due: the TSA that stamped them is current.
    before = _preserve(appliance, "--dry-run", "--json")
    assert before.returncode == 0, before.stderr
    report = json.loads(before.stdout)
    assert (report["scanned"], report["due"], report["backlog"]) == (2, 0, 0)

    old_tsa = x509.Certificate.load(signer.get("/ca/tsa.cer").content)
    rotated = _cli(appliance, "ca", "rotate-tsa")
    assert rotated.returncode == 0, rotated.stderr
    deadline = time.monotonic() + 30
    while signer.get("/ca/tsa.cer").content == old_tsa.dump():  # the signer notices
        assert time.monotonic() < deadline, "the running signer kept the old TSA key"
        time.sleep(0.5)

    dry = json.loads(_preserve(appliance, "--dry-run", "--json").stdout)
    expiry = old_tsa["tbs_certificate"]["validity"]["not_after"].native
    assert (dry["dry_run"], dry["due"], dry["renewed"], dry["backlog"]) == (True, 2, 0, 2)
    assert dry["backlog_deadline"].startswith(expiry.strftime("%Y-%m-%dT%H:%M:%S"))
    ledger_before = storage.get("/readyz").json()["ledger_size"]

    done = _preserve(appliance)  # the human output, with its progress bar on stderr
    assert done.returncode == 0, done.stdout + done.stderr
    assert "renewed" in done.stdout and "evidence packages renewed" in done.stdout

    ready = storage.get("/readyz").json()
    state = ready["preservation"]
    assert state["role"] == "single" and state["running"] is None
    last = state["last_run"]
    assert (last["dry_run"], last["due"], last["renewed"], last["failed"]) == (False, 2, 2, 0)
    assert (last["packages_renewed"], last["backlog"], last["backlog_deadline"]) == (1, 0, None)
    assert state["last_success"] is not None
    # two document.preserved events, the newer package's evidence.sealed
    assert ready["ledger_size"] == ledger_before + 3

    scrape = Scrape(httpx.get(f"{storage.base_url}/metrics").text)
    assert scrape.value("signet_preservation_renewals_total", outcome="renewed") == 2
    assert scrape.value("signet_preservation_renewals_total", outcome="failed") == 0
    assert scrape.value("signet_preservation_backlog") == 0
    assert scrape.value("signet_preservation_last_success_timestamp_seconds") > time.time() - 600
    assert scrape.value("signet_preservation_passes_total", kind="dry_run", outcome="ok") == 2

    # the originals are untouched; the renewals are new objects of the same kind, kept as long
    kinds = {revision_sha: "revision", final_sha: "final"}
    for sha, pdf in ((revision_sha, revision), (final_sha, final)):
        assert storage.get(f"/v1/objects/{sha}").content == pdf
    events = storage.get(f"/v1/ledger/envelopes/{ENVELOPE}/events").json()
    preserved = [e for e in events["events"] if e["event_type"] == "document.preserved"]
    pairs = {e["document_hashes"][0]: e["document_hashes"][1] for e in preserved}
    assert set(pairs) == {revision_sha, final_sha}
    for old, new in pairs.items():
        renewed = storage.get(f"/v1/objects/{new}")
        assert renewed.status_code == 200
        assert renewed.headers["X-Signet-Kind"] == kinds[old]
        kept = storage.head(f"/v1/objects/{old}").headers["X-Signet-Retain-Until"]
        retained = datetime.fromisoformat(renewed.headers["X-Signet-Retain-Until"])
        assert retained >= datetime.fromisoformat(kept)
        assert renewed.content.startswith(storage.get(f"/v1/objects/{old}").content)

    # the newer package: a new object, served now, naming the one it supersedes
    second = storage.get(f"/v1/envelopes/{ENVELOPE}/evidence")
    new_sha = hashlib.sha256(second.content).hexdigest()
    assert new_sha != old_sha and second.headers["X-Signet-Sha256"] == new_sha
    new_package = tmp_path / "new.zip"
    new_package.write_bytes(second.content)
    with zipfile.ZipFile(io.BytesIO(second.content)) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        names = set(archive.namelist())
        summary = archive.read("summary.txt").decode()
    assert manifest["supersedes"]["package_sha256"] == old_sha
    assert manifest["supersedes"]["generation"] == 1
    assert {f"documents/{sha}.pdf" for sha in [*pairs, *pairs.values()]} <= names
    assert f"It supersedes the package {old_sha} (generation 1)" in summary
    # the old package is still in the vault, as it was
    assert storage.get(f"/v1/objects/{old_sha}").content == first.content

    verdict = _verify(appliance, new_package, root)
    assert verdict["intact"], verdict
    (superseding,) = [c for c in verdict["checks"] if c["check"] == "supersedes"]
    assert old_sha in superseding["detail"]
    old_verdict = _verify(appliance, old_package, root)
    assert old_verdict["intact"], old_verdict
    assert not [c for c in old_verdict["checks"] if c["check"] == "supersedes"]

    # a second pass in the same window renews nothing and makes no newer package
    again = json.loads(_preserve(appliance, "--json").stdout)
    assert (again["renewed"], again["already_preserved"], again["packages_renewed"]) == (0, 2, 0)
    assert again["scanned"] == 4 and again["due"] == 0
    third = storage.get(f"/v1/envelopes/{ENVELOPE}/evidence")
    assert third.headers["X-Signet-Sha256"] == new_sha


def test_the_preservation_routes_are_the_admins_alone(appliance: Appliance) -> None:
    base = f"http://127.0.0.1:{appliance.port + 1}"
    portal_token = (appliance.home / "tokens" / "portal").read_text().strip()
    for path, method in (("/v1/preservation", "GET"), ("/v1/preservation/runs", "POST")):
        assert httpx.request(method, base + path, json={}).status_code == 401
        wrong = httpx.request(
            method, base + path, json={}, headers={"Authorization": f"Bearer {portal_token}"}
        )
        assert wrong.status_code == 403, wrong.text
        assert set(wrong.json()) >= {"error", "detail"}
    with _admin(appliance, appliance.port + 1) as admin:
        for body in ({"dry_run": "perhaps"}, {"dry_run": True, "extra": 1}, [1]):
            bad = admin.post("/v1/preservation/runs", json=body)
            assert bad.status_code == 422, bad.text
            assert set(bad.json()) >= {"error", "detail"}
        huge = admin.post(
            "/v1/preservation/runs",
            content=b'{"dry_run": false, "pad": "' + b"x" * (2 * 1024 * 1024) + b'"}',
            headers={"Content-Type": "application/json"},
        )
        assert huge.status_code in (413, 422), huge.text
        assert set(huge.json()) >= {"error", "detail"}
        bad_json = admin.post(
            "/v1/preservation/runs", content=b"{", headers={"Content-Type": "application/json"}
        )
        assert bad_json.status_code == 422
