"""The signer's schema under Alembic: the revisions make exactly what the models declare,
databases made by ``create_all`` before revisions existed are adopted with their rows,
and processes starting at once migrate a fresh database once, without errors.

Each test runs on SQLite (the embedded default) and, in the `postgres` tier, on a
private PostgreSQL server (a cluster's database, shared by signer replicas).
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from signet.signer import migrations
from signet.signer.database import open_registry, open_registry_at

from tests.support.postgres import PostgresServer

SPOOL_COLUMNS = ("input_offset", "input_size")
PACK_COLUMNS = ("output_pack", "output_offset", "output_size")
HEAD = "0008"
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

postgres_tier = [pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=postgres_tier)],
)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database of each kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'signer.db'}"
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.create_database(f"signer_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(database_url, poolclass=sa.NullPool)
    yield engine
    engine.dispose()


def schema_differences(engine: sa.Engine) -> list[object]:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, migrations.models()))


def version_rows(engine: sa.Engine) -> list[str]:
    with engine.connect() as connection:
        return list(connection.scalars(sa.text("SELECT version_num FROM alembic_version")))


def test_migrated_schema_is_what_the_models_declare(engine: sa.Engine) -> None:
    open_registry(engine.url.render_as_string(hide_password=False)).engine.dispose()
    assert schema_differences(engine) == []
    assert version_rows(engine) == [HEAD]
    # every revision is reached by the chain from nothing, and the head is where we are
    assert migrations.current(engine) == migrations.SchemaState(HEAD, HEAD)


def test_opening_again_changes_nothing(engine: sa.Engine) -> None:
    url = engine.url.render_as_string(hide_password=False)
    open_registry(url).reserve("tsa-serial", 10)
    second = open_registry(url)
    assert second.reserve("tsa-serial", 1) == 10
    assert version_rows(engine) == [HEAD]


# -- databases made by create_all before migrations ------------------------------------------


def make_legacy(engine: sa.Engine, shape: str) -> None:
    """A database as an older signer's ``create_all`` left it, with a row in every table.

    ``before-spool``: the last shape without revisions (0001); ``with-spool``: after the
    ad-hoc step added both spool columns (0002; no ``create_all`` ever made the pack
    columns of 0003); ``half-spool``: that step died between
    its two ALTERs; ``before-batches``: a registry from before batch sealing.
    """
    metadata = migrations.models()
    tables = [metadata.tables["certificates"], metadata.tables["counters"]]
    if shape != "before-batches":
        tables += [metadata.tables["batches"], metadata.tables["batch_items"]]
    metadata.create_all(engine, tables=tables)
    dropped = {
        "before-spool": PACK_COLUMNS + SPOOL_COLUMNS,
        "half-spool": PACK_COLUMNS + SPOOL_COLUMNS[1:],
        "with-spool": PACK_COLUMNS,
    }.get(shape, ())
    with engine.begin() as connection:
        for column in dropped:
            connection.execute(sa.text(f"ALTER TABLE batch_items DROP COLUMN {column}"))
        connection.execute(
            sa.insert(metadata.tables["certificates"]).values(
                serial="01",
                kind="root",
                subject="CN=Old Root",
                key_label="root",
                not_before=NOW,
                not_after=NOW,
                der=b"\x30\x00",
                created_at=NOW,
            )
        )
        connection.execute(sa.insert(metadata.tables["counters"]).values(name="crl", value=41))
        if shape == "before-batches":
            return
        connection.execute(
            sa.insert(metadata.tables["batches"]).values(
                id="b1",
                request_sha256="0" * 64,
                options_json="{}",
                has_image=False,
                certificate_serial="01",
                level="B-B",
                total=1,
                created_at=NOW,
            )
        )
        connection.execute(
            sa.insert(metadata.tables["batch_items"]).values(
                batch_id="b1", idx=0, filename="a.pdf", state="done", input_sha256="1" * 64
            )
        )


@pytest.mark.parametrize("shape", ["before-spool", "with-spool", "half-spool", "before-batches"])
def test_a_database_made_by_create_all_is_adopted_with_its_rows(
    engine: sa.Engine, shape: str
) -> None:
    make_legacy(engine, shape)
    url = engine.url.render_as_string(hide_password=False)
    assert migrations.current(engine).revision is None

    registry = open_registry(url)

    assert version_rows(engine) == [HEAD]
    assert schema_differences(engine) == []
    root = registry.get("01")
    assert root is not None and root.subject == "CN=Old Root"
    assert registry.reserve("crl", 1) == 41
    with engine.connect() as connection:
        items = connection.execute(
            sa.text("SELECT batch_id, filename, input_offset, input_size FROM batch_items")
        ).all()
    assert items == ([] if shape == "before-batches" else [("b1", "a.pdf", None, None)])
    registry.engine.dispose()


def test_a_database_at_0002_gains_the_pack_columns_and_keeps_its_items(engine: sa.Engine) -> None:
    """A signer of the one-file-per-document layout left done items behind: 0003 adds the
    nullable pack columns, and those items keep NULL there (read from their files)."""
    from alembic import command

    with migrations.migration_lock(engine) as connection:
        command.upgrade(migrations.alembic_config(connection), "0002")
    with engine.begin() as connection:
        columns = {c["name"] for c in sa.inspect(connection).get_columns("batch_items")}
        assert not columns & set(PACK_COLUMNS)
        _insert_batch_b1(connection)
        connection.execute(
            sa.text(
                "INSERT INTO batch_items (batch_id, idx, filename, state, input_sha256, "
                "output_sha256, input_offset, input_size) "
                "VALUES ('b1', 0, 'a.pdf', 'done', :i, :o, 0, 10)"
            ),
            {"i": "1" * 64, "o": "2" * 64},
        )

    registry = open_registry(engine.url.render_as_string(hide_password=False))

    assert version_rows(engine) == [HEAD]
    assert schema_differences(engine) == []
    with engine.connect() as connection:
        rows = connection.execute(
            sa.text(
                "SELECT filename, state, output_sha256, output_pack, output_offset, "
                "output_size FROM batch_items"
            )
        ).all()
    assert rows == [("a.pdf", "done", "2" * 64, None, None, None)]
    registry.engine.dispose()


def test_a_database_at_0003_gains_an_empty_batch_store_and_keeps_its_batches(
    engine: sa.Engine, tmp_path: Path
) -> None:
    """0004 adds the batch store's table with no row: the batches already there are judged
    by their folders when the signer first opens its directory (adopted, or missing)."""
    from alembic import command
    from signet.signer.batch.guard import BatchStoreGuard, StoreHealth

    with migrations.migration_lock(engine) as connection:
        command.upgrade(migrations.alembic_config(connection), "0003")
    with engine.begin() as connection:
        assert "batch_store" not in sa.inspect(connection).get_table_names()
        _insert_batch_b1(connection)

    registry = open_registry(engine.url.render_as_string(hide_password=False))

    assert version_rows(engine) == [HEAD]
    assert schema_differences(engine) == []
    with engine.connect() as connection:
        assert connection.scalar(sa.text("SELECT count(*) FROM batch_store")) == 0
        assert connection.scalar(sa.text("SELECT count(*) FROM batches")) == 1
    assert BatchStoreGuard(registry, tmp_path / "empty").open().health is StoreHealth.MISSING
    (tmp_path / "volume" / "b1").mkdir(parents=True)
    adopted = BatchStoreGuard(registry, tmp_path / "volume").open()
    assert adopted.ready
    with engine.connect() as connection:
        recorded = connection.scalar(sa.text("SELECT store_id FROM batch_store"))
    assert recorded == adopted.store_id
    registry.engine.dispose()


def test_a_database_at_0004_records_the_purpose_of_every_known_key(engine: sa.Engine) -> None:
    """0005 back-fills key purposes: the CA's labels and the ledger seal's by name, every
    certified key by its first certificate's kind, so an upgraded CA refuses to certify
    its own keys as seals at once."""
    from datetime import UTC, datetime

    from alembic import command
    from signet.common.contracts.signer import KeyPurpose
    from signet.signer.pki.purposes import KeyPurposes

    with migrations.migration_lock(engine) as connection:
        command.upgrade(migrations.alembic_config(connection), "0004")
    now = datetime(2026, 1, 1, tzinfo=UTC)
    with engine.begin() as connection:
        for serial, kind, label in (
            ("01", "root", "signet-root-ca"),
            ("02", "seal", "signet-seal"),
            ("03", "person", "signet-person-abc"),
            ("04", "seal", "signet-person-abc"),  # a later certificate does not change it
        ):
            connection.execute(
                sa.text(
                    "INSERT INTO certificates (serial, kind, subject, key_label, not_before,"
                    " not_after, der, created_at) VALUES (:s, :k, 'x', :l, :t, :t, :d, :t)"
                ).bindparams(sa.bindparam("t", type_=sa.DateTime(timezone=True))),
                {"s": serial, "k": kind, "l": label, "t": now, "d": b"\x30\x00"},
            )
    registry = open_registry(engine.url.render_as_string(hide_password=False))
    assert version_rows(engine) == [HEAD]
    purposes = KeyPurposes(registry)
    assert purposes.of("signet-root-ca") is KeyPurpose.ROOT
    assert purposes.of("signet-issuing-ca") is KeyPurpose.ISSUING  # reserved by name
    assert purposes.of("signet-tsa") is KeyPurpose.TSA
    assert purposes.of("signet-ledger-seal") is KeyPurpose.LEDGER_SEAL
    assert purposes.of("signet-seal") is KeyPurpose.SEAL
    assert purposes.of("signet-person-abc") is KeyPurpose.PERSON
    registry.engine.dispose()


def test_a_database_migrated_by_a_newer_signer_is_left_alone(
    engine: sa.Engine, caplog: pytest.LogCaptureFixture
) -> None:
    """After a rollback the older signer still starts (revisions only add what it ignores)."""
    url = engine.url.render_as_string(hide_password=False)
    open_registry(url).engine.dispose()
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))

    open_registry(url).engine.dispose()

    assert version_rows(engine) == ["9999"]
    assert "unknown to this signer" in caplog.text


def test_only_the_undurable_session_commits_without_waiting_for_the_disk(
    database_url: str,
) -> None:
    """Batch claims use `Registry.undurable_session` (a lost claim is harmless); every
    other session keeps fully durable commits."""
    registry = open_registry(database_url)
    with registry.session() as durable, registry.undurable_session() as undurable:
        if database_url.startswith("sqlite"):
            query = sa.text("PRAGMA synchronous")
            assert (durable.scalar(query), undurable.scalar(query)) == (2, 1)  # FULL, NORMAL
        else:
            query = sa.text("SHOW synchronous_commit")
            assert (durable.scalar(query), undurable.scalar(query)) == ("on", "off")
    registry.engine.dispose()


# -- several processes at once ----------------------------------------------------------------

OPEN_WHEN_TOLD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from signet.signer.database import open_registry

    go = Path(sys.argv[2])
    print("ready", flush=True)
    while not go.exists():
        time.sleep(0.001)
    open_registry(sys.argv[1]).reserve("started", 1)
    """
)


def start_at_once(url: str, go: Path, processes: int) -> list[subprocess.CompletedProcess[str]]:
    """Start `processes` interpreters that open the registry the moment `go` appears (all
    imports done before), like uvicorn workers or signer replicas starting together."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNET_")}
    children = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN_WHEN_TOLD, url, str(go)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    for child in children:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
    go.touch()
    results = []
    deadline = time.monotonic() + 120
    for child in children:
        stdout, stderr = child.communicate(timeout=max(1.0, deadline - time.monotonic()))
        results.append(subprocess.CompletedProcess(child.args, child.returncode, stdout, stderr))
    return results


@pytest.mark.slow
def test_processes_starting_at_once_migrate_a_fresh_database_once(
    engine: sa.Engine, tmp_path: Path
) -> None:
    url = engine.url.render_as_string(hide_password=False)
    results = start_at_once(url, tmp_path / "go", processes=3)

    assert [r.returncode for r in results] == [0, 0, 0], [r.stderr for r in results]
    assert version_rows(engine) == [HEAD]
    assert schema_differences(engine) == []
    with engine.connect() as connection:
        started = connection.execute(sa.text("SELECT value FROM counters WHERE name = 'started'"))
        assert started.scalar_one() == 3


# -- the admin's commands ---------------------------------------------------------------------


@pytest.mark.slow
def test_signet_db_upgrade_and_current(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIGNET_", "SOFTHSM2_"))}
    env["SIGNET_HOME"] = str(tmp_path / "home")

    def signet(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "signet.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    before = signet("db", "current")
    assert before.returncode == 0, before.stderr
    assert "none" in before.stdout and f"head {HEAD}" in before.stdout
    upgraded = signet("db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert HEAD in upgraded.stdout
    after = signet("db", "current")
    assert f"{HEAD} (head)" in after.stdout
    assert (tmp_path / "home" / "signer" / "signer.db").exists()


def _insert_batch_b1(connection: sa.Connection) -> None:
    """Batch ``b1`` as an older schema holds it (raw SQL: the models describe the newest)."""
    connection.execute(
        sa.text(
            "INSERT INTO batches (id, request_sha256, options_json, has_image, "
            "certificate_serial, level, total, created_at) "
            "VALUES ('b1', :z, '{}', false, '01', 'B-B', 1, :now)"
        ).bindparams(sa.bindparam("now", type_=sa.DateTime(timezone=True))),
        {"z": "0" * 64, "now": NOW},
    )


def test_the_embedded_signer_database_is_the_owners_only(tmp_path: Path) -> None:
    """signer.db holds the certificates and counters: 0600 with its WAL and SHM, in a
    folder of its own made 0700 (SQLite alone would make them 0644 under a usual umask)."""
    folder = tmp_path / "home" / "signer"
    registry = open_registry_at(folder / "signer.db")
    registry.reserve("crl", 1)
    with registry.engine.connect():
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()}
    registry.engine.dispose()
    assert modes == {"signer.db": 0o600, "signer.db-wal": 0o600, "signer.db-shm": 0o600}
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
