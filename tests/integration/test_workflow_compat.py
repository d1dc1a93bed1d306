"""Sessions on workflows written before workflows declared their locks run on unchanged."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from phasegate.config import Project, Settings
from phasegate.domain.builtin_workflows import TDD
from phasegate.domain.principal import Principal
from phasegate.errors import SubmissionRefused
from phasegate.orchestrator import Orchestrator
from tests.conftest import BUGGY_IMPL, GOOD_IMPL, GOOD_TESTS, TEST_COMMAND

TESTS = [{"path": "tests/test_calc.py", "content": GOOD_TESTS}]


def old_table() -> dict[str, Any]:
    """The tdd workflow as a TOML table of before: `submission`, and no `locks` anywhere."""
    phases = []
    for phase in TDD.to_json()["phases"]:
        table = {k: v for k, v in phase.items() if v not in (None, "", ()) and k != "locks"}
        phases.append(table)
    transitions = [
        {"action": t.action, "from": t.source, "to": t.target, "actor": t.actor.value,
         "counts_attempt": t.counts_attempt, "on_limit": t.on_limit,
         "requires_comment": t.requires_comment, "resets_attempts": t.resets_attempts}
        for t in TDD.transitions
    ]  # fmt: skip
    return {"phases": phases, "transitions": transitions}


@pytest.fixture
def orch(project_root: Path, db_url: str) -> Iterator[Orchestrator]:
    """A project whose own workflow `legacy` is a copy of tdd from before locks were declared."""
    settings = Settings(
        database_url=db_url, test_command=TEST_COMMAND, workflows={"legacy": old_table()}
    )
    orchestrator = Orchestrator.open(Project(project_root, settings))
    yield orchestrator
    orchestrator.close()


@pytest.mark.parametrize("workflow", ["legacy", "tdd"])
def test_a_session_started_before_locks_locks_its_tests_and_completes(
    orch: Orchestrator, human: Principal, agent: Principal, project_root: Path, workflow: str
) -> None:
    """Started, then reopened by a new process: approving the tests still locks them."""
    sid = orch.start_session("design.md", human, workflow=workflow, again=True).id
    orch.submit(sid, "tests", agent, TESTS)
    assert "locks" not in str(orch.get(sid).context)  # nothing about locks was ever stored
    orch.close()

    later = Orchestrator.open(orch.project)  # the upgraded process picks the session up
    try:
        assert later.workflow_of(later.get(sid)).locks_at("awaiting_test_review") == ("tests",)
        later.decide(sid, "approve", human)
        assert "tests/test_calc.py" in later.get(sid).context["approved_tests"]["hashes"]
        weakened = [{"path": "tests/test_calc.py", "content": "def test_nothing(): pass\n"}]
        with pytest.raises(SubmissionRefused, match="approved test"):
            later.submit(sid, "implementation", agent, weakened)
        assert later.get(sid).context["refusals"]["by_cause"] == {"locked_test": 1}
        later.submit(sid, "implementation", agent, [{"path": "calc.py", "content": BUGGY_IMPL}])
        assert later.run_tests(sid, agent)[0].phase == "fixing_failures"  # no reviewer by default
        later.submit(sid, "fix", agent, [{"path": "calc.py", "content": GOOD_IMPL}])
        assert later.run_tests(sid, agent)[0].phase == "awaiting_final_review"
        assert later.decide(sid, "approve", human).phase == "completed"
    finally:
        later.close()
