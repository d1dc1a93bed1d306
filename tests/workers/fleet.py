"""Helpers for worker tests and the benchmark: a fast project, scripts, worker processes.

The project's test command is a `grep` that passes once calc.py adds, so a
whole session (red run, failing run, fix, passing run) costs milliseconds of
test time and the figures measure phasegate, not pytest.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from phasegate.config import Project, load_settings
from phasegate.domain.principal import Principal
from phasegate.orchestrator import Orchestrator
from phasegate.store import queries as q
from phasegate.worker import Worker
from tests.conftest import postgres_database

ROOT = Path(__file__).resolve().parents[2]
PHASEGATE = str(ROOT / ".venv" / "bin" / "phasegate")

CALC = "def add(a: int, b: int) -> int:\n    raise NotImplementedError\n"
TESTS = "from calc import add\n\n\ndef test_add():\n    assert add(1, 2) == 3\n"
BUGGY = "def add(a: int, b: int) -> int:\n    return a - b\n"
GOOD = "def add(a: int, b: int) -> int:\n    return a + b\n"
FAST_TEST_COMMAND = "grep -q 'a + b' calc.py"

# Every session of the scripted workflow goes through exactly these transitions.
SCRIPTED_ACTIONS = [
    "begin",
    "load_design",
    "submit_tests",
    "approve",
    "submit_implementation",
    "tests_failed",
    "fix_failures",
    "tests_passed",
]


def git(cwd: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
    )


def make_fast_project(root: Path, db_url: str, extra_toml: str = "") -> Project:
    """A git project whose test command is a grep, on the given database."""
    root.mkdir(parents=True)
    (root / "calc.py").write_text(CALC)
    (root / "design.md").write_text("# Calculator\n\n`add(a, b)` returns the sum.\n")
    (root / "phasegate.toml").write_text(
        f'test_command = "{FAST_TEST_COMMAND}"\ntest_timeout_s = 20\n'
        f'database_url = "{db_url}"\n{extra_toml}'
    )
    git(root, "init", "-q", "-b", "main")
    git(root, "add", ".")
    git(root, "commit", "-qm", "initial")
    return Project(root, load_settings(root))


@contextmanager
def fast_orchestrator(
    database: str, tmp_path: Path, extra_toml: str = ""
) -> Iterator[Orchestrator]:
    """An orchestrator on a fast project, on `database` ("sqlite" or "postgres")."""
    urls = postgres_database() if database == "postgres" else None
    if urls is None:
        (tmp_path / "db").mkdir()  # the database's folder is hidden from the agent's sandbox
        url = f"sqlite:///{tmp_path / 'db' / 'phasegate.db'}"
    else:
        url = next(urls)
    opened = Orchestrator.open(make_fast_project(tmp_path / "project", url, extra_toml))
    try:
        yield opened
    finally:
        opened.close()
        if urls is not None:
            next(urls, None)  # drops the database


def make_script_dir(path: Path) -> Path:
    """Tests first, a buggy implementation next, then the fix."""
    for rel, content in (
        ("tests/tests/test_calc.py", TESTS),
        ("implementation/calc.py", BUGGY),
        ("fix/calc.py", GOOD),
    ):
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_text(content)
    return path


@dataclass
class WorkerProcess:
    """One `phasegate worker` subprocess and where its log goes."""

    name: str
    roles: str
    proc: subprocess.Popen[bytes]
    log: Path

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)


@dataclass
class Fleet:
    """Worker processes on one project; each gets its own agent principal."""

    orch: Orchestrator
    script_dir: Path
    log_dir: Path
    lease_ttl: float = 8.0  # long enough that CPU starvation on 2 shared cores never expires it
    script_delay: float = 0.05
    metrics_file: Path | None = None
    workers: list[WorkerProcess] = field(default_factory=list)

    def start(self, name: str, roles: str, *extra: str) -> WorkerProcess:
        _, token = self.orch.add_principal("agent", name, roles.split(","))
        env = {
            **os.environ,
            "PHASEGATE_AGENT_TOKEN": token,
            "PHASEGATE_DATABASE_URL": self.orch.project.database_url,
        }
        log = self.log_dir / f"{name}.log"
        args = [
            PHASEGATE,
            "--project",
            str(self.orch.project.root),
            "worker",
            "--role",
            roles,
            "--agent",
            "script",
            "--script-dir",
            str(self.script_dir),
            "--script-delay",
            str(self.script_delay),
            "--lease-ttl",
            str(self.lease_ttl),
            "--poll-interval",
            "0.1",
            *extra,
        ]
        if self.metrics_file is not None:
            args += ["--metrics-file", str(self.metrics_file)]
        with open(log, "wb") as handle:
            proc = subprocess.Popen(args, env=env, stdout=handle, stderr=subprocess.STDOUT)
        worker = WorkerProcess(name, roles, proc, log)
        self.workers.append(worker)
        return worker

    def stop_all(self) -> None:
        for worker in self.workers:
            if worker.proc.poll() is None:
                worker.proc.send_signal(signal.SIGKILL)
                worker.proc.wait(10)


def start_sessions(orch: Orchestrator, human: Principal, n: int) -> list[str]:
    return [orch.start_session("design.md", human, again=True).id for _ in range(n)]


def drive_approvals(
    orch: Orchestrator,
    human: Principal,
    ids: Iterable[str],
    *,
    timeout_s: float,
    during: Callable[[int], None] = lambda done: None,
) -> float:
    """Approve tests as a human until every session waits at the final gate; return seconds."""
    wanted, started = set(ids), time.monotonic()
    while True:
        for session in orch.list_sessions(phase="awaiting_test_review", limit=1000):
            orch.decide(session.id, "approve", human)
        done = {s.id for s in orch.list_sessions(phase="awaiting_final_review", limit=1000)}
        during(len(done & wanted))
        if wanted <= done:
            return time.monotonic() - started
        if time.monotonic() - started > timeout_s:
            stuck = {
                s.id[:8]: s.phase for s in orch.list_sessions(limit=1000) if s.id in wanted - done
            }
            raise AssertionError(
                f"{len(wanted - done)} sessions did not reach the final gate: {stuck}"
            )
        time.sleep(0.1)


def lease_overlaps(orch: Orchestrator) -> list[str]:
    """Pairs of leases on one session whose time spans overlap (should be none)."""
    with orch.db.read() as conn:
        rows = q.lease_rows(conn)
    problems, by_session = [], _group(rows)
    for session_id, leases in by_session.items():
        for before, after in itertools.pairwise(leases):
            released = before["released_at"]
            if released is None or released > after["acquired_at"]:
                problems.append(
                    f"{session_id[:8]}: epoch {before['epoch']} ({before['owner']}) "
                    f"overlaps epoch {after['epoch']} ({after['owner']})"
                )
    return problems


def _group(rows: list[Any]) -> dict[str, list[Any]]:
    groups: dict[str, list[Any]] = {}
    for row in rows:
        groups.setdefault(row["session_id"], []).append(row)
    return {k: sorted(v, key=lambda r: r["epoch"]) for k, v in groups.items()}


def python() -> str:
    return sys.executable


@contextmanager
def running(worker: Worker) -> Iterator[Worker]:
    """`worker` running in a thread for the block; aborted and joined after it."""
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        worker.abort()
        thread.join(20)


def wait_for(condition: Callable[[], bool], timeout_s: float = 20) -> None:
    """Poll `condition` until it holds; fail the test after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)
