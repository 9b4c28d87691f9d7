"""The storage API end to end: objects, ledger, signed tree heads, evidence packages offline."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from minio import Minio
from pydantic import SecretStr
from signet.signer.service import SignerService
from signet.storage.app import create_app
from signet.storage.config import StorageSettings
from signet.storage.evidence import verify_package
from signet.storage.merkle import verify_consistency, verify_inclusion
from signet.storage.s3_vault import S3Vault
from signet.storage.service import StorageService
from signet.storage.vault import CHUNK, IN_MEMORY

from tests.conftest import SERVICE_TOKEN
from tests.storage.conftest import new_bucket
from tests.support.pdfs import make_pdf
from tests.support.seaweed import S3Server

LEDGER_KEY = "signet-ledger-seal"


@pytest.fixture
def storage(signer_service: SignerService, signer_url: str, tmp_path: Path) -> Iterator[TestClient]:
    signer_service.ca.ensure_ledger_seal(LEDGER_KEY)
    settings = StorageSettings(
        home=tmp_path / "storage",
        service_token=SecretStr(SERVICE_TOKEN),
        signer_url=signer_url,
        ledger_key_label=LEDGER_KEY,
        tree_head_interval=0,
    )
    with TestClient(create_app(settings)) as client:
        client.headers["Authorization"] = f"Bearer {SERVICE_TOKEN}"
        yield client


def _put(client: TestClient, data: bytes, envelope: str = "env-1", kind: str = "original") -> str:
    response = client.put(
        "/v1/objects",
        content=data,
        headers={
            "Content-Type": "application/pdf",
            "X-Signet-Kind": kind,
            "X-Signet-Envelope": envelope,
        },
    )
    assert response.status_code in (200, 201), response.text
    sha: str = response.json()["sha256"]
    return sha


def test_objects_through_the_api(storage: TestClient) -> None:
    data = make_pdf(2)
    first = storage.put("/v1/objects", content=data, headers={"Content-Type": "application/pdf"})
    assert first.status_code == 201
    sha = first.json()["sha256"]
    assert sha == hashlib.sha256(data).hexdigest()
    again = storage.put("/v1/objects", content=data)
    assert again.status_code == 200 and again.json()["sha256"] == sha
    fetched = storage.get(f"/v1/objects/{sha}")
    assert fetched.content == data and fetched.headers["content-type"] == "application/pdf"
    head = storage.head(f"/v1/objects/{sha}")
    assert head.status_code == 200 and head.headers["x-signet-sha256"] == sha

    info = first.json()
    until = datetime.fromisoformat(info["retain_until"])
    shorter = storage.post(
        f"/v1/objects/{sha}/retention",
        json={"retain_until": (until - timedelta(days=1)).isoformat()},
    )
    assert shorter.status_code == 409 and shorter.json()["error"] == "retention_violation"
    longer = storage.post(
        f"/v1/objects/{sha}/retention",
        json={"retain_until": (until + timedelta(days=365)).isoformat()},
    )
    assert longer.status_code == 200
    assert storage.post(f"/v1/objects/{sha}/legal-hold", json={"on": True}).json()["legal_hold"]
    assert storage.delete(f"/v1/objects/{sha}").status_code == 405  # there is no delete
    assert storage.get(f"/v1/objects/{'0' * 64}").status_code == 404
    assert storage.get("/v1/objects/not-a-hash").status_code == 400
    assert (
        httpx.Client(transport=storage._transport, base_url="http://testserver")
        .get(  # type: ignore[attr-defined]
            f"/v1/objects/{sha}"
        )
        .status_code
        == 401
    )
    ready = storage.get("/readyz").json()
    assert ready["status"] == "ready" and ready["vault"] == "filesystem"
    assert ready["retention_years"] == 10


def _event(envelope: str, event_type: str, hashes: list[str], actor: str) -> dict[str, object]:
    return {
        "event_type": event_type,
        "envelope_id": envelope,
        "actor": actor,
        "ip": "192.0.2.10",
        "user_agent": "Mozilla/5.0 (X11; Linux x86_64)",
        "document_hashes": hashes,
        "auth_method": "otp-email",
    }


def test_ledger_events_tree_heads_and_proofs(storage: TestClient) -> None:
    receipts = [
        storage.post("/v1/ledger/events", json=_event("env-L", "envelope.sent", [], f"u{n}")).json()
        for n in range(9)
    ]
    assert [r["index"] for r in receipts] == list(range(9))
    assert storage.get("/v1/ledger/tree-head").status_code == 404  # nothing signed yet
    head = storage.get("/v1/ledger/tree-head", params={"fresh": True}).json()
    assert head["tree_size"] == 9 and head["signature"] and head["timestamp_token"]
    proof = storage.get("/v1/ledger/proof/inclusion", params={"index": 4}).json()
    assert verify_inclusion(
        4,
        9,
        bytes.fromhex(proof["leaf_hash"]),
        [bytes.fromhex(p) for p in proof["audit_path"]],
        bytes.fromhex(head["root_hash"]),
    )
    for _ in range(5):
        storage.post("/v1/ledger/events", json=_event("env-L", "envelope.viewed", [], "x"))
    newer = storage.get("/v1/ledger/tree-head", params={"fresh": True}).json()
    consistency = storage.get("/v1/ledger/proof/consistency", params={"first": 9}).json()
    assert verify_consistency(
        9,
        14,
        bytes.fromhex(head["root_hash"]),
        bytes.fromhex(newer["root_hash"]),
        [bytes.fromhex(p) for p in consistency["path"]],
    )
    bad = storage.post("/v1/ledger/events", json={"event_type": "x", "envelope_id": "e"})
    assert bad.status_code == 422


def _envelope_with_evidence(storage: TestClient, envelope: str) -> bytes:
    original = _put(storage, make_pdf(1, title="Lease"), envelope)
    final = _put(storage, make_pdf(1, title="Lease, signed"), envelope, kind="final")
    for event_type, hashes, actor in (
        ("envelope.created", [original], "alice@example.com"),
        ("envelope.sent", [original], "alice@example.com"),
        ("document.signed", [final], "bob@example.com"),
        ("envelope.completed", [original, final], "signet"),
    ):
        created = storage.post(
            "/v1/ledger/events", json=_event(envelope, event_type, hashes, actor)
        )
        assert created.status_code == 201
        storage.post("/v1/ledger/events", json=_event("other-envelope", "noise", [], "zz"))
    package = storage.get(f"/v1/envelopes/{envelope}/evidence")
    assert package.status_code == 200, package.text
    return package.content


def _rezip(package: bytes, member: str, change: bytes | None) -> bytes:
    """The package with one member's bytes changed (or removed), manifest untouched."""
    source = zipfile.ZipFile(io.BytesIO(package))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for name in source.namelist():
            data = source.read(name)
            if name == member:
                if change is None:
                    continue
                data = change
            target.writestr(name, data)
    return out.getvalue()


def _flip(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0x20]) + data[middle + 1 :]


def test_evidence_package_verifies_offline_and_names_any_tampering(
    storage: TestClient, ca_files: Path, tmp_path: Path
) -> None:
    package = _envelope_with_evidence(storage, "env-E")
    root_pem = (ca_files / "root.pem").read_bytes()
    checks = verify_package(io.BytesIO(package), root_pem)
    failed = [c for c in checks if not c.ok]
    assert not failed, failed
    names = zipfile.ZipFile(io.BytesIO(package)).namelist()
    assert sum(n.startswith("ledger/entries/") for n in names) == 4
    assert sum(n.startswith("documents/") for n in names) == 2
    summary = zipfile.ZipFile(io.BytesIO(package)).read("summary.txt").decode()
    assert "bob@example.com" in summary and "document.signed" in summary
    chinese = zipfile.ZipFile(io.BytesIO(package)).read("summary.zh-CN.txt").decode()
    assert chinese.startswith("信封 ") and "操作者 bob@example.com" in chinese
    spanish = zipfile.ZipFile(io.BytesIO(package)).read("summary.es.txt").decode()
    assert spanish.startswith("Paquete de evidencias") and "por bob@example.com" in spanish

    # Any byte of any member, changed: the member is named.
    for member in names:
        if member in ("manifest.json", "manifest.p7s"):  # tests/storage/test_evidence_manifest.py
            continue
        original = zipfile.ZipFile(io.BytesIO(package)).read(member)
        tampered = _rezip(package, member, _flip(original))
        failed = [c for c in verify_package(io.BytesIO(tampered), root_pem) if not c.ok]
        assert failed and member in failed[0].detail, (member, failed)

    # A forger who also fixes the manifest is caught by the cryptography, and named.
    archive = zipfile.ZipFile(io.BytesIO(package))
    entry = next(n for n in names if n.startswith("ledger/entries/"))
    forged_entry = archive.read(entry).replace(b"alice@example.com", b"mallory@example.co")
    manifest = json.loads(archive.read("manifest.json"))
    manifest["files"][entry] = hashlib.sha256(forged_entry).hexdigest()
    forged = _rezip(
        _rezip(package, entry, forged_entry), "manifest.json", json.dumps(manifest).encode()
    )
    failed = [c for c in verify_package(io.BytesIO(forged), root_pem) if not c.ok]
    index = int(entry.rsplit("/", 1)[1][:12])
    assert [c.what for c in failed] == [
        "manifest signature",  # the manifest is not what the ledger seal signed
        f"ledger entry {index}",
        "envelope events complete",  # the next event names the true entry's hash
        "summary.txt",  # rendered from the forged entry, it no longer says what is written
        "summary.zh-CN.txt",  # and so in every language the package has
        "summary.es.txt",
    ]
    assert "manifest.json does not match its signature" in failed[0].detail
    assert "not in the signed tree" in failed[1].detail

    # Another installation's root does not vouch for this ledger.
    from asn1crypto import pem
    from cryptography.hazmat.primitives.asymmetric import ec

    from tests.support.selfsigned import self_signed

    stranger = self_signed(ec.generate_private_key(ec.SECP256R1()))
    stranger_pem = pem.armor("CERTIFICATE", stranger.dump())
    failed = [c.what for c in verify_package(io.BytesIO(package), stranger_pem) if not c.ok]
    assert "ledger seal certificate" in failed and "tree head timestamp" in failed

    # The command line, offline, with exit codes.
    good, bad = tmp_path / "good.zip", tmp_path / "bad.zip"
    good.write_bytes(package)
    bad.write_bytes(forged)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNET_")}
    for path, code in ((good, 0), (bad, 1)):
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "signet.cli",
                "verify-evidence",
                str(path),
                "--root",
                str(ca_files / "root.pem"),
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert result.returncode == code, result.stdout + result.stderr
    assert storage.get("/v1/envelopes/nothing-here/evidence").status_code == 404


# -- the objects API without a signer, on both vaults --------------------------------------


@pytest.fixture(params=["filesystem", "s3"])
def objects_api(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestClient]:
    """The storage API alone (objects need no signer) on a filesystem or an S3 vault."""
    settings = StorageSettings(
        home=tmp_path / "storage",
        service_token=SecretStr(SERVICE_TOKEN),
        tree_head_interval=0,
        retention_years=5,
    )
    if request.param == "s3":
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
    with TestClient(create_app(settings)) as client:
        client.headers["Authorization"] = f"Bearer {SERVICE_TOKEN}"
        yield client


def _service(client: TestClient) -> StorageService:
    service: StorageService = client.app.state.service  # type: ignore[attr-defined]
    return service


def test_put_get_head_round_trip_small_streamed_and_spilled(objects_api: TestClient) -> None:
    """100 KB (one body), 3 MB (streamed in chunks) and 17 MB (spilled to the staging
    file while received, multipart on S3): the same bytes come back, the same headers."""
    for size in (100_000, 3 * CHUNK + 1, IN_MEMORY + CHUNK):
        data = os.urandom(size)
        put = objects_api.put(
            "/v1/objects",
            content=data,
            headers={"Content-Type": "application/pdf", "X-Signet-Envelope": "env-9"},
        )
        assert put.status_code == 201, put.text
        info = put.json()
        assert info["sha256"] == hashlib.sha256(data).hexdigest() and info["size"] == size
        got = objects_api.get(f"/v1/objects/{info['sha256']}")
        assert got.status_code == 200 and got.content == data
        head = objects_api.head(f"/v1/objects/{info['sha256']}")
        for response in (got, head):
            assert response.headers["content-length"] == str(size)
            assert response.headers["x-signet-envelope"] == "env-9"
            assert datetime.fromisoformat(
                response.headers["x-signet-retain-until"]
            ) == datetime.fromisoformat(info["retain_until"])
    assert not list(_service(objects_api).vault.staging.glob("upload-*"))


@pytest.mark.parametrize("objects_api", ["s3"], indirect=True)
def test_s3_put_is_one_request_with_its_retention_and_a_later_get_shows_it(
    objects_api: TestClient, s3_server: S3Server
) -> None:
    vault = _service(objects_api).vault
    assert isinstance(vault, S3Vault)
    if not vault.conditional_writes:
        pytest.skip("this S3 server ignores If-None-Match: the vault checks with a HEAD first")
    calls: list[tuple[str, str]] = []
    send = vault._loop_requests.send

    async def counted(method: str, key: str, **kwargs: Any) -> Any:
        calls.append((method, key))
        return await send(method, key, **kwargs)

    vault._loop_requests.send = counted  # type: ignore[method-assign]
    data = os.urandom(100_000)
    sha = hashlib.sha256(data).hexdigest()
    first = objects_api.put("/v1/objects", content=data, headers={"X-Signet-Kind": "final"})
    assert first.status_code == 201
    assert calls == [("PUT", f"objects/{sha}")]  # bytes, metadata and retention at once

    calls.clear()
    got = objects_api.get(f"/v1/objects/{sha}")
    assert calls == [("GET", f"objects/{sha}")] and got.content == data
    until = datetime.fromisoformat(got.headers["x-signet-retain-until"])
    assert until == datetime.fromisoformat(first.json()["retain_until"])
    assert until > datetime.fromisoformat(first.json()["created_at"]) + timedelta(days=4 * 365)
    assert got.headers["x-signet-kind"] == "final" and got.headers["x-signet-legal-hold"] == "off"
    raw = Minio(
        s3_server.endpoint,
        access_key=s3_server.access_key,
        secret_key=s3_server.secret_key,
        secure=False,
    )
    retention = raw.get_object_retention(vault.bucket, f"objects/{sha}")
    assert retention is not None and retention.mode == "COMPLIANCE"
    assert retention.retain_until_date == until

    calls.clear()
    again = objects_api.put("/v1/objects", content=data, headers={"X-Signet-Kind": "report"})
    assert again.status_code == 200 and again.json() == first.json()  # first write wins
    assert calls == [("PUT", f"objects/{sha}"), ("HEAD", f"objects/{sha}")]  # refused, then read
    assert len(list(raw.list_objects(vault.bucket, f"objects/{sha}", include_version=True))) == 1


def test_a_wrong_expected_sha256_is_refused_and_nothing_is_stored(
    objects_api: TestClient,
) -> None:
    data, other = os.urandom(50_000), os.urandom(50_000)
    sha, claimed = hashlib.sha256(data).hexdigest(), hashlib.sha256(other).hexdigest()
    wrong = objects_api.put("/v1/objects", content=data, headers={"X-Signet-Sha256": claimed})
    assert wrong.status_code == 400 and wrong.json()["error"] == "digest_mismatch"
    assert sha in wrong.json()["detail"]
    assert objects_api.head(f"/v1/objects/{sha}").status_code == 404
    assert objects_api.head(f"/v1/objects/{claimed}").status_code == 404
    bad = objects_api.put("/v1/objects", content=data, headers={"X-Signet-Sha256": "abc"})
    assert bad.status_code == 400
    right = objects_api.put("/v1/objects", content=data, headers={"X-Signet-Sha256": sha})
    assert right.status_code == 201 and right.json()["sha256"] == sha
