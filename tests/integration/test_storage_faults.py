"""A busy or full database: reads go on, writes fail with one line, and nothing is half-applied."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import event

from phasegate.config import Project, Settings
from phasegate.errors import StorageBusy, StorageFull
from phasegate.orchestrator import Orchestrator
from phasegate.store.database import SQLITE_BUSY_TIMEOUT_MS
from tests.conftest import make_project_repo

PHASEGATE = str(Path(sys.executable).with_name("phasegate"))
HOLD_WRITE_LOCK = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(60)
"""


def run(
    repo: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PHASEGATE, *args],
        cwd=repo,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


def started_project(repo: Path, env: dict[str, str] | None = None) -> str:
    """A project with phasegate initialised and one session started; its id."""
    make_project_repo(repo)
    assert run(repo, "init", "--name", "alice", env=env).returncode == 0
    started = run(repo, "start", "design.md", "--json", env=env)
    assert started.returncode == 0, started.stderr
    return str(json.loads(started.stdout)["id"])


def history(repo: Path, session_id: str, env: dict[str, str] | None = None) -> dict[str, object]:
    shown = run(repo, "show", session_id, "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    return {"version": data["version"], "paused": data["paused"], "phase": data["phase"]}


LockHolder = Callable[[Path], None]


@pytest.fixture
def write_lock_holder() -> Iterator[LockHolder]:
    """Start processes that each hold a database's write lock until the test ends."""
    procs: list[subprocess.Popen[str]] = []

    def hold(database: Path) -> None:
        proc = subprocess.Popen(
            [sys.executable, "-c", HOLD_WRITE_LOCK, str(database)],
            stdout=subprocess.PIPE,
            text=True,
        )
        procs.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"

    yield hold
    for proc in procs:
        proc.kill()
        proc.wait(timeout=10)


def test_reads_work_and_a_write_fails_in_one_line_while_another_process_holds_the_write_lock(
    tmp_path: Path, write_lock_holder: LockHolder
) -> None:
    """ls and show answer at once; pause fails in one line after the busy wait, changing nothing."""
    repo = tmp_path / "repo"
    session_id = started_project(repo)
    before = history(repo, session_id)
    write_lock_holder(repo / ".phasegate" / "phasegate.db")

    for args in (("ls",), ("show", session_id)):
        t0 = time.monotonic()
        done = run(repo, *args)
        assert done.returncode == 0 and done.stderr == "", (args, done.stderr)
        assert time.monotonic() - t0 < SQLITE_BUSY_TIMEOUT_MS / 1000  # never waited for the lock

    t0 = time.monotonic()
    paused = run(repo, "pause", session_id)
    waited = time.monotonic() - t0
    assert paused.returncode == 1
    assert paused.stderr.splitlines() == [
        "phasegate: the database is busy (another phasegate process held its write lock for "
        "more than 5 s); try again, or look for a stuck process; nothing was changed"
    ]
    assert SQLITE_BUSY_TIMEOUT_MS / 1000 <= waited < 30
    assert history(repo, session_id) == before


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs (needs root; these test machines run as root)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(
            f"can't mount a tmpfs here ({done.stderr.strip()}); see the max_page_count test"
        )
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    filler = disk / "filler"
    with open(filler, "wb") as out:
        try:
            while True:
                out.write(b"\0" * 65536)
                out.flush()
        except OSError:
            pass
    return filler


def test_a_full_disk_fails_start_and_pause_in_one_line_and_leaves_the_database_intact(
    tmp_path: Path, small_disk: Path
) -> None:
    """With the database's disk full, start and pause say so in one line; the data stays whole."""
    database = small_disk / "phasegate.db"
    env = {"PHASEGATE_DATABASE_URL": f"sqlite:///{database}"}
    repo = tmp_path / "repo"
    session_id = started_project(repo, env)
    before = history(repo, session_id, env)
    (repo / "second.md").write_text("# Second\n\nAnother task.\n")
    filler = fill(small_disk)

    full = (
        "phasegate: the disk holding the database is full; free space and try again; "
        "nothing was changed"
    )
    for args in (("start", "second.md"), ("pause", session_id)):
        done = run(repo, *args, env=env)
        assert done.returncode == 1, (args, done.stdout)
        assert done.stderr.splitlines() == [full], args

    filler.unlink()
    with sqlite3.connect(database) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert history(repo, session_id, env) == before
    listed = json.loads(run(repo, "ls", "--all", "--json", env=env).stdout)
    assert [s["id"] for s in listed] == [session_id]


@pytest.fixture
def sqlite_orch(project_root: Path, tmp_path: Path) -> Iterator[Orchestrator]:
    """An orchestrator on SQLite: the faults below are SQLite's."""
    url = f"sqlite:///{tmp_path / 'phasegate.db'}"
    orch = Orchestrator.open(Project(project_root, Settings(database_url=url)))
    yield orch
    orch.close()


def test_a_database_at_its_size_limit_rolls_the_whole_change_back(
    sqlite_orch: Orchestrator,
) -> None:
    """SQLITE_FULL from max_page_count (a real full database) is StorageFull; nothing changed."""
    orch = sqlite_orch
    human, _ = orch.add_principal("human", "alice")
    session = orch.start_session("design.md", human)

    def cap(dbapi_conn: sqlite3.Connection, _record: object) -> None:
        pages = dbapi_conn.execute("PRAGMA page_count").fetchone()[0]
        dbapi_conn.execute(f"PRAGMA max_page_count={pages}")

    event.listen(orch.db.engine, "connect", cap)
    orch.db.engine.dispose()  # the pool's next connections get the cap
    last = orch.get(session.id)
    with pytest.raises(StorageFull) as raised:
        for _ in range(200):  # each decision adds an event until a new page is needed
            last = orch.decide(session.id, "pause", human, comment="x" * 3000)
            last = orch.decide(session.id, "resume", human)
    assert raised.value.http_status == 507 and "nothing was changed" in raised.value.message
    event.remove(orch.db.engine, "connect", cap)
    orch.db.engine.dispose()
    after = orch.get(session.id)
    assert (after.version, after.paused) == (last.version, last.paused)
    assert all(report.ok for report in orch.verify_audit(session.id))


def test_a_write_that_meets_a_held_write_lock_raises_storage_busy(
    sqlite_orch: Orchestrator,
) -> None:
    """A write blocked past the busy timeout is StorageBusy (503), and the session is unchanged."""
    orch = sqlite_orch
    human, _ = orch.add_principal("human", "alice")
    session = orch.start_session("design.md", human)
    holder = sqlite3.connect(orch.db.url.removeprefix("sqlite:///"), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StorageBusy, match="the database is busy") as raised:
            orch.decide(session.id, "pause", human)
    finally:
        holder.rollback()
        holder.close()
    assert raised.value.http_status == 503
    assert orch.get(session.id).version == session.version
