"""Shared helpers for the engine contract suite: drive sessions, inspect the store."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import subprocess
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa

from phasegate.domain.principal import Principal
from phasegate.domain.session import SYSTEM, Actor, Command, Session
from phasegate.domain.workflow import ActorKind
from phasegate.orchestrator import Orchestrator
from phasegate.store import queries as q


def _root_conftest() -> object:
    """The suite's root conftest, for its fixture-project constants (one place for them)."""
    path = Path(__file__).parents[1] / "conftest.py"
    spec = importlib.util.spec_from_file_location("phasegate_tests_root", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_ROOT = _root_conftest()
GOOD_TESTS: str = _ROOT.GOOD_TESTS  # type: ignore[attr-defined]
BUGGY_IMPL: str = _ROOT.BUGGY_IMPL  # type: ignore[attr-defined]
GOOD_IMPL: str = _ROOT.GOOD_IMPL  # type: ignore[attr-defined]
make_project_repo = _ROOT.make_project_repo  # type: ignore[attr-defined]

TESTER = Actor(ActorKind.AGENT, "bot", "tester")
CODER = Actor(ActorKind.AGENT, "bot", "coder")
ALICE = Actor(ActorKind.HUMAN, "alice")

#: From generating_tests, the actions that reach each phase (max_fix_attempts=2).
PATHS: dict[str, Sequence[str]] = {
    "generating_tests": (),
    "awaiting_test_review": ("submit_tests",),
    "generating_implementation": ("submit_tests", "approve"),
    "running_tests": ("submit_tests", "approve", "submit_implementation"),
    "fixing_failures": ("submit_tests", "approve", "submit_implementation", "tests_failed"),
    "awaiting_final_review": ("submit_tests", "approve", "submit_implementation", "tests_passed"),
    "awaiting_human_intervention": (
        "submit_tests",
        "approve",
        "submit_implementation",
        "tests_failed",
        "fix_failures",
        "tests_failed",
    ),
    "completed": (
        "submit_tests",
        "approve",
        "submit_implementation",
        "tests_passed",
        "approve",
    ),
    "cancelled": ("cancel",),
    "failed": ("fail",),
}

PATHS["initializing"] = PATHS["reading_design"] = ()

ACTOR_OF = {
    "submit_tests": TESTER,
    "submit_implementation": CODER,
    "fix_failures": CODER,
    "tests_passed": SYSTEM,
    "tests_failed": SYSTEM,
    "tests_flagged": SYSTEM,
    "setup_failed": SYSTEM,
    "fail": SYSTEM,
    "begin": SYSTEM,
    "load_design": SYSTEM,
}


def actor_for(action: str) -> Actor:
    """The actor that may legally take `action` (a human for decisions)."""
    return ACTOR_OF.get(action, ALICE)


def act(orch: Orchestrator, session_id: str, action: str, comment: str = "") -> Session:
    """Apply one action through the engine's single write path."""
    actor = actor_for(action)
    comment = comment or ("because" if action in ("reject", "retry") else "")
    return orch.kernel.transition(session_id, lambda s: Command(action, actor, comment=comment))


def bare_session(orch: Orchestrator) -> Session:
    """A session in `initializing`, stored directly (no worktree), for the opening phases."""
    task = orch.add_task(orch.project.root / "design.md")
    now = orch.clock()
    sid = uuid.uuid4().hex
    session = Session(
        id=sid,
        task_id=task["id"],
        workflow="tdd",
        phase="initializing",
        version=0,
        fix_attempts=0,
        paused=False,
        context={},
        results={},
        created_at=now,
        updated_at=now,
        phase_entered_at=now,
    )
    with orch.db.write() as conn:
        q.insert_session(conn, session, "phasegate")
    return orch.get(sid)


def drive(orch: Orchestrator, session_id: str, phase: str) -> Session:
    """Move a fresh session (in generating_tests, or a bare one) to `phase`."""
    session = orch.get(session_id)
    if phase in ("initializing", "reading_design"):
        return session if phase == session.phase else act(orch, session_id, "begin")
    for action in PATHS[phase]:
        session = act(orch, session_id, action)
    assert session.phase == phase
    return session


def start(orch: Orchestrator, human: Principal) -> Session:
    """A new session on the fixture project's design, waiting for a tester."""
    return orch.start_session(str(orch.project.root / "design.md"), human, again=True)


def event_count(orch: Orchestrator, session_id: str | None = None) -> int:
    """How many audit events exist (of one session, or all)."""
    sql = "SELECT count(*) FROM events" + (" WHERE session_id = :s" if session_id else "")
    with orch.db.read() as conn:
        return int(conn.execute(sa.text(sql), {"s": session_id}).scalar_one())


PHASEGATE = str(Path(sys.executable).with_name("phasegate"))


def cli_env(db_url: str | None) -> dict[str, str]:
    """The environment a `phasegate` subprocess runs with (the test's config dir, a database)."""
    env = dict(os.environ)
    if db_url:
        env["PHASEGATE_DATABASE_URL"] = db_url
    return env


def run_cli(
    project: Path, *args: str, db_url: str | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real `phasegate` CLI on a project and capture its output."""
    return subprocess.run(
        [PHASEGATE, "--project", str(project), *args],
        cwd=cwd or project,
        env=cli_env(db_url),
        capture_output=True,
        text=True,
        timeout=60,
    )


def phasegate(*args: str) -> tuple[int, str, str]:
    """Run the CLI's real entry point in this process; return exit code, stdout, stderr."""
    from phasegate.entrypoints.cli import main

    out, err = io.StringIO(), io.StringIO()
    argv, sys.argv = sys.argv, ["phasegate", *args]
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
    except SystemExit as exc:
        code = int(exc.code or 0)
    finally:
        sys.argv = argv
    return code, out.getvalue(), err.getvalue()
