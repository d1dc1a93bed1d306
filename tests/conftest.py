"""Shared fixtures: a real git project, and an orchestrator on SQLite or PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from phasegate.config import Project, SandboxSettings, Settings
from phasegate.domain.principal import Principal
from phasegate.orchestrator import Orchestrator

# Plugin autoloading off: the venv's hypothesis/schemathesis plugins cost seconds per run.
TEST_COMMAND = "PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 python -m pytest -q -p no:cacheprovider"
POSTGRES_URL = os.environ.get("PHASEGATE_TEST_POSTGRES_URL", "")

CALC = """\
def add(a: int, b: int) -> int:
    raise NotImplementedError
"""
DESIGN = "# Calculator\n\n`add(a, b)` returns the sum of two integers.\n"
GOOD_TESTS = """\
from calc import add


def test_add():
    assert add(1, 2) == 3


def test_add_negative():
    assert add(-1, -2) == -3
"""
BUGGY_IMPL = "def add(a: int, b: int) -> int:\n    return a - b\n"
GOOD_IMPL = "def add(a: int, b: int) -> int:\n    return a + b\n"


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def make_project_repo(root: Path) -> Path:
    """A small Python project in a git repo: calc.py, a design, a pytest config."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "calc.py").write_text(CALC)
    (root / "design.md").write_text(DESIGN)
    (root / "pytest.ini").write_text("[pytest]\npythonpath = .\n")
    (root / "phasegate.toml").write_text(f'test_command = "{TEST_COMMAND}"\n')
    git(root, "init", "-q", "-b", "main")
    git(root, "add", ".")
    git(root, "commit", "-qm", "initial")
    return root


def postgres_database() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test; dropped afterwards."""
    if not POSTGRES_URL:
        pytest.skip(
            "PostgreSQL tests need PHASEGATE_TEST_POSTGRES_URL (e.g. postgresql://postgres@127.0.0.1:5432/test)"
        )
    name = f"pg_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(
        POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://", 1),
        isolation_level="AUTOCOMMIT",
    )
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    base = POSTGRES_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each test using this runs once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'phasegate.db'}"
    else:
        yield from postgres_database()


@pytest.fixture
def project_root(tmp_path: Path) -> Path:
    return make_project_repo(tmp_path / "project")


@pytest.fixture(autouse=True)
def _isolated_user_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never read or write the real user's credentials."""
    monkeypatch.setenv("PHASEGATE_CONFIG_DIR", str(tmp_path / "user-config"))
    monkeypatch.delenv("PHASEGATE_TOKEN", raising=False)
    monkeypatch.delenv("PHASEGATE_DATABASE_URL", raising=False)


@pytest.fixture
def orch(project_root: Path, db_url: str) -> Iterator[Orchestrator]:
    """An orchestrator for the fixture project, on the parametrised database."""
    project = Project(
        project_root,
        Settings(
            database_url=db_url,
            test_command=TEST_COMMAND,
        ),
    )
    orchestrator = Orchestrator.open(project)
    yield orchestrator
    orchestrator.close()


@pytest.fixture
def human(orch: Orchestrator) -> Principal:
    return orch.add_principal("human", "alice")[0]


@pytest.fixture
def agent(orch: Orchestrator) -> Principal:
    return orch.add_principal("agent", "bot", ["tester", "coder", "runner"])[0]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """In CI (PHASEGATE_NO_SKIPS=1) a skipped test is a failure: nothing may hide."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("PHASEGATE_NO_SKIPS") == "1" and report.skipped:
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, which must run everything: {report.longrepr}"


def setup_error_at_verify(orch: Orchestrator, human: Principal, agent: Principal) -> str:
    """A session whose test script went missing after its red run: the verify run can't start."""
    # The project's test script, outside the repository. (No sandbox: bubblewrap would hide
    # this temporary directory anyway.)
    script = orch.project.root.parent / "bin" / "run-tests"
    script.parent.mkdir()
    script.write_text("#!/bin/sh\nexec python -m pytest -q -p no:cacheprovider\n")
    script.chmod(0o755)
    orch.project.settings = orch.project.settings.model_copy(
        update={"test_command": str(script), "sandbox": SandboxSettings(mode="none")}
    )
    sid = orch.start_session("design.md", human, again=True).id
    orch.submit(sid, "tests", agent, [{"path": "tests/test_calc.py", "content": GOOD_TESTS}])
    orch.decide(sid, "approve", human)
    orch.submit(sid, "implementation", agent, [{"path": "calc.py", "content": BUGGY_IMPL}])
    script.rename(script.with_name("moved-away"))
    session, run = orch.run_tests(sid, agent)
    assert run["infrastructure"] is True and "not found" in run["reason"]
    assert (session.phase, session.fix_attempts) == ("awaiting_human_intervention", 0)
    problem = session.context["setup_error"]
    assert problem["at"] == "verify" and problem["fix"].startswith("test_command")
    assert orch.timeline(sid)[-1]["action"] == "setup_failed"
    assert session.lease_owner is None
    return sid
