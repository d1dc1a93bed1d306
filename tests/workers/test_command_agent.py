"""The command adapter drives a real agent CLI that edits files in the session's worktree."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from phasegate.agents import build_agent
from phasegate.domain.principal import Principal
from phasegate.orchestrator import Orchestrator
from phasegate.store import queries as q
from phasegate.worker import Worker, WorkerOptions
from tests.workers.fleet import GOOD, TESTS, make_fast_project, running, wait_for

# A stand-in for `claude -p` / `aider --message-file`: reads its prompt, edits files, talks.
FAKE_AGENT = f"""
import os, pathlib, sys
prompt = (pathlib.Path(os.environ["PHASEGATE_PROMPT_FILE"]).read_text()
          if "PHASEGATE_PROMPT_FILE" in os.environ else sys.stdin.read())
print(prompt)  # into the agent's log, for the test to read (its sandbox allows no file outside)
if os.environ["PHASEGATE_PHASE"] == "generating_tests":
    pathlib.Path("tests").mkdir(exist_ok=True)
    pathlib.Path("tests/test_calc.py").write_text({TESTS!r})
else:
    pathlib.Path("calc.py").write_text({GOOD!r})
print("I wrote the code; reasoning: addition is commutative")
"""


def _project(tmp_path: Path, agents_toml: str) -> Orchestrator:
    # The database's folder is hidden from the agent's sandbox: keep it apart from the script.
    (tmp_path / "db").mkdir()
    url = f"sqlite:///{tmp_path / 'db' / 'phasegate.db'}"
    return Orchestrator.open(make_fast_project(tmp_path / "project", url, agents_toml))


def _agent_logs(orch: Orchestrator) -> str:
    """Everything the agent CLIs printed so far."""
    logs = sorted((orch.project.state_dir / "logs" / "agents").glob("*.log"))
    return "".join(log.read_text() for log in logs)


def _worker(orch: Orchestrator, role: str, adapter: str = "command") -> Worker:
    principal = orch.add_principal("agent", f"{role}-bot", [role])[0]
    agent = build_agent(adapter, role, orch.project)
    options = WorkerOptions(lease_ttl_s=3, poll_interval_s=0.05, max_backoff_s=0.2)
    return Worker(orch, principal, {role: agent}, options)


def test_agent_cli_edits_become_the_submissions(tmp_path: Path) -> None:
    """A CLI agent gets the design on stdin (tester) or in a prompt file (coder); the files it
    edits in the worktree are submitted, and the session reaches the final gate."""
    script = tmp_path / "agent" / "agent.py"
    script.parent.mkdir()
    script.write_text(FAKE_AGENT)
    orch = _project(
        tmp_path,
        (
            f'[agents.tester]\ncommand = "{sys.executable} {script}"\n'
            f'[agents.coder]\ncommand = "{sys.executable} {script}"\nprompt = "file"\n'
        ),
    )
    human: Principal = orch.add_principal("human", "reviewer")[0]
    session = orch.start_session("design.md", human, again=True)

    with running(_worker(orch, "tester")):
        wait_for(lambda: orch.get(session.id).phase == "awaiting_test_review")
    assert "returns the sum" in _agent_logs(orch) and "TESTER" in _agent_logs(orch)
    tests = orch.get(session.id).context["tests"]
    assert tests["paths"] == ["tests/test_calc.py"]
    assert "addition is commutative" in tests["note"]

    orch.decide(session.id, "approve", human)
    with running(_worker(orch, "coder")), running(_worker(orch, "runner")):
        wait_for(lambda: orch.get(session.id).phase == "awaiting_final_review")
    assert "CODER" in _agent_logs(orch) and "tests/test_calc.py" in _agent_logs(orch)
    done = orch.get(session.id)
    assert done.context["implementation"]["paths"] == ["calc.py"]
    assert done.context["test_results"]["status"] == "passed"
    assert all(report.ok for report in orch.verify_audit())


def _releases(orch: Orchestrator) -> list[str]:
    with orch.db.read() as conn:
        return [row["release_reason"] for row in q.lease_rows(conn) if row["release_reason"]]


def test_a_crashing_agent_gives_the_session_back_at_once(tmp_path: Path) -> None:
    """An agent CLI that exits non-zero leaves the session unleased, in its phase, claimable by
    another agent at once; the worker keeps claiming."""
    # A high bound: parking after repeated failures is test_failing_agents.py's subject.
    orch = _project(
        tmp_path, 'agent_failures_to_human = 100\n[agents.tester]\ncommand = "echo boom; exit 3"\n'
    )
    human = orch.add_principal("human", "reviewer")[0]
    session = orch.start_session("design.md", human, again=True)
    with running(_worker(orch, "tester")):
        wait_for(lambda: _releases(orch).count("agent_failed") >= 2)  # crashed, claimed again
    after = orch.get(session.id)
    assert after.phase == "generating_tests" and after.lease_owner is None
    other = orch.add_principal("agent", "other", ["tester"])[0]
    assert orch.claim_next(other, "tester") is not None


def test_a_hanging_agent_is_killed_with_its_children_at_its_timeout(tmp_path: Path) -> None:
    """An agent that hangs past timeout_s is killed as a whole process group and its lease
    released, long before the hang would end (unsandboxed: the test reads the child's pid;
    tests/workers/test_agent_sandbox.py covers the sandboxed case)."""
    pids = tmp_path / "pids"
    orch = _project(
        tmp_path,
        (
            f'sandbox = "none"\n[agents.tester]\n'
            f'command = "sleep 60 & echo $! > {pids}; sleep 60"\ntimeout_s = 0.5\n'
        ),
    )
    human = orch.add_principal("human", "reviewer")[0]
    orch.start_session("design.md", human, again=True)
    started = time.monotonic()
    with running(_worker(orch, "tester")):
        wait_for(lambda: "agent_failed" in _releases(orch))
    assert time.monotonic() - started < 15
    child = int(pids.read_text())
    wait_for(lambda: not Path(f"/proc/{child}").exists() or "Z" in _state(child), timeout_s=5)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"
