"""The review brief: what a human reads first on the session page and in `phasegate show`.

Each case is provoked for real on both databases (tests submitted and run in
git, a reject and a resubmission, a refused submission, an exhausted fix loop,
a setup error) and the brief is built from what the orchestrator recorded.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from engine_helpers import GOOD_IMPL, GOOD_TESTS, phasegate, start
from starlette.testclient import TestClient
from tests.conftest import BUGGY_IMPL, setup_error_at_verify
from tests.engine.conftest import MAX_FIX_ATTEMPTS, TEST_COMMAND
from tests.web.conftest import start_server, stop_server

from phasegate.config import Project, Settings
from phasegate.domain.principal import Principal
from phasegate.entrypoints.web import create_app
from phasegate.errors import SubmissionRefused
from phasegate.feed import EventFeed
from phasegate.orchestrator import Orchestrator
from phasegate.review_brief import ReviewBrief
from phasegate.review_rounds import review_rounds

TESTS = [{"path": "tests/test_calc.py", "content": GOOD_TESTS}]
MORE_TESTS = GOOD_TESTS + "\n\ndef test_add_zero():\n    assert add(0, 0) == 0\n"


def brief_of(orch: Orchestrator, session_id: str) -> ReviewBrief:
    return orch.brief(orch.get(session_id))


def show(orch: Orchestrator, ref: str, db_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """What `phasegate show` prints for the session (on the database, unless a server is set)."""
    monkeypatch.setenv("PHASEGATE_DATABASE_URL", db_url)
    code, shown, err = phasegate("--project", str(orch.project.root), "show", ref)
    assert code == 0, err
    return shown


def at_test_review(orch: Orchestrator, human: Principal, agent: Principal) -> str:
    sid = start(orch, human).id
    orch.submit(sid, "tests", agent, TESTS, note="positive and negative sums")
    orch.request_approval(sid, agent, "Both fail on the stub, as they should.")
    return sid


def test_a_first_test_review_says_what_is_decided_and_what_was_submitted(
    orch: Orchestrator, human: Principal, agent: Principal
) -> None:
    """At a first test review the brief names the question, the tester, its note and the red run."""
    brief = brief_of(orch, at_test_review(orch, human, agent))
    assert (brief.kind, brief.phase, brief.round, brief.at_gate) == (
        "review",
        "awaiting_test_review",
        1,
        True,
    )
    assert "right tests for the design" in brief.question
    assert "locks these tests" in brief.approving
    assert brief.submitted is not None
    assert (brief.submitted.what, brief.submitted.by) == ("tests", f"{agent.name} (tester)")
    assert brief.submitted.paths == ("tests/test_calc.py",)
    assert brief.submitted.note == "positive and negative sums"
    assert brief.agent_message == "Both fail on the stub, as they should."
    assert brief.run_expected_to_fail and brief.run_status == "failed"
    assert "2 of 2 tests failed, as expected" in brief.run_line
    assert brief.warnings == () and brief.last_decision is None and brief.changes == ()


def test_after_a_reject_the_brief_says_what_changed_since(
    orch: Orchestrator, human: Principal, agent: Principal
) -> None:
    """Resubmitted tests: round 2, the reject and its comment, the new submission and its run."""
    sid = at_test_review(orch, human, agent)
    orch.decide(sid, "reject", human, comment="Also test add(0, 0).")
    orch.submit(sid, "tests", agent, [{**TESTS[0], "content": MORE_TESTS}], note="added zero")
    brief = brief_of(orch, sid)
    assert brief.round == 2 and brief.last_decision is not None
    assert (brief.last_decision.action, brief.last_decision.comment) == (
        "reject",
        "Also test add(0, 0).",
    )
    [change] = brief.changes
    assert change.startswith(f"submit_tests by {agent.name} (tester)")
    assert "run failed: 3 of 3 tests failed (before: 2 of 2 tests failed)" in change
    assert brief.agent_message == ""  # the request was for the earlier round


def test_rounds_keep_a_rejected_rounds_runs_apart_from_the_current_ones(
    orch: Orchestrator, human: Principal, agent: Principal
) -> None:
    """Runs are grouped into rounds closed by the human decision that ended them."""
    sid = at_test_review(orch, human, agent)
    orch.decide(sid, "reject", human, comment="Also test add(0, 0).")
    orch.submit(sid, "tests", agent, [{**TESTS[0], "content": MORE_TESTS}])
    session = orch.get(sid)
    first, second = review_rounds(
        orch.workflow_of(session), orch.timeline(sid), orch.test_runs(sid)
    )
    assert first.decision is not None and first.decision.action == "reject"
    assert [a.run["reason"] for a in first.attempts if a.run] == ["2 of 2 tests failed"]
    assert second.current and [a.run["reason"] for a in second.attempts if a.run] == [
        "3 of 3 tests failed"
    ]


def test_tests_that_already_pass_are_a_warning(
    orch: Orchestrator, human: Principal, agent: Principal
) -> None:
    """A red run that passes is no evidence: the brief warns, and failing is not 'expected'."""
    sid = start(orch, human).id
    orch.submit(
        sid, "tests", agent, [{"path": "tests/test_x.py", "content": "def test_x():\n    pass\n"}]
    )
    brief = brief_of(orch, sid)
    assert any("already pass" in w for w in brief.warnings), brief.warnings
    assert not brief.run_expected_to_fail


def test_a_refused_attempt_is_a_warning_at_the_final_review(
    orch: Orchestrator, human: Principal, agent: Principal
) -> None:
    """A coder that touched a locked test is named at the final review, with the path."""
    sid = at_test_review(orch, human, agent)
    orch.decide(sid, "approve", human)
    hack = [{"path": "calc.py", "content": GOOD_IMPL}, {**TESTS[0], "content": "x = 1\n"}]
    with pytest.raises(SubmissionRefused):
        orch.submit(sid, "implementation", agent, hack)
    orch.submit(sid, "implementation", agent, [{"path": "calc.py", "content": GOOD_IMPL}])
    orch.run_tests(sid, agent)
    brief = brief_of(orch, sid)
    assert (brief.kind, brief.run_status, brief.run_expected_to_fail) == ("review", "passed", False)
    assert "implementation" in brief.question
    assert any(
        "1 refused submission" in w and "change a locked test" in w and "tests/test_calc.py" in w
        for w in brief.warnings
    ), brief.warnings


def test_an_exhausted_fix_loop_is_an_escalation(
    orch: Orchestrator, human: Principal, agent: Principal
) -> None:
    """After the last fix attempt fails the brief is an escalation that says why."""
    sid = at_test_review(orch, human, agent)
    orch.decide(sid, "approve", human)
    orch.submit(sid, "implementation", agent, [{"path": "calc.py", "content": BUGGY_IMPL}])
    for _ in range(MAX_FIX_ATTEMPTS - 1):
        orch.run_tests(sid, agent)
        orch.submit(sid, "fix", agent, [{"path": "calc.py", "content": BUGGY_IMPL + "\n"}])
    session, _ = orch.run_tests(sid, agent)
    assert session.phase == "awaiting_human_intervention"
    brief = brief_of(orch, sid)
    assert brief.kind == "escalation" and brief.at_gate and brief.approving == ""
    assert "used all its attempts" in brief.question
    assert f"{MAX_FIX_ATTEMPTS} of {MAX_FIX_ATTEMPTS} attempts used" in brief.question


def test_a_setup_error_is_its_own_kind_with_the_fix(
    orch: Orchestrator, human: Principal, agent: Principal
) -> None:
    """A test command that went missing: kind setup_error, the warning names what to fix."""
    brief = brief_of(orch, setup_error_at_verify(orch, human, agent))
    assert brief.kind == "setup_error"
    assert "could not run as configured" in brief.question
    assert any(w.startswith("setup error:") and "test_command" in w for w in brief.warnings)
    assert any("UNSANDBOXED" in w for w in brief.warnings)  # the helper runs without a sandbox


def test_a_session_at_agent_work_has_nothing_to_decide(
    orch: Orchestrator, human: Principal
) -> None:
    """Waiting on the tester, the brief says so, with no run and no comparison."""
    brief = brief_of(orch, start(orch, human).id)
    assert brief.kind == "agent" and not brief.at_gate
    assert brief.question.startswith("Nothing to decide: an agent (tester)")
    assert brief.run_line == "No test run yet." and brief.submitted is None


def test_show_leads_with_the_brief(
    orch: Orchestrator,
    human: Principal,
    agent: Principal,
    db_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`phasegate show` prints the brief first: kind, question, submitter, run, then the details."""
    sid = at_test_review(orch, human, agent)
    shown = show(orch, sid, db_url, monkeypatch)
    lines = shown.splitlines()
    assert lines[0].startswith("REVIEW  awaiting_test_review · round 1 · ") and sid[:8] in lines[0]
    assert lines[1].startswith("decide   Are these the right tests")
    assert any(line.startswith(f"by       tests by {agent.name} (tester)") for line in lines)
    run = next(i for i, line in enumerate(lines) if line.startswith("run      Red run"))
    details = next(i for i, line in enumerate(lines) if line.startswith(f"session {sid}"))
    assert run < details
    assert "message  Both fail on the stub, as they should." in shown


def test_show_through_a_server_leads_with_the_same_brief(
    orch: Orchestrator,
    human: Principal,
    agent: Principal,
    db_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As a (guarded) server's client, `show` has only the API, not the events and runs: the
    server builds the brief (`/api/sessions/{id}/brief`) and show prints it exactly as it
    prints one built from the database, before the details."""
    sid = at_test_review(orch, human, agent)
    orch.decide(sid, "reject", human, comment="Also test add(0, 0).")
    orch.submit(sid, "tests", agent, [{**TESTS[0], "content": MORE_TESTS}], note="added zero")
    local = show(orch, sid, db_url, monkeypatch)
    token = orch.add_principal("human", "remote-bob")[1]
    server = start_server(orch.project.root, {"PHASEGATE_DATABASE_URL": db_url})
    try:
        monkeypatch.setenv("PHASEGATE_SERVER_URL", server.url)
        monkeypatch.setenv("PHASEGATE_TOKEN", token)
        remote = show(orch, sid[:8], db_url, monkeypatch)
    finally:
        stop_server(server)

    def brief_part(shown: str) -> list[str]:
        lines = shown.splitlines()
        return lines[: next(i for i, line in enumerate(lines) if line.startswith("─"))]

    assert brief_part(remote) == brief_part(local)
    assert brief_part(remote)[0].startswith("REVIEW  awaiting_test_review · round 2 · ")
    assert any(line.startswith("since    reject by ") for line in brief_part(remote))
    assert f"session {sid}" in remote.split("─")[-1]  # then the details


def test_a_test_that_errors_in_the_red_run_is_a_warning(
    orch: Orchestrator, human: Principal, agent: Principal
) -> None:
    """An error (a missing fixture) is not the expected failure of a red run: the brief warns."""
    sid = start(orch, human).id
    broken = GOOD_TESTS + "\n\ndef test_zero(missing_fixture):\n    assert add(0, 0) == 0\n"
    orch.submit(sid, "tests", agent, [{**TESTS[0], "content": broken}])
    brief = brief_of(orch, sid)
    assert any("1 test errored rather than failed" in w for w in brief.warnings), brief.warnings


def test_a_reviewer_agents_findings_at_the_gate_are_in_the_brief_and_on_the_page(
    project_root: Path, db_url: str
) -> None:
    """With pre-review on, the brief carries the reviewer's verdict and findings; so does the
    page's brief, marked as a suggestion the human decides on."""
    settings = Settings(
        database_url=db_url, test_command=TEST_COMMAND, workflows={"tdd": {"pre_review": True}}
    )
    orch = Orchestrator.open(Project(project_root, settings))
    try:
        human, token = orch.add_principal("human", "alice")
        bot, _ = orch.add_principal("agent", "bot", ["tester", "reviewer"])
        sid = start(orch, human).id
        orch.submit(sid, "tests", bot, TESTS)
        findings = [{"path": "tests/test_calc.py", "line": 4, "comment": "no test for zero"}]
        orch.pre_review(sid, bot, "reject", "misses an edge case", findings)
        brief = brief_of(orch, sid)
        assert brief.pre_review is not None
        assert (brief.pre_review["verdict"], brief.pre_review["findings"]) == ("reject", findings)
        app = create_app(orch, EventFeed(orch), allowed_hosts=["testserver"], secret=b"t")
        with TestClient(app) as client:
            html = client.get(f"/sessions/{sid}", headers={"Authorization": f"Bearer {token}"}).text
        shown = html.split('id="pre-review"', 1)[1].split("</details>", 1)[0]
        assert "Reviewer agent bot suggests reject" in shown and "no test for zero" in shown
        assert html.index('id="pre-review"') < html.index('id="decide"')
    finally:
        orch.close()
