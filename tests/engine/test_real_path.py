"""The real path: agents submit files to git, phasegate runs pytest, humans decide."""

from __future__ import annotations

import subprocess

from engine_helpers import BUGGY_IMPL, GOOD_IMPL, GOOD_TESTS, event_count, start

from phasegate.domain.principal import Principal
from phasegate.orchestrator import Orchestrator


def _head(orch: Orchestrator, session_id: str) -> str:
    worktree = orch.project.root / orch.get(session_id).context["worktree"]
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=worktree, check=True, capture_output=True, text=True
    ).stdout.strip()


def test_a_session_escalates_after_two_failed_runs_and_recovers_with_guidance(
    orch: Orchestrator, human: Principal, agent: Principal
) -> None:
    """Two failed runs escalate to a human; retry's guidance reaches the coder; green completes."""
    sid = start(orch, human).id
    s = orch.submit(
        sid,
        "tests",
        agent,
        [{"path": "test_calc.py", "content": GOOD_TESTS}],
        note="two cases from the design",
    )
    assert s.phase == "awaiting_test_review"
    assert s.context["red_run"]["status"] == "failed"  # evidence shown at the gate
    assert s.context["tests"]["commit"] == _head(orch, sid)

    s = orch.decide(sid, "approve", human, expected_version=s.version)
    assert s.phase == "generating_implementation"
    assert "test_calc.py" in s.context["approved_tests"]["hashes"]

    s = orch.submit(sid, "implementation", agent, [{"path": "calc.py", "content": BUGGY_IMPL}])
    s, evidence = orch.run_tests(sid, agent)
    assert (s.phase, s.fix_attempts, evidence["status"]) == ("fixing_failures", 1, "failed")
    summary = s.context["test_results"]  # a bounded summary naming the run; the run has the rest
    assert summary["run_id"] == evidence["run_id"] and summary["failures_total"] >= 1
    [run] = orch.stored_runs(summary)
    assert run is not None and run["failures"] == evidence["failures"]

    s = orch.submit(sid, "fix", agent, [{"path": "calc.py", "content": BUGGY_IMPL + "\n"}])
    s, evidence = orch.run_tests(sid, agent)
    assert (s.phase, s.fix_attempts) == ("awaiting_human_intervention", 2)
    assert orch.view(s)["waiting_on"] == "human"

    s = orch.decide(sid, "retry", human, comment="add, don't subtract")
    assert (s.phase, s.fix_attempts) == ("fixing_failures", 0)
    assert s.context["guidance"][-1]["comment"] == "add, don't subtract"

    s = orch.submit(sid, "fix", agent, [{"path": "calc.py", "content": GOOD_IMPL}])
    s, evidence = orch.run_tests(sid, agent)
    assert (s.phase, evidence["status"]) == ("awaiting_final_review", "passed")
    s = orch.decide(sid, "approve", human)
    assert s.phase == "completed"

    actions = [e["action"] for e in orch.timeline(sid)]
    assert actions == [
        "begin",
        "load_design",
        "submit_tests",
        "approve",
        "submit_implementation",
        "tests_failed",
        "fix_failures",
        "tests_failed",
        "retry",
        "fix_failures",
        "tests_passed",
        "approve",
    ]
    assert [r["kind"] for r in orch.test_runs(sid)] == ["red", "verify", "verify", "verify"]
    assert all(r.ok for r in orch.verify_audit(sid))


def test_a_refused_submission_writes_nothing(
    orch: Orchestrator, human: Principal, agent: Principal
) -> None:
    """Submitting an implementation while tests are awaited leaves git and the log untouched."""
    sid = start(orch, human).id
    head, events = _head(orch, sid), event_count(orch, sid)
    try:
        orch.submit(sid, "implementation", agent, [{"path": "calc.py", "content": GOOD_IMPL}])
    except Exception as exc:
        assert "can't submit_implementation" in str(exc) and "generating_tests" in str(exc)
    else:
        raise AssertionError("the submission was accepted")
    assert (_head(orch, sid), event_count(orch, sid)) == (head, events)
