"""A reviewer's attacks on its own tools are refused and change nothing, on both databases.

A review with `files: []` used to pass the "a review changes no file" rule while
the reviewer's edit sat in the worktree, for the coder's next fix to commit; and
`pre_review` had no limit, so a reviewer could grow the session by megabytes.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from phasegate.config import Project, Settings
from phasegate.domain.principal import Principal
from phasegate.errors import InvalidInput, SubmissionRefused
from phasegate.orchestrator import Orchestrator
from phasegate.reviews import MAX_PRE_REVIEWS_PER_GATE
from tests.conftest import BUGGY_IMPL, GOOD_IMPL, GOOD_TESTS, TEST_COMMAND

TESTS = [{"path": "tests/test_calc.py", "content": GOOD_TESTS}]
FINDING = {"path": "tests/test_calc.py", "line": 4, "comment": "no test for zero"}


@pytest.fixture
def orch(project_root: Path, db_url: str) -> Iterator[Orchestrator]:
    """An orchestrator whose tdd workflow has the reviewer's analysis and pre-review on."""
    options = {"review_failures": True, "pre_review": True}
    settings = Settings(database_url=db_url, test_command=TEST_COMMAND, workflows={"tdd": options})
    orchestrator = Orchestrator.open(Project(project_root, settings))
    yield orchestrator
    orchestrator.close()


@pytest.fixture
def bot(orch: Orchestrator) -> Principal:
    return orch.add_principal("agent", "bot", ["tester", "coder", "reviewer", "runner"])[0]


def git(worktree: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=worktree, capture_output=True, text=True, check=True)
    return done.stdout


def state(orch: Orchestrator, sid: str) -> dict[str, Any]:
    """What a refused call must leave as it was: phase, version, head, events, context."""
    session = orch.get(sid)
    worktree = orch.project.root / session.context["worktree"]
    return {
        "phase": session.phase,
        "version": session.version,
        "head": git(worktree, "rev-parse", "HEAD"),
        "events": [e["action"] for e in orch.timeline(sid)],
        "context": session.context,
    }


def at_analysis(orch: Orchestrator, human: Principal, bot: Principal) -> str:
    sid = orch.start_session("design.md", human, again=True).id
    orch.submit(sid, "tests", bot, TESTS)
    orch.decide(sid, "approve", human)
    orch.submit(sid, "implementation", bot, [{"path": "calc.py", "content": BUGGY_IMPL}])
    session, _run = orch.run_tests(sid, bot)
    assert session.phase == "analyzing_failures"
    return sid


@pytest.mark.parametrize("files", [[], None])
def test_a_review_leaving_an_edit_in_the_worktree_is_refused_and_the_edit_kept(
    orch: Orchestrator, human: Principal, bot: Principal, files: list[Any] | None
) -> None:
    """A reviewer's uncommitted edit refuses its review whatever `files` says; nothing is
    committed or reset, and the refusal is recorded with the edited path."""
    sid = at_analysis(orch, human, bot)
    worktree = orch.project.root / orch.get(sid).context["worktree"]
    (worktree / "calc.py").write_text(GOOD_IMPL)
    (worktree / "helper.py").write_text("x = 1\n")
    before = state(orch, sid)
    with pytest.raises(SubmissionRefused, match="a review is text, not code") as refused:
        orch.submit(sid, "review", bot, files, note="add() subtracts")
    assert "2 left uncommitted in the worktree" in refused.value.message
    assert "\n" not in refused.value.message
    after = state(orch, sid)
    assert after["events"] == [*before["events"], "submission_refused"]
    assert (after["phase"], after["head"]) == (before["phase"], before["head"])
    refusals = after["context"]["refusals"]
    assert refusals["by_cause"] == {"review_with_files": 1}
    assert sorted(refusals["recent"][-1]["paths"]) == ["calc.py", "helper.py"]
    assert not after["context"].get("reviews")
    assert (worktree / "calc.py").read_text() == GOOD_IMPL  # the evidence stays
    assert (worktree / "helper.py").exists()

    git(worktree, "checkout", "--", "calc.py")
    (worktree / "helper.py").unlink()
    session = orch.submit(sid, "review", bot, files, note="add() subtracts")
    assert session.phase == "fixing_failures"
    assert session.context["reviews"][-1]["comment"] == "add() subtracts"


def at_test_review(orch: Orchestrator, human: Principal, bot: Principal) -> str:
    sid = orch.start_session("design.md", human, again=True).id
    orch.submit(sid, "tests", bot, TESTS)
    assert orch.get(sid).phase == "awaiting_test_review"
    return sid


@pytest.mark.parametrize(
    ("summary", "findings", "words"),
    [
        ("s" * 20_001, [FINDING], "the summary must be text of at most 20,000 characters"),
        ("fine", [FINDING] * 51, "51 findings; attach at most 50"),
        (
            "fine",
            [{**FINDING, "comment": "c" * 2_001}],
            "finding #1 needs a 'comment' of 1 to 2,000",
        ),
        ("fine", [{**FINDING, "path": "p" * 1_025}], "finding #1 needs a 'path' (the file"),
        ("fine", ["tests/test_calc.py"], "finding #1 must be an object"),
    ],
)
def test_an_oversized_pre_review_is_refused_and_writes_nothing(
    orch: Orchestrator,
    human: Principal,
    bot: Principal,
    summary: str,
    findings: list[Any],
    words: str,
) -> None:
    """Over a pre-review's bounds is one InvalidInput line; the session is as it was."""
    sid = at_test_review(orch, human, bot)
    before = state(orch, sid)
    with pytest.raises(InvalidInput, match="^" + re.escape(words)):
        orch.pre_review(sid, bot, "reject", summary, findings)
    assert state(orch, sid) == before


def test_at_most_twenty_pre_reviews_per_gate_visit(
    orch: Orchestrator, human: Principal, bot: Principal
) -> None:
    """The 21st pre-review at one gate visit is refused and writes nothing; the next visit of
    the gate starts a new count."""
    sid = at_test_review(orch, human, bot)
    big = [{**FINDING, "line": n, "comment": "c" * 2_000} for n in range(1, 51)]
    for n in range(MAX_PRE_REVIEWS_PER_GATE):
        orch.pre_review(sid, bot, "reject", f"round {n}" + "s" * 19_000, big)
    before = state(orch, sid)
    assert before["context"]["pre_review"]["count"] == MAX_PRE_REVIEWS_PER_GATE
    with pytest.raises(InvalidInput, match="already attached 20 pre-reviews at this gate"):
        orch.pre_review(sid, bot, "approve", "one more", [FINDING])
    assert state(orch, sid) == before
    assert before["events"].count("pre_review") == MAX_PRE_REVIEWS_PER_GATE

    orch.decide(sid, "reject", human, comment="test zero too")
    zero = GOOD_TESTS + "\n\ndef test_add_zero():\n    assert add(0, 0) == 0\n"
    orch.submit(sid, "tests", bot, [{"path": "tests/test_calc.py", "content": zero}])
    session = orch.pre_review(sid, bot, "approve", "covers zero now", [FINDING])
    assert session.context["pre_review"]["count"] == 1
