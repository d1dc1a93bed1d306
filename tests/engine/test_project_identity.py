"""One project per database: another repository is refused, a clone of the same one accepted."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa
from engine_helpers import make_project_repo, run_cli

from phasegate.config import Project, Settings
from phasegate.domain.principal import Principal
from phasegate.errors import ConfigError
from phasegate.orchestrator import Orchestrator
from phasegate.project_identity import CACHE_FILE, PROJECT
from phasegate.store import queries as q
from phasegate.store.database import Database

TABLES = ("meta", "tasks", "sessions", "events", "principals")


def _git(root: Path, *args: str) -> None:
    import subprocess

    subprocess.run(
        ["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *args],
        cwd=root,
        check=True,
        capture_output=True,
    )


def _other_repo(root: Path) -> Path:
    """Another repository: its first commit differs from the fixture project's."""
    root.mkdir(parents=True)
    (root / "other.txt").write_text("another project\n")
    _git(root, "init", "-q", "-b", "main")
    _git(root, "add", ".")
    _git(root, "commit", "-qm", "another project")
    return root


def _open(root: Path, db_url: str) -> Orchestrator:
    return Orchestrator.open(Project(root, Settings(database_url=db_url)))


def _rows(orch: Orchestrator) -> dict[str, int]:
    with orch.db.read() as conn:
        return {
            t: int(conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one()) for t in TABLES
        }


def _recorded(orch: Orchestrator) -> str | None:
    with orch.db.read() as conn:
        return q.read_meta(conn).get(PROJECT)


def test_another_repository_is_refused_in_one_line_and_writes_nothing(
    orch: Orchestrator, human: Principal, db_url: str, tmp_path: Path
) -> None:
    """A second project on the same database (SQLite file or PostgreSQL) gets one line, no rows."""
    orch.start_session("design.md", human)
    before, recorded = _rows(orch), _recorded(orch)
    assert recorded is not None and str(orch.project.root) in recorded
    other = _other_repo(tmp_path / "other")
    with pytest.raises(ConfigError) as refused:
        _open(other, db_url)
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith(f"this database belongs to the repository {orch.project.root}")
    assert "(root commit " in message and "PHASEGATE_DATABASE_URL" in message
    done = run_cli(other, "ls", db_url=db_url)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("phasegate: this database belongs to"), lines
    assert _rows(orch) == before and _recorded(orch) == recorded


def test_a_clone_of_the_same_repository_is_accepted(
    orch: Orchestrator, human: Principal, db_url: str, tmp_path: Path
) -> None:
    """A `git clone` elsewhere (another machine of the team) opens it and sees its work."""
    session = orch.start_session("design.md", human)
    clone = tmp_path / "elsewhere" / "clone"
    _git(tmp_path, "clone", "-q", str(orch.project.root), str(clone))
    _git(clone, "commit", "-q", "--allow-empty", "-m", "work on the clone")
    other = _open(clone, db_url)
    try:
        assert [s.id for s in other.list_sessions()] == [session.id]
    finally:
        other.close()
    assert str(orch.project.root) in (_recorded(orch) or "")  # the first path stays recorded


def test_a_database_from_before_adopts_the_first_project_that_opens_it(
    project_root: Path, db_url: str, tmp_path: Path
) -> None:
    """A database without a record (made before this) belongs to the first project opening it."""
    db = Database(db_url)
    db.migrate()
    old = Orchestrator(Project(project_root, Settings(database_url=db_url)), db)  # no check
    old.start_session("design.md", old.add_principal("human", "alice")[0])
    assert _recorded(old) is None
    old.close()
    other = _other_repo(tmp_path / "other")
    adopter = _open(other, db_url)
    try:
        assert str(other) in (_recorded(adopter) or "")
        assert len(adopter.list_sessions()) == 1
    finally:
        adopter.close()
    with pytest.raises(ConfigError, match=f"belongs to the repository {other}"):
        _open(project_root, db_url)


def test_a_repository_made_again_in_the_same_place_is_another_one(
    orch: Orchestrator, db_url: str
) -> None:
    """The cached identity is the old `.git`'s: a new repository there is checked afresh."""
    root = orch.project.root
    assert (orch.project.state_dir / CACHE_FILE).exists()
    shutil.rmtree(root / ".git")
    (root / "new.txt").write_text("a fresh start\n")
    _git(root, "init", "-q", "-b", "main")
    _git(root, "add", ".")
    _git(root, "commit", "-qm", "fresh start")
    with pytest.raises(ConfigError, match="belongs to the repository"):
        _open(root, db_url)


def test_a_repository_without_commits_records_nothing(db_url: str, tmp_path: Path) -> None:
    """With no commit yet there is no identity: the open is accepted and nothing is recorded."""
    root = tmp_path / "empty"
    root.mkdir()
    _git(root, "init", "-q", "-b", "main")
    orch = _open(root, db_url)
    try:
        assert _recorded(orch) is None
    finally:
        orch.close()
    first = make_project_repo(tmp_path / "first")
    orch = _open(first, db_url)
    try:
        assert str(first) in (_recorded(orch) or "")
    finally:
        orch.close()
