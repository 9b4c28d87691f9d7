"""`signet.common.database` on SQLite files, as every service's embedded default uses it:
the claim is atomic across claimants, the migration lock serialises processes, and the
file is the owner's alone."""

from __future__ import annotations

import stat
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from signet.common import database

TABLE = (
    "CREATE TABLE jobs (queue TEXT, id INTEGER, state TEXT, worker TEXT, PRIMARY KEY (queue, id))"
)


def _queue(path: Path, jobs: int) -> database.Database:
    db = database.Database(f"sqlite:///{path}")
    with db.engine.begin() as connection:
        connection.exec_driver_sql(TABLE)
        connection.execute(
            sa.text("INSERT INTO jobs VALUES ('q', :id, 'queued', NULL)"),
            [{"id": i} for i in range(jobs)],
        )
    return db


def _claim(db: database.Database, worker: str, limit: int) -> list[tuple[object, ...]]:
    with db.undurable_session() as session, session.begin():
        return database.claim_rows(
            session.connection(),
            "jobs",
            keys=("queue", "id"),
            queued="queued",
            claimed="taken",
            values={"worker": worker},
            limit=limit,
        )


def test_a_claim_takes_the_oldest_queued_rows_and_marks_them(tmp_path: Path) -> None:
    db = _queue(tmp_path / "q.db", 5)
    assert sorted(_claim(db, "w1", 2)) == [("q", 0), ("q", 1)]
    assert sorted(_claim(db, "w2", 10)) == [("q", 2), ("q", 3), ("q", 4)]
    assert _claim(db, "w3", 10) == []
    with db.engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT id, state, worker FROM jobs ORDER BY id")).all()
    assert [tuple(r) for r in rows] == [
        (0, "taken", "w1"),
        (1, "taken", "w1"),
        (2, "taken", "w2"),
        (3, "taken", "w2"),
        (4, "taken", "w2"),
    ]


def test_two_threads_claiming_at_once_never_take_the_same_row(tmp_path: Path) -> None:
    db = _queue(tmp_path / "q.db", 400)
    taken: dict[str, list[tuple[object, ...]]] = {"a": [], "b": []}
    start = threading.Barrier(2)

    def claimant(name: str) -> None:
        start.wait()
        while rows := _claim(db, name, 3):
            taken[name].extend(rows)

    threads = [threading.Thread(target=claimant, args=(name,)) for name in taken]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    both = taken["a"] + taken["b"]
    assert len(both) == len(set(both)) == 400  # every row once, none twice
    assert taken["a"] and taken["b"]  # both claimed (else the test proved nothing)


MIGRATE = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from signet.common import database
    from sqlalchemy import create_engine

    engine = create_engine(f"sqlite:///{sys.argv[1]}", connect_args={"timeout": 30})
    go = Path(sys.argv[2])
    print("ready", flush=True)
    while not go.exists():
        time.sleep(0.001)
    with database.migration_lock(engine, 1) as connection:
        print("in", time.monotonic(), flush=True)
        time.sleep(0.3)
        print("out", time.monotonic(), flush=True)
    """
)


def test_the_migration_lock_serialises_two_processes(tmp_path: Path) -> None:
    path, go = tmp_path / "m.db", tmp_path / "go"
    database.Database(f"sqlite:///{path}").engine.dispose()  # the file, in WAL mode
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", MIGRATE, str(path), str(go)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for process in processes:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
    go.touch()
    spans = []
    for process in processes:
        out, _ = process.communicate(timeout=60)
        assert process.returncode == 0
        times = dict(line.split() for line in out.splitlines())
        spans.append((float(times["in"]), float(times["out"])))
    first, second = sorted(spans)
    assert second[0] >= first[1]  # the second got in only after the first left


def test_a_new_database_and_its_wal_files_are_the_owners_only(tmp_path: Path) -> None:
    folder = tmp_path / "home" / "signer"
    db = database.Database(f"sqlite:///{folder / 'signer.db'}")
    with db.engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE t (x INTEGER)")
        connection.exec_driver_sql("INSERT INTO t VALUES (1)")
    with db.engine.connect() as connection:  # WAL and SHM exist while a connection is open
        connection.exec_driver_sql("SELECT * FROM t").all()
        files = {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()}
    assert files == {"signer.db": 0o600, "signer.db-wal": 0o600, "signer.db-shm": 0o600}
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_an_older_world_readable_database_is_narrowed_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "signer.db"
    sa.create_engine(f"sqlite:///{path}").connect().close()
    path.chmod(0o644)
    database.Database(f"sqlite:///{path}").engine.connect().close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize("durable, synchronous", [(True, 2), (False, 1)])
def test_sqlite_engines_are_in_wal_mode_with_the_asked_durability(
    tmp_path: Path, durable: bool, synchronous: int
) -> None:
    engine = database.create_engine(f"sqlite:///{tmp_path / 'd.db'}", durable=durable)
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == synchronous
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 10000
