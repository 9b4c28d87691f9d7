"""Per-caller tokens: the registry, the embedded installation's files, the redactor."""

from __future__ import annotations

import json
import logging
import stat
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError
from signet.common.auth import (
    CALLER_SCOPES,
    CallerEntry,
    Scope,
    TokenRegistry,
    needed_permission,
    registry_file,
    token_hash,
)
from signet.common.errors import Forbidden, Unauthorized
from signet.common.logging import RedactingFilter
from signet.signer.api.deps import ROUTES as SIGNER_ROUTES
from signet.storage.app import ROUTES as STORAGE_ROUTES
from signet.storage.config import StorageSettings


def test_a_registry_holds_hashes_and_tells_callers_apart() -> None:
    registry = TokenRegistry.load(
        entries=[
            CallerEntry(
                caller="storage", sha256=token_hash("s" * 43), scopes=CALLER_SCOPES["storage"]
            )
        ],
        admin_token="a" * 43,
    )
    assert registry.authorize("Bearer " + "s" * 43, Scope.DIGEST_SIGN).name == "storage"
    assert registry.authorize("bearer " + "a" * 43, Scope.RETENTION).name == "admin"
    with pytest.raises(Forbidden, match="storage"):
        registry.authorize("Bearer " + "s" * 43, Scope.CERTIFICATE_ISSUE)
    for header in ("", "Bearer", "Bearer " + "s" * 42, "Basic " + "s" * 43, token_hash("s" * 43)):
        with pytest.raises(Unauthorized):
            registry.authorize(header, Scope.DIGEST_SIGN)
    # the hash itself is no token
    with pytest.raises(Unauthorized):
        registry.authorize("Bearer " + token_hash("s" * 43), Scope.DIGEST_SIGN)


def test_an_entry_must_be_well_formed() -> None:
    with pytest.raises(ValidationError):
        CallerEntry(caller="portal", sha256="abc", scopes=frozenset())
    with pytest.raises(ValidationError):
        CallerEntry.model_validate({"caller": "x", "sha256": "0" * 64, "scopes": ["root"]})


def test_no_caller_but_admin_may_lift_a_hold_or_change_retention_or_revoke() -> None:
    for path, table in (
        ("/v1/objects/" + "0" * 64 + "/legal-hold", STORAGE_ROUTES),
        ("/v1/objects/" + "0" * 64 + "/retention", STORAGE_ROUTES),
        ("/v1/certificates/0A/revoke", SIGNER_ROUTES),
    ):
        needed = needed_permission(table, "POST", path)
        assert needed is not None
        for caller, scopes in CALLER_SCOPES.items():
            assert (needed in scopes or Scope.ADMIN in scopes) == (caller == "admin"), path


def test_unknown_routes_and_methods_need_admin() -> None:
    assert needed_permission(SIGNER_ROUTES, "DELETE", "/v1/certificates") is Scope.ADMIN
    assert needed_permission(SIGNER_ROUTES, "POST", "/v1/sign/../digests/sign") is Scope.ADMIN
    assert needed_permission(SIGNER_ROUTES, "GET", "/ca/root.cer") is None
    assert needed_permission(SIGNER_ROUTES, "HEAD", "/v1/batches/b1") is Scope.BATCH


def test_secrets_in_settings_are_redacted_from_logs(tmp_path: Path) -> None:
    StorageSettings(
        home=tmp_path,
        s3_secret_key=SecretStr("s3-secret-9f8e7d"),
        signer_token=SecretStr("storage-tok-4c3b2a"),
    )
    record = logging.LogRecord("x", logging.INFO, "", 0, "%s %s", None, None)
    record.args = ("s3-secret-9f8e7d", "storage-tok-4c3b2a")
    RedactingFilter().filter(record)
    assert "s3-secret-9f8e7d" not in record.getMessage()
    assert "storage-tok-4c3b2a" not in record.getMessage()


def test_the_embedded_installation_gives_each_service_only_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from signet.cli import embedded

    monkeypatch.setenv("SIGNET_HOME", str(tmp_path))
    for name in ("SIGNET_STORAGE_SERVICE_TOKEN", "SIGNET_SIGNER_SERVICE_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    storage = embedded.storage_settings()
    env = embedded.storage_environment(storage)
    admin = (tmp_path / "service-token").read_text().strip()
    own = (tmp_path / "tokens" / "storage").read_text().strip()
    assert admin not in json.dumps(env) and own not in json.dumps(env)
    assert Path(env["SIGNET_STORAGE_SIGNER_TOKEN_FILE"]).read_text().strip() == own
    accepted = json.loads(Path(env["SIGNET_STORAGE_CALLERS_FILE"]).read_text())
    assert {e["caller"] for e in accepted} == {"admin", "portal"}  # never storage itself
    signer = json.loads(embedded.callers_file("signer").read_text())
    assert {e["caller"]: set(e["scopes"]) for e in signer}["storage"] == {
        "signer:timestamp",
        "signer:digest-sign",
        "signer:document-renew",
    }
    assert own not in (tmp_path / "callers" / "signer.json").read_text()
    for path in (tmp_path / "tokens" / "storage", tmp_path / "callers" / "signer.json"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # made once: a second call keeps the tokens
    embedded.storage_settings()
    assert (tmp_path / "tokens" / "storage").read_text().strip() == own
    assert registry_file([("storage", own)]).count(token_hash(own)) == 1
