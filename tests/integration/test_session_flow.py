"""A whole session through real git and real pytest runs, on SQLite and PostgreSQL."""

from __future__ import annotations

import subprocess

import pytest

from phasegate.domain.principal import Principal
from phasegate.errors import PermissionDenied, SubmissionRefused
from phasegate.orchestrator import Orchestrator
from tests.conftest import BUGGY_IMPL, GOOD_IMPL, GOOD_TESTS

TESTS = [{"path": "tests/test_calc.py", "content": GOOD_TESTS}]


def to_test_review(orch: Orchestrator, human: Principal, agent: Principal) -> str:
    session = orch.start_session("design.md", human, again=True)
    orch.submit(session.id, "tests", agent, TESTS, note="two tests from the design")
    return session.id


def test_whole_session_red_buggy_fix_green_final_gate(
    orch: Orchestrator, human: Principal, agent: Principal
) -> None:
    """Tests → red run → approval → buggy code fails with ids → fix → green → completed."""
    sid = to_test_review(orch, human, agent)
    session = orch.get(sid)
    summary = session.context["red_run"]  # bounded: the output and failures stay in the run
    assert session.phase == "awaiting_test_review"
    assert summary["status"] == "failed" and summary["counts"]["failed"] == 2
    assert summary["failures_total"] == 2 and "output_tail" not in summary
    assert summary["warnings"] == []  # every test fails for the right reason: nothing to warn about
    [red] = orch.stored_runs(summary)
    assert red is not None and red["run_id"] == summary["run_id"]
    assert "NotImplementedError" in red["failures"][0]["message"] + red["failures"][0]["traceback"]

    orch.decide(sid, "approve", human, comment="good tests")
    approved = orch.get(sid).context["approved_tests"]
    pinned = {"tests/test_calc.py::test_add": 1, "tests/test_calc.py::test_add_negative": 1}
    assert approved["inventory"] == {"source": "collected", "tests": pinned}
    assert "tests/test_calc.py" in approved["hashes"] and "pytest.ini" in approved["hashes"]

    orch.submit(sid, "implementation", agent, [{"path": "calc.py", "content": BUGGY_IMPL}])
    session, run = orch.run_tests(sid, agent)
    assert session.phase == "fixing_failures" and session.fix_attempts == 1
    assert {f["id"] for f in run["failures"]} == set(pinned)
    assert "assert -1 == 3" in run["failures"][0]["message"] + run["failures"][0]["traceback"]

    orch.submit(
        sid, "fix", agent, [{"path": "calc.py", "content": GOOD_IMPL}], note="plus, not minus"
    )
    session, run = orch.run_tests(sid, agent)
    assert session.phase == "awaiting_final_review" and run["status"] == "passed"

    done = orch.decide(sid, "approve", human)
    assert done.phase == "completed"
    runs = orch.test_runs(sid)
    assert [(r["kind"], r["status"]) for r in runs] == [
        ("red", "failed"),
        ("verify", "failed"),
        ("verify", "passed"),
    ]
    for run in runs:  # the JUnit report of every run is kept as evidence
        report = orch.project.state_dir / "runs" / f"{run['id']}.xml"
        assert report.read_text().startswith("<?xml")
    actions = [e["action"] for e in orch.timeline(sid)]
    assert actions == [
        "begin",
        "load_design",
        "submit_tests",
        "approve",
        "submit_implementation",
        "tests_failed",
        "fix_failures",
        "tests_passed",
        "approve",
    ]
    commits = [e["commit"] for e in orch.timeline(sid) if e["action"].startswith(("submit", "fix"))]
    assert all(commits) and len(set(commits)) == 3
    assert all(r.ok for r in orch.verify_audit(sid))


@pytest.mark.parametrize(
    "change",
    [
        {"path": "tests/test_calc.py", "content": GOOD_TESTS.replace("== 3", "== 3 or True")},
        {"path": "tests/test_calc.py", "content": None},
        {"path": "tests/conftest.py", "content": "import pytest\ncollect_ignore_glob = ['*']\n"},
        {"path": "pytest.ini", "content": "[pytest]\naddopts = -k nothing\n"},
        {
            "path": "tests/test_calc.py",
            "content": "import pytest\npytestmark = pytest.mark.skip\n" + GOOD_TESTS,
        },
    ],
    ids=["edit", "delete", "conftest", "pytest-config", "skip-marker"],
)
def test_approved_tests_cannot_be_touched_afterwards(
    orch: Orchestrator, human: Principal, agent: Principal, change: dict[str, str | None]
) -> None:
    """After approval, touching a test or the runner config is refused, changes no code or phase,
    and is on the record: an audited event naming the paths (never the contents) and the cause."""
    sid = to_test_review(orch, human, agent)
    orch.decide(sid, "approve", human)
    before = orch.get(sid)
    worktree = orch.project.root / before.context["worktree"]
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=worktree, capture_output=True, text=True
    ).stdout
    with pytest.raises(SubmissionRefused) as refused:
        orch.submit(
            sid, "implementation", agent, [{"path": "calc.py", "content": GOOD_IMPL}, change]
        )
    assert str(change["path"]) in str(refused.value) and "generating_implementation" in str(
        refused.value
    )
    after = orch.get(sid)
    assert (after.phase, after.version) == (before.phase, before.version + 1)
    event = orch.timeline(sid)[-1]
    assert (event["action"], event["actor_id"]) == ("submission_refused", agent.name)
    assert event["payload"]["cause"] == "locked_test"
    assert event["payload"]["paths"] == ["calc.py", change["path"]]
    assert "return a + b" not in str(event["payload"])  # what was attempted, not the code
    assert after.context["refusals"]["count"] == 1
    assert orch.verify_audit(sid)[0].ok
    assert (
        subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=worktree, capture_output=True, text=True
        ).stdout
        == head
    )


def test_submit_tests_may_only_touch_tests(
    orch: Orchestrator, human: Principal, agent: Principal
) -> None:
    """A tester can't slip an implementation in with the tests."""
    session = orch.start_session("design.md", human, again=True)
    with pytest.raises(SubmissionRefused, match=r"calc\.py"):
        orch.submit(session.id, "tests", agent, [*TESTS, {"path": "calc.py", "content": GOOD_IMPL}])
    assert orch.get(session.id).phase == "generating_tests"


def test_agent_cannot_decide_and_lease_holder_excludes_others(
    orch: Orchestrator, human: Principal, agent: Principal
) -> None:
    """An agent's approval is refused; while one agent holds the lease another can't submit."""
    sid = to_test_review(orch, human, agent)
    with pytest.raises(PermissionDenied, match="only a human"):
        orch.decide(sid, "approve", agent)
    orch.decide(sid, "approve", human)
    other = orch.add_principal("agent", "other", ["coder"])[0]
    claimed = orch.claim_next(agent, "coder")
    assert claimed is not None and claimed.id == sid
    with pytest.raises(PermissionDenied, match="claimed by bot"):
        orch.submit(sid, "implementation", other, [{"path": "calc.py", "content": GOOD_IMPL}])
    assert (
        orch.submit(
            sid,
            "implementation",
            agent,
            [{"path": "calc.py", "content": GOOD_IMPL}],
            lease_epoch=claimed.lease_epoch,
        ).phase
        == "running_tests"
    )


def test_red_run_warns_when_tests_already_pass_or_do_not_load(
    orch: Orchestrator, human: Principal, agent: Principal
) -> None:
    """The reviewer is warned about tests that pass before any code, or that don't even load."""
    passing = "def test_trivial():\n    assert True\n"
    session = orch.start_session("design.md", human, again=True)
    orch.submit(session.id, "tests", agent, [{"path": "tests/test_calc.py", "content": passing}])
    [warning] = orch.get(session.id).context["red_run"]["warnings"]
    assert "1 of 1 tests already pass" in warning
    assert orch.test_runs(session.id)[0]["evidence"]["warnings"] == [warning]

    other = orch.start_session("design.md", human, again=True)
    broken = "import no_such_module\n\ndef test_x():\n    assert no_such_module\n"
    orch.submit(other.id, "tests", agent, [{"path": "tests/test_calc.py", "content": broken}])
    [warning] = orch.get(other.id).context["red_run"]["warnings"]
    assert "don't load" in warning
