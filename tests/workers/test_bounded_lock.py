"""The per-session worktree lock: waited for with a deadline, and not held while tests run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest

from phasegate.errors import Conflict
from phasegate.orchestrator import Orchestrator
from tests.conftest import git
from tests.workers.fleet import TESTS

# A process that takes the real session_lock and reports it holds it.
HOLD_SESSION_LOCK = """
import sys, time
from pathlib import Path
from types import SimpleNamespace
from phasegate.submissions import session_lock
kernel = SimpleNamespace(project=SimpleNamespace(state_dir=Path(sys.argv[1])))
with session_lock(kernel, sys.argv[2]):
    print("held", flush=True)
    time.sleep(120)
"""
TRY_SESSION_LOCK = """
import sys
from pathlib import Path
from types import SimpleNamespace
from phasegate.submissions import session_lock
kernel = SimpleNamespace(project=SimpleNamespace(state_dir=Path(sys.argv[1])))
with session_lock(kernel, sys.argv[2], wait_s=0.5):
    print("got it", flush=True)
"""
FILES = [{"path": "tests/test_calc.py", "content": TESTS}]


@pytest.fixture
def stopped_holder(sqlite_orch: Orchestrator) -> Iterator[list[subprocess.Popen[str]]]:
    """Holder processes, continued and killed when the test ends."""
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        proc.send_signal(signal.SIGCONT)
        proc.kill()
        proc.wait(timeout=10)


def hold_stopped(orch: Orchestrator, session_id: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_SESSION_LOCK, str(orch.project.state_dir), session_id],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    proc.send_signal(signal.SIGSTOP)
    return proc


def test_a_stopped_holder_delays_the_next_lease_holder_only_until_its_deadline(
    sqlite_orch: Orchestrator, stopped_holder: list[subprocess.Popen[str]]
) -> None:
    """The new holder's submission ends within its lease with a Conflict naming the pid."""
    orch = sqlite_orch
    human, _ = orch.add_principal("human", "alice")
    first, _ = orch.add_principal("agent", "first", ["tester"])
    second, _ = orch.add_principal("agent", "second", ["tester"])
    session = orch.start_session("design.md", human)
    assert orch.claim_next(first, "tester", ttl=timedelta(seconds=0.5)) is not None
    holder = hold_stopped(orch, session.id)  # the first worker, stopped inside its submission
    stopped_holder.append(holder)
    time.sleep(0.6)  # the first lease runs out
    claimed = orch.claim_next(second, "tester", ttl=timedelta(seconds=2))
    assert claimed is not None
    worktree = orch.project.root / claimed.context["worktree"]
    head = git(worktree, "rev-parse", "HEAD")

    t0 = time.monotonic()
    with pytest.raises(Conflict, match=rf"another process \(pid {holder.pid}\)"):
        orch.submit(session.id, "tests", second, FILES, lease_epoch=claimed.lease_epoch)
    assert time.monotonic() - t0 < 3.0  # bounded by the 2 s lease, not by the stopped worker
    assert git(worktree, "rev-parse", "HEAD") == head
    assert orch.get(session.id).version == claimed.version

    holder.send_signal(signal.SIGCONT)
    holder.kill()
    holder.wait(timeout=10)
    fresh = orch.claim_next(second, "tester", ttl=timedelta(seconds=30)) or orch.get(session.id)
    done = orch.submit(session.id, "tests", second, FILES, lease_epoch=fresh.lease_epoch)
    assert done.phase != session.phase


def test_the_lock_is_free_while_the_red_run_runs(sqlite_orch: Orchestrator) -> None:
    """Another process takes the worktree lock at once while a submission's tests run."""
    orch = sqlite_orch
    human, _ = orch.add_principal("human", "alice")
    agent, _ = orch.add_principal("agent", "bot", ["tester"])
    session = orch.start_session("design.md", human)
    seen: list[str] = []

    def during_red_run(_message: str) -> None:
        done = subprocess.run(
            [sys.executable, "-c", TRY_SESSION_LOCK, str(orch.project.state_dir), session.id],
            capture_output=True,
            text=True,
            timeout=30,
            env=os.environ.copy(),
        )
        seen.append(done.stdout.strip() or done.stderr.strip().splitlines()[-1])

    new = orch.submit(session.id, "tests", agent, FILES, progress=during_red_run)
    assert seen == ["got it"]
    assert new.context["tests"]["commit"] == new.context["head"]


def test_a_commit_undone_by_another_submitter_is_not_recorded(sqlite_orch: Orchestrator) -> None:
    """If HEAD moved while the red run ran, the submission is refused and leaves HEAD alone."""
    orch = sqlite_orch
    human, _ = orch.add_principal("human", "alice")
    agent, _ = orch.add_principal("agent", "bot", ["tester"])
    session = orch.start_session("design.md", human)
    worktree = orch.project.root / session.context["worktree"]
    base = git(worktree, "rev-parse", "HEAD")

    def another_submitter_recovers(_message: str) -> None:
        # What _recover_interrupted_submission in another process does with our commit.
        git(worktree, "reset", "--quiet", base.strip(), "--")

    with pytest.raises(Conflict, match="changed by another submission"):
        orch.submit(session.id, "tests", agent, FILES, progress=another_submitter_recovers)
    assert git(worktree, "rev-parse", "HEAD") == base
    assert orch.get(session.id).version == session.version
    assert (worktree / "tests" / "test_calc.py").read_text() == TESTS  # kept, uncommitted
