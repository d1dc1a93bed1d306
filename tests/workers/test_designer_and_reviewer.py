"""Push-mode workers run a designer and a reviewer with the command and script adapters."""

from __future__ import annotations

import sys
from pathlib import Path

from phasegate.agents import build_agent
from phasegate.orchestrator import Orchestrator
from phasegate.worker import Worker, WorkerOptions
from tests.workers.fleet import BUGGY, TESTS, make_fast_project, running, wait_for

SPEC_OPTIONS = "[workflows.spec]\nreview_failures = true\n"
DESIGN = "# adder\\n\\nadd(a, b) returns the sum of a and b.\\n"
# A stand-in agent CLI: the designer writes the design file; the reviewer only talks.
FAKE_AGENT = f"""
import os, pathlib, sys
prompt = sys.stdin.read()
print(prompt)
if os.environ["PHASEGATE_PHASE"] == "drafting_design":
    pathlib.Path("designs").mkdir(exist_ok=True)
    pathlib.Path("designs/adder.md").write_text("{DESIGN}")
    print("drafted from the request")
else:
    print("ANALYSIS: add() subtracts; it must return a + b.")
"""


def _project(tmp_path: Path, extra: str) -> Orchestrator:
    (tmp_path / "db").mkdir()  # the database's folder stays hidden from the agent's sandbox
    url = f"sqlite:///{tmp_path / 'db' / 'phasegate.db'}"
    return Orchestrator.open(make_fast_project(tmp_path / "project", url, SPEC_OPTIONS + extra))


def _worker(orch: Orchestrator, role: str, adapter: str, script_dir: Path | None = None) -> Worker:
    principal = orch.add_principal("agent", f"{role}-bot", [role])[0]
    agent = build_agent(adapter, role, orch.project, script_dir=script_dir)
    options = WorkerOptions(lease_ttl_s=3, poll_interval_s=0.05, max_backoff_s=0.2)
    return Worker(orch, principal, {role: agent}, options)


def _to_failed_run(orch: Orchestrator, sid: str) -> None:
    """The tester's and coder's part, submitted directly: the failed run reaches the reviewer."""
    bot = orch.add_principal("agent", "helper", ["tester", "coder", "runner"])[0]
    alice = orch.add_principal("human", "carol")[0]
    orch.submit(sid, "tests", bot, [{"path": "tests/test_calc.py", "content": TESTS}])
    orch.decide(sid, "approve", alice)
    orch.submit(sid, "implementation", bot, [{"path": "calc.py", "content": BUGGY}])
    assert orch.run_tests(sid, bot)[0].phase == "analyzing_failures"


def test_command_designer_and_reviewer(tmp_path: Path) -> None:
    """The designer's file becomes the design; the reviewer's words become the coder's guidance."""
    script = tmp_path / "agent" / "agent.py"
    script.parent.mkdir()
    script.write_text(FAKE_AGENT)
    command = f'command = "{sys.executable} {script}"\n'
    orch = _project(tmp_path, f"[agents.designer]\n{command}[agents.reviewer]\n{command}")
    human = orch.add_principal("human", "alice")[0]
    task = orch.tasks.add_request("add two numbers", name="adder")
    sid = orch.start_session(task["id"], human, workflow="spec").id

    with running(_worker(orch, "designer", "command")):
        wait_for(lambda: orch.get(sid).phase == "awaiting_design_review")
    session = orch.get(sid)
    assert session.context["design"] == DESIGN.replace("\\n", "\n")
    note = session.context["designs"][-1]["note"]  # the agent's output, its prompt echoed first
    assert "drafted from the request" in note and "You are the DESIGNER" in note
    assert "Write it to designs/adder.md and change no other file" in note
    orch.decide(sid, "approve", human)

    _to_failed_run(orch, sid)
    with running(_worker(orch, "reviewer", "command")):
        wait_for(lambda: orch.get(sid).phase == "fixing_failures")
    review = orch.get(sid).context["reviews"][-1]
    assert "ANALYSIS: add() subtracts" in review["comment"] and review["by"] == "reviewer-bot"
    assert "You are the REVIEWER" in review["comment"]  # the prompt, echoed, named the role
    assert "Do not change, create or delete any file" in review["comment"]


def test_script_designer_and_reviewer(tmp_path: Path) -> None:
    """Replayed folders: design/ holds the design file, review/ only a .note (no files)."""
    scripts = tmp_path / "script"
    (scripts / "design" / "designs").mkdir(parents=True)
    (scripts / "design" / "designs" / "adder.md").write_text("# adder\n\nthe sum\n")
    (scripts / "review").mkdir()
    (scripts / "review" / ".note").write_text("the sign is wrong: a + b")
    orch = _project(tmp_path, "")
    human = orch.add_principal("human", "alice")[0]
    task = orch.tasks.add_request("add two numbers", name="adder")
    sid = orch.start_session(task["id"], human, workflow="spec").id

    with running(_worker(orch, "designer", "script", scripts)):
        wait_for(lambda: orch.get(sid).phase == "awaiting_design_review")
    orch.decide(sid, "approve", human)
    _to_failed_run(orch, sid)
    with running(_worker(orch, "reviewer", "script", scripts)):
        wait_for(lambda: orch.get(sid).phase == "fixing_failures")
    assert orch.get(sid).context["reviews"][-1]["comment"] == "the sign is wrong: a + b"
