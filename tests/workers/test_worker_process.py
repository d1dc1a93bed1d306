"""The `phasegate worker` process: graceful SIGTERM, and the script adapter's attempts."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from phasegate.agents import Job, ScriptAgent
from phasegate.orchestrator import Orchestrator
from tests.workers.fleet import Fleet


@pytest.mark.timeout(60)
def test_sigterm_finishes_the_work_in_hand_and_claims_nothing_more(
    sqlite_orch: Orchestrator, fleet_factory: Callable[[Orchestrator], Fleet]
) -> None:
    """A worker told to stop while its agent thinks still submits that work, then exits 0
    without claiming the next session."""
    orch, fleet = sqlite_orch, fleet_factory(sqlite_orch)
    fleet.script_delay = 2.0
    human = orch.add_principal("human", "reviewer")[0]
    first = orch.start_session("design.md", human, again=True)
    worker = fleet.start("slow-tester", "tester")
    deadline = time.monotonic() + 20
    while orch.get(first.id).lease_owner is None:
        assert time.monotonic() < deadline, worker.log.read_text()
        time.sleep(0.05)
    second = orch.start_session("design.md", human, again=True)
    assert worker.terminate() == 0
    assert orch.get(first.id).phase == "awaiting_test_review"
    assert orch.get(second.id).lease_epoch == 0  # never claimed
    assert "draining" in worker.log.read_text()


def test_script_replays_numbered_attempts(sqlite_orch: Orchestrator, tmp_path: Path) -> None:
    """The n-th fix of a session replays fix/n, and the last folder once attempts run out."""
    script = tmp_path / "numbered"
    for n, body in ((1, "one"), (2, "two")):
        (script / "fix" / str(n)).mkdir(parents=True)
        (script / "fix" / str(n) / "calc.py").write_text(body)
    (script / "fix" / "2" / ".note").write_text("second try")
    agent = ScriptAgent(script)
    assert agent._folder("fix", 1).name == "1"
    assert agent._folder("fix", 2).name == "2"
    assert agent._folder("fix", 7).name == "2"
    human = sqlite_orch.add_principal("human", "h")[0]
    session = sqlite_orch.start_session("design.md", human, again=True)
    (script / "tests").mkdir()
    (script / "tests" / "test_x.py").write_text("def test_x():\n    pass\n")
    submission = agent.work(Job(sqlite_orch, session, human, 0))
    assert submission.files == [{"path": "test_x.py", "content": "def test_x():\n    pass\n"}]
