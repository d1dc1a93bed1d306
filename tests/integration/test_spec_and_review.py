"""The spec workflow, the design lock, the reviewer's analysis and pre-review, on both databases."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from phasegate.agents.prompt import build_prompt
from phasegate.config import Project, Settings
from phasegate.domain.principal import Principal
from phasegate.errors import InvalidTransition, PermissionDenied, SubmissionRefused
from phasegate.orchestrator import Orchestrator
from tests.conftest import BUGGY_IMPL, GOOD_IMPL, GOOD_TESTS, TEST_COMMAND

TESTS = [{"path": "tests/test_calc.py", "content": GOOD_TESTS}]
DESIGN = "# add\n\nadd(a, b) returns the sum of two integers.\n"


@pytest.fixture
def orch(project_root: Path, db_url: str) -> Iterator[Orchestrator]:
    """An orchestrator whose workflows have the reviewer's analysis and pre-review turned on."""
    options = {"review_failures": True, "pre_review": True}
    settings = Settings(
        database_url=db_url,
        test_command=TEST_COMMAND,
        workflows={"tdd": options, "spec": options},
    )
    orchestrator = Orchestrator.open(Project(project_root, settings))
    yield orchestrator
    orchestrator.close()


@pytest.fixture
def bot(orch: Orchestrator) -> Principal:
    return orch.add_principal("agent", "bot", ["designer", "tester", "coder", "reviewer"])[0]


def head(orch: Orchestrator, sid: str) -> str:
    worktree = orch.project.root / orch.get(sid).context["worktree"]
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=worktree, capture_output=True, text=True, check=True
    ).stdout.strip()


def to_design_approved(orch: Orchestrator, human: Principal, bot: Principal) -> str:
    task = orch.tasks.add_request("add two numbers", name="adder")
    sid = orch.start_session(task["id"], human, workflow="spec").id
    assert orch.get(sid).phase == "drafting_design"
    orch.submit(sid, "design", bot, [{"path": "designs/adder.md", "content": DESIGN}])
    orch.decide(sid, "approve", human, comment="clear")
    return sid


def test_spec_session_from_request_to_completed(
    orch: Orchestrator, human: Principal, bot: Principal
) -> None:
    """A request becomes a design, a rejected draft goes back to the designer, then tdd runs."""
    task = orch.tasks.add_request("add two numbers", name="adder")
    assert (orch.project.root / "designs" / "adder.md").read_text().endswith("add two numbers\n")
    sid = orch.start_session(task["id"], human, workflow="spec").id
    draft = [{"path": "designs/adder.md", "content": "# add\n\nadd things.\n"}]
    orch.submit(sid, "design", bot, draft, note="first draft")
    assert orch.get(sid).phase == "awaiting_design_review"
    session = orch.decide(sid, "reject", human, comment="say what it returns")
    assert session.phase == "drafting_design"
    assert session.context["feedback"][-1]["comment"] == "say what it returns"
    orch.submit(sid, "design", bot, [{"path": "designs/adder.md", "content": DESIGN}])
    session = orch.decide(sid, "approve", human)
    assert session.phase == "generating_tests"
    assert session.context["design"] == DESIGN
    assert session.context["request"].endswith("add two numbers\n")
    assert list(session.context["approved_design"]["hashes"]) == ["designs/adder.md"]
    rounds = orch.design_rounds(session)
    assert len(rounds) == 2 and "+add(a, b) returns the sum" in rounds[1]["diff"]
    assert "-add things." in rounds[1]["diff"]

    orch.submit(sid, "tests", bot, TESTS)
    orch.decide(sid, "approve", human)
    orch.submit(sid, "implementation", bot, [{"path": "calc.py", "content": GOOD_IMPL}])
    session, run = orch.run_tests(sid, bot)
    assert run["status"] == "passed" and session.phase == "awaiting_final_review"
    assert orch.decide(sid, "approve", human).phase == "completed"


@pytest.mark.parametrize("kind", ["tests", "implementation"])
def test_approved_design_is_locked(
    orch: Orchestrator, human: Principal, bot: Principal, kind: str
) -> None:
    """After approval a submission touching the design is refused, recorded, and writes nothing."""
    sid = to_design_approved(orch, human, bot)
    if kind == "implementation":
        orch.submit(sid, "tests", bot, TESTS)
        orch.decide(sid, "approve", human)
    before = head(orch, sid)
    worktree = orch.project.root / orch.get(sid).context["worktree"]
    edit = [{"path": "designs/adder.md", "content": "# add\n\nanything goes\n"}, *TESTS]
    with pytest.raises(SubmissionRefused, match="approved design, so it is locked"):
        orch.submit(sid, kind, bot, edit)
    assert head(orch, sid) == before
    assert (worktree / "designs" / "adder.md").read_text() == DESIGN
    refusals = orch.get(sid).context["refusals"]
    assert refusals["by_cause"] == {"locked_design": 1}
    assert refusals["recent"][-1]["paths"] == ["designs/adder.md", "tests/test_calc.py"]


def test_design_with_code_is_refused_and_writes_nothing(
    orch: Orchestrator, human: Principal, bot: Principal
) -> None:
    """A design submission carrying a code file is refused in one line; nothing is committed."""
    task = orch.tasks.add_request("add two numbers", name="adder")
    sid = orch.start_session(task["id"], human, workflow="spec").id
    before = head(orch, sid)
    files = [{"path": "designs/adder.md", "content": DESIGN}, {"path": "calc.py", "content": "x"}]
    with pytest.raises(SubmissionRefused) as refused:
        orch.submit(sid, "design", bot, files)
    assert str(refused.value.message).startswith(
        "refused path 'calc.py': is not the design document designs/adder.md;"
    )
    assert "\n" not in refused.value.message
    assert head(orch, sid) == before and orch.get(sid).phase == "drafting_design"
    worktree = orch.project.root / orch.get(sid).context["worktree"]
    assert not (worktree / "calc.py").read_text().startswith("x")


def test_reviewer_analysis_reaches_the_coder(
    orch: Orchestrator, human: Principal, bot: Principal
) -> None:
    """A failed run goes to the reviewer; its analysis is in the coder's context and prompt."""
    sid = orch.start_session("design.md", human, again=True).id
    orch.submit(sid, "tests", bot, TESTS)
    orch.decide(sid, "approve", human)
    orch.submit(sid, "implementation", bot, [{"path": "calc.py", "content": BUGGY_IMPL}])
    session, _run = orch.run_tests(sid, bot)
    assert session.phase == "analyzing_failures"
    with pytest.raises(SubmissionRefused, match="a review is text, not code"):
        orch.submit(sid, "review", bot, [{"path": "calc.py", "content": GOOD_IMPL}], note="x")
    assert orch.get(sid).context["refusals"]["by_cause"] == {"review_with_files": 1}
    analysis = "add() subtracts: `a - b` must be `a + b`."
    session = orch.submit(sid, "review", bot, [], note=analysis)
    assert session.phase == "fixing_failures"
    assert session.context["reviews"][-1]["comment"] == analysis
    prompt = build_prompt(session, "fix")
    assert "Reviewer analysis of the failures" in prompt and analysis in prompt
    timeline = orch.timeline(sid)
    assert any(e["action"] == "submit_review" for e in timeline)


def test_pre_review_is_shown_and_a_reviewer_cannot_decide(
    orch: Orchestrator, human: Principal, bot: Principal
) -> None:
    """A reviewer's findings wait at the gate for the human; its attempt to approve is refused."""
    sid = orch.start_session("design.md", human, again=True).id
    with pytest.raises(InvalidTransition, match="findings are attached at a gate"):
        orch.pre_review(sid, bot, "approve", "", [])
    orch.submit(sid, "tests", bot, TESTS)
    findings = [{"path": "tests/test_calc.py", "line": 4, "comment": "no test for zero"}]
    session = orch.pre_review(sid, bot, "reject", "misses an edge case", findings)
    assert session.phase == "awaiting_test_review"
    shown = orch.view(orch.get(sid))["pre_review"]
    assert shown["verdict"] == "reject" and shown["findings"] == findings
    assert shown["by"] == "bot"
    with pytest.raises(PermissionDenied, match="only a human may approve"):
        orch.decide(sid, "approve", bot)
    assert orch.get(sid).phase == "awaiting_test_review"
    # The human decides on the version seen before the pre-review: it makes nothing stale.
    assert orch.decide(sid, "approve", human, expected_version=session.version - 1).phase == (
        "generating_implementation"
    )
    assert orch.view(orch.get(sid))["pre_review"] is None  # it belonged to that gate


def test_pre_review_is_off_by_default(
    project_root: Path, db_url: str, human: Principal, bot: Principal
) -> None:
    """Without pre_review = true a reviewer can't attach findings, and tdd has no analysis phase."""
    plain = Orchestrator.open(
        Project(project_root, Settings(database_url=db_url, test_command=TEST_COMMAND))
    )
    try:
        sid = plain.start_session("design.md", human, again=True).id
        plain.submit(sid, "tests", bot, TESTS)
        with pytest.raises(InvalidTransition, match="pre-review is off in workflow tdd"):
            plain.pre_review(sid, bot, "approve", "", [])
        assert "analyzing_failures" not in {p.name for p in plain.project.workflow().phases}
    finally:
        plain.close()


def test_the_timeline_shows_the_design_review_and_pre_review(
    orch: Orchestrator, human: Principal, bot: Principal
) -> None:
    """`phasegate log` lines carry the reviewer's suggestion, its findings and the analysis."""
    from phasegate.entrypoints.timeline import event_lines

    sid = to_design_approved(orch, human, bot)
    orch.submit(sid, "tests", bot, TESTS)
    findings = [{"path": "tests/test_calc.py", "line": 4, "comment": "no zero case"}]
    orch.pre_review(sid, bot, "approve", "fine overall", findings)
    lines = [line for event in orch.timeline(sid) for line in event_lines(event)]
    assert any("submit_design" in line for line in lines)
    assert "      suggests approve (1 finding(s))" in lines
    assert "      tests/test_calc.py:4: no zero case" in lines
    assert "      summary: fine overall" in lines
    prompt = build_prompt(orch.get(sid), "design")
    assert "You are the DESIGNER" in prompt and "designs/adder.md" in prompt
