"""The signed evidence manifest, and the package sealed once per envelope.

A real signer (the ledger seal in SoftHSM, its TSA) signs the manifest; storage
keeps the sealed zip in the vault and the manifest's hash in the ledger.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from signet.signer.service import SignerService
from signet.storage.app import create_app
from signet.storage.config import StorageSettings
from signet.storage.evidence import verify_package

from tests.conftest import SERVICE_TOKEN
from tests.storage.conftest import new_bucket
from tests.storage.test_api import (  # noqa: F401  (the `storage` fixture)
    LEDGER_KEY,
    _envelope_with_evidence,
    _event,
    _rezip,
    storage,
)
from tests.support.seaweed import S3Server


def _failed(package: bytes, root_pem: bytes) -> dict[str, str]:
    return {c.what: c.detail for c in verify_package(io.BytesIO(package), root_pem) if not c.ok}


def _manifest(package: bytes) -> dict[str, object]:
    loaded: dict[str, object] = json.loads(
        zipfile.ZipFile(io.BytesIO(package)).read("manifest.json")
    )
    return loaded


def test_the_manifest_is_signed_and_names_itself_when_changed(
    storage: TestClient,  # noqa: F811
    ca_files: Path,
) -> None:
    package = _envelope_with_evidence(storage, "env-M")
    root_pem = (ca_files / "root.pem").read_bytes()
    checks = verify_package(io.BytesIO(package), root_pem)
    assert not [c for c in checks if not c.ok], checks
    by_name = {c.what: c for c in checks}
    assert "Signet Evidence Ledger" in by_name["manifest signature"].detail
    assert "timestamped" in by_name["manifest signature"].detail
    assert by_name["summary.txt"].ok and by_name["manifest"].ok
    manifest = _manifest(package)
    assert manifest["format"] == "signet-evidence/2" and manifest["sealed"] is False
    names = zipfile.ZipFile(io.BytesIO(package)).namelist()
    assert "manifest.p7s" in names

    # Anything the manifest states, changed (even re-indented): the manifest is named.
    for change in (
        lambda m: m | {"sealed": True},
        lambda m: m | {"created": "2020-01-01T00:00:00+00:00"},
        lambda m: m | {"envelope_id": "env-other"},
        lambda m: m | {"tree_head": {**m["tree_head"], "tree_size": 1}},  # type: ignore[dict-item]
    ):
        changed = json.dumps(change(dict(manifest)), indent=2, sort_keys=True).encode()
        failed = _failed(_rezip(package, "manifest.json", changed), root_pem)
        assert "manifest.json does not match its signature" in failed["manifest signature"]
    reformatted = json.dumps(manifest).encode()
    failed = _failed(_rezip(package, "manifest.json", reformatted), root_pem)
    assert list(failed) == ["manifest signature"]

    # The signature removed, or broken: named.
    failed = _failed(_rezip(package, "manifest.p7s", None), root_pem)
    assert failed == {"manifest signature": "manifest.p7s is missing: the manifest is unsigned"}
    p7s = zipfile.ZipFile(io.BytesIO(package)).read("manifest.p7s")
    failed = _failed(_rezip(package, "manifest.p7s", p7s[:-40]), root_pem)
    assert "manifest.p7s" in failed["manifest signature"]

    # A member removed, or one added: named.
    document = next(n for n in names if n.startswith("documents/"))
    failed = _failed(_rezip(package, document, None), root_pem)
    assert f"{document} is missing" in failed["package members"]
    assert "the package lacks" in failed["manifest"]
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for name in names:
            target.writestr(name, zipfile.ZipFile(io.BytesIO(package)).read(name))
        target.writestr("documents/extra.pdf", b"%PDF-1.7 not from the ledger")
    failed = _failed(out.getvalue(), root_pem)
    assert "documents/extra.pdf was added" in failed["package members"]

    # A summary.txt that says something else, even with the manifest's hash fixed.
    summary = zipfile.ZipFile(io.BytesIO(package)).read("summary.txt")
    lie = summary.replace(b"bob@example.com", b"eve@example.com")
    failed = _failed(_rezip(package, "summary.txt", lie), root_pem)
    assert "summary.txt was altered" in failed["package members"]
    assert "disagrees with the signed manifest" in failed["summary.txt"]
    files = dict(manifest["files"])  # type: ignore[call-overload]
    files["summary.txt"] = hashlib.sha256(lie).hexdigest()
    refreshed = json.dumps(manifest | {"files": files}, indent=2, sort_keys=True).encode()
    failed = _failed(
        _rezip(_rezip(package, "summary.txt", lie), "manifest.json", refreshed), root_pem
    )
    assert set(failed) == {"manifest signature", "summary.txt"}
    assert "eve@example.com" in failed["summary.txt"]


def test_a_package_from_before_signed_manifests_verifies_with_a_warning(
    storage: TestClient,  # noqa: F811
    ca_files: Path,
    tmp_path: Path,
) -> None:
    package = _envelope_with_evidence(storage, "env-O")
    root_pem = (ca_files / "root.pem").read_bytes()
    manifest = _manifest(package)
    old = {k: manifest[k] for k in ("envelope_id", "created", "files")}
    old_manifest = json.dumps(old | {"format": "signet-evidence/1"}, indent=2).encode()
    legacy = _rezip(_rezip(package, "manifest.p7s", None), "manifest.json", old_manifest)
    checks = verify_package(io.BytesIO(legacy), root_pem)
    assert not [c for c in checks if not c.ok], checks
    warned = [c for c in checks if c.warning]
    assert [c.what for c in warned] == ["manifest signature"]
    assert "unsigned" in warned[0].detail
    # an old package's member is still named when altered
    entry = next(n for n in zipfile.ZipFile(io.BytesIO(legacy)).namelist() if "entries/" in n)
    failed = _failed(_rezip(legacy, entry, b"{}"), root_pem)
    assert f"{entry} was altered" in failed["package members"]

    # The command line says so, and passes it.
    path = tmp_path / "legacy.zip"
    path.write_bytes(legacy)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNET_")}
    result = subprocess.run(
        [sys.executable, "-m", "signet.cli", "verify-evidence", str(path), "--root",
         str(ca_files / "root.pem")],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "warning" in result.stdout and "unsigned" in result.stdout
    # for machines: one JSON document, the same verdict, the same exit codes
    as_json = subprocess.run(
        [sys.executable, "-m", "signet.cli", "verify-evidence", str(path), "--root",
         str(ca_files / "root.pem"), "--json"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert as_json.returncode == 0, as_json.stderr
    verdict = json.loads(as_json.stdout)
    assert verdict["intact"] is True and verdict["failed"] == []
    assert [c["check"] for c in verdict["checks"] if c["warning"]] == ["manifest signature"]
    path.write_bytes(_rezip(legacy, entry, b"{}"))
    broken = subprocess.run(
        [sys.executable, "-m", "signet.cli", "verify-evidence", str(path), "--root",
         str(ca_files / "root.pem"), "--json"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert broken.returncode == 1
    verdict = json.loads(broken.stdout)
    assert verdict["intact"] is False and "package members" in verdict["failed"]


def test_sealing_stores_the_package_once_and_records_its_manifest_in_the_ledger(
    storage: TestClient,  # noqa: F811
    ca_files: Path,
) -> None:
    _envelope_with_evidence(storage, "env-S")
    preview = storage.get("/v1/envelopes/env-S/evidence")
    assert _manifest(preview.content)["sealed"] is False
    assert "X-Signet-Sha256" not in preview.headers

    sealed = storage.post("/v1/envelopes/env-S/evidence")
    assert sealed.status_code == 201, sealed.text
    seal = sealed.json()
    again = storage.post("/v1/envelopes/env-S/evidence")
    assert again.status_code == 200 and again.json() == seal

    first = storage.get("/v1/envelopes/env-S/evidence")
    second = storage.get("/v1/envelopes/env-S/evidence")
    assert first.status_code == 200 and first.content == second.content
    assert hashlib.sha256(first.content).hexdigest() == seal["package_sha256"]
    assert first.headers["x-signet-sha256"] == seal["package_sha256"]
    assert len(first.content) == seal["size"]
    stored = storage.get(f"/v1/objects/{seal['package_sha256']}")
    assert stored.content == first.content
    manifest = zipfile.ZipFile(io.BytesIO(first.content)).read("manifest.json")
    assert hashlib.sha256(manifest).hexdigest() == seal["manifest_sha256"]
    assert json.loads(manifest)["sealed"] is True
    root_pem = (ca_files / "root.pem").read_bytes()
    checks = verify_package(io.BytesIO(first.content), root_pem)
    assert not [c for c in checks if not c.ok], checks
    assert {c.what: c.detail for c in checks}["manifest"] == "sealed package"

    # The manifest's hash is an event of the envelope, under a signed tree head.
    timeline = storage.get("/v1/ledger/envelopes/env-S/events").json()["events"]
    last = timeline[-1]
    assert last["event_type"] == "evidence.sealed" and last["index"] == seal["ledger_index"]
    assert last["details"]["manifest_sha256"] == seal["manifest_sha256"]
    assert last["details"]["package_sha256"] == seal["package_sha256"]
    assert last["leaf_hash"] == seal["leaf_hash"]
    head = storage.get("/v1/ledger/tree-head").json()
    assert head["tree_size"] > seal["ledger_index"] and head["signature"]
    assert len([e for e in timeline if e["event_type"] == "evidence.sealed"]) == 1

    # Later events do not change the sealed package.
    storage.post("/v1/ledger/events", json=_event("env-S", "envelope.viewed", [], "carol"))
    assert storage.get("/v1/envelopes/env-S/evidence").content == first.content
    assert storage.post("/v1/envelopes/nothing-here/evidence").status_code == 404
    assert storage.post("/v1/envelopes/%2E%2E/evidence").status_code == 422
    assert storage.get("/v1/envelopes/a%20b/evidence").status_code == 422


@pytest.mark.parametrize("kind", ["filesystem", "s3"])
def test_a_sealed_package_is_the_same_bytes_after_a_restart_on_both_vaults(
    kind: str,
    request: pytest.FixtureRequest,
    signer_service: SignerService,
    signer_url: str,
    tmp_path: Path,
    ca_files: Path,
) -> None:
    signer_service.ca.ensure_ledger_seal(LEDGER_KEY)
    settings = StorageSettings(
        home=tmp_path / "storage",
        service_token=SecretStr(SERVICE_TOKEN),
        signer_url=signer_url,
        ledger_key_label=LEDGER_KEY,
        tree_head_interval=0,
    )
    if kind == "s3":
        s3: S3Server = request.getfixturevalue("s3_server")
        settings = settings.model_copy(
            update={
                "vault": "s3",
                "s3_endpoint": s3.endpoint,
                "s3_access_key": SecretStr(s3.access_key),
                "s3_secret_key": SecretStr(s3.secret_key),
                "s3_bucket": new_bucket(),
            }
        )
    headers = {"Authorization": f"Bearer {SERVICE_TOKEN}"}
    with TestClient(create_app(settings), headers=headers) as client:
        _envelope_with_evidence(client, "env-R")
        seal = client.post("/v1/envelopes/env-R/evidence").json()
        package = client.get("/v1/envelopes/env-R/evidence").content
        size = client.get("/readyz").json()["ledger_size"]
    with TestClient(create_app(settings), headers=headers) as client:
        assert client.get("/v1/envelopes/env-R/evidence").content == package
        again = client.post("/v1/envelopes/env-R/evidence")
        assert again.status_code == 200 and again.json() == seal
        assert client.get("/readyz").json()["ledger_size"] == size  # nothing appended again
    assert hashlib.sha256(package).hexdigest() == seal["package_sha256"]
    checks = verify_package(io.BytesIO(package), (ca_files / "root.pem").read_bytes())
    assert not [c for c in checks if not c.ok], checks
