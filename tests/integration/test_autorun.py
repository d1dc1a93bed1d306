"""phasegate runs the pending test runs itself: whichever of its processes is up, exactly once.

Real processes (`phasegate serve`, `phasegate mcp`) on the test's database;
the test process only submits, as an agent would, and never calls run_tests.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from phasegate.autorun import AutoRunner
from phasegate.domain.principal import Principal
from phasegate.orchestrator import Orchestrator
from phasegate.store import queries as q
from tests.conftest import BUGGY_IMPL, GOOD_IMPL, GOOD_TESTS

PHASEGATE = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "phasegate")


def at_running_tests(orch: Orchestrator, human: Principal, agent: Principal, impl: str) -> str:
    session = orch.start_session("design.md", human, again=True)
    orch.submit(session.id, "tests", agent, [{"path": "tests/test_calc.py", "content": GOOD_TESTS}])
    orch.decide(session.id, "approve", human)
    orch.submit(session.id, "implementation", agent, [{"path": "calc.py", "content": impl}])
    assert orch.get(session.id).phase == "running_tests"
    return session.id


@contextmanager
def phasegate_process(orch: Orchestrator, *command: str) -> Iterator[subprocess.Popen[bytes]]:
    """`phasegate <command>` on the test's project and database, stopped after the block."""
    env = {**os.environ, "PHASEGATE_DATABASE_URL": orch.project.database_url}
    proc = subprocess.Popen(
        [PHASEGATE, "--project", str(orch.project.root), *command],
        env=env,
        stdin=subprocess.PIPE,  # `mcp` serves until its client hangs up: it never does here
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGINT if command[0] == "serve" else signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def left_running_tests(orch: Orchestrator, ids: list[str], proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 90
    while any(orch.get(sid).phase == "running_tests" for sid in ids):
        if proc.poll() is not None:
            pytest.fail(
                f"phasegate exited early: {proc.stderr.read().decode() if proc.stderr else ''}"
            )
        assert time.monotonic() < deadline, "no process ran the pending tests"
        time.sleep(0.2)


def runner_leases(orch: Orchestrator, session_id: str) -> list[str]:
    with orch.db.read() as conn:
        return [r["owner"] for r in q.lease_rows(conn) if r["session_id"] == session_id]


def verify_runs(orch: Orchestrator, session_id: str) -> int:
    return sum(1 for run in orch.test_runs(session_id) if run["kind"] == "verify")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_with_only_serve_up_the_submission_is_run_without_asking(
    orch: Orchestrator, human: Principal, agent: Principal
) -> None:
    """Nobody calls run_tests and no runner worker exists: `serve` runs the tests itself."""
    sid = at_running_tests(orch, human, agent, BUGGY_IMPL)
    with phasegate_process(orch, "serve", "--port", str(free_port())) as proc:
        left_running_tests(orch, [sid], proc)
    session = orch.get(sid)
    assert (session.phase, session.fix_attempts) == ("fixing_failures", 1)
    assert verify_runs(orch, sid) == 1
    assert [o.split(":")[0] for o in runner_leases(orch, sid)] == [
        f"phasegate@{socket.gethostname()}"
    ]
    assert all(r.ok for r in orch.verify_audit(sid))


def test_with_only_mcp_up_the_submission_is_run_without_asking(
    orch: Orchestrator, human: Principal, agent: Principal
) -> None:
    """`phasegate mcp` (an agent's stdio server, before any tool call) runs pending tests too."""
    sid = at_running_tests(orch, human, agent, GOOD_IMPL)
    with phasegate_process(orch, "mcp") as proc:
        left_running_tests(orch, [sid], proc)
    assert orch.get(sid).phase == "awaiting_final_review"
    assert verify_runs(orch, sid) == 1


def test_two_processes_racing_make_exactly_one_run_per_submission(
    orch: Orchestrator, human: Principal, agent: Principal
) -> None:
    """Two `phasegate mcp` processes see the same pending sessions: each is run once."""
    ids = [at_running_tests(orch, human, agent, impl) for impl in (BUGGY_IMPL, GOOD_IMPL) * 2]
    with phasegate_process(orch, "mcp") as first, phasegate_process(orch, "mcp") as second:
        left_running_tests(orch, ids, first)
        assert second.poll() is None
    assert [verify_runs(orch, sid) for sid in ids] == [1, 1, 1, 1]
    assert [orch.get(sid).phase for sid in ids] == [
        "fixing_failures",
        "awaiting_final_review",
    ] * 2
    owners = {o for sid in ids for o in runner_leases(orch, sid)}
    assert all(o.startswith("phasegate@") for o in owners)


def test_run_tests_returns_the_run_phasegate_already_made(
    orch: Orchestrator, human: Principal, agent: Principal
) -> None:
    """An agent's run_tests after the automatic run gets that run, and no second one is made."""
    sid = at_running_tests(orch, human, agent, BUGGY_IMPL)
    assert AutoRunner(orch).run_pending() == 1
    session, run = orch.run_tests(sid, agent)
    assert (session.phase, run["status"], verify_runs(orch, sid)) == (
        "fixing_failures",
        "failed",
        1,
    )
    assert run["run_id"] == session.context["test_results"]["run_id"]


def test_an_agent_waits_on_the_run_in_progress_instead_of_making_another(
    orch: Orchestrator, human: Principal, agent: Principal
) -> None:
    """While the automatic runner holds the lease, run_tests waits for its result."""
    sid = at_running_tests(orch, human, agent, GOOD_IMPL)
    runner = AutoRunner(orch, poll_s=0.05).start()
    try:
        deadline = time.monotonic() + 30
        while not (orch.get(sid).lease_owner or "").startswith(runner.principal.name):
            assert time.monotonic() < deadline, "the runner never took the session"
            time.sleep(0.01)
        heard: list[str] = []
        session, run = orch.run_tests(sid, agent, progress=heard.append)
    finally:
        runner.stop()
    assert (session.phase, run["status"], verify_runs(orch, sid)) == (
        "awaiting_final_review",
        "passed",
        1,
    )
    assert heard and "already being run" in heard[0]


def test_auto_run_off_leaves_the_session_for_a_runner(
    orch: Orchestrator, human: Principal, agent: Principal
) -> None:
    """With `auto_run = false` the long-running processes don't run tests."""
    sid = at_running_tests(orch, human, agent, BUGGY_IMPL)
    toml = orch.project.root / "phasegate.toml"
    toml.write_text(toml.read_text() + "auto_run = false\n")
    with phasegate_process(orch, "mcp") as proc:
        time.sleep(4)  # two polls
        assert proc.poll() is None
    assert orch.get(sid).phase == "running_tests" and verify_runs(orch, sid) == 0


def test_the_same_agent_calling_twice_waits_for_its_first_run_instead_of_rerolling(
    orch: Orchestrator, human: Principal, agent: Principal
) -> None:
    """A second run_tests by the run's own principal (another process, say) can't take the
    run over and start a new one: one submission, one run, whatever the outcome."""
    slow = "import time\ntime.sleep(2)\n" + GOOD_IMPL
    sid = at_running_tests(orch, human, agent, slow)
    first: list[tuple[object, dict[str, object]]] = []
    thread = threading.Thread(target=lambda: first.append(orch.run_tests(sid, agent)))
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while orch.get(sid).lease_owner != f"{agent.name}#run":
            assert time.monotonic() < deadline, "the first run never started"
            time.sleep(0.01)
        _, second = orch.run_tests(sid, agent)
    finally:
        thread.join(60)
    assert verify_runs(orch, sid) == 1
    assert second["run_id"] == first[0][1]["run_id"]
