"""The prompt an agent CLI gets for one phase: the design plus what the phase needs.

Each role's text says what it may touch and what it may not: the designer
only the design document, the tester only tests, the coder only code (the
approved tests and design are locked), the reviewer nothing at all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from phasegate.domain.session import Session

_TASKS = {
    "design": (
        "You are the DESIGNER. Turn the request below into a design document: what to build, "
        "its interface, its behaviour and edge cases, precise enough to write tests from. "
        "Write it to {design_path} and change no other file: no code, no tests (those are "
        "written after a human approves the design). Leave the file in the working directory; "
        "phasegate commits it and shows it to a human reviewer."
    ),
    "review": (
        "You are the REVIEWER. The approved tests failed on the coder's last change. Read the "
        "failures below, the change (`git diff {base} HEAD` in the working directory) and the "
        "design, and explain what is wrong and what the coder should change. Do not change, "
        "create or delete any file: your analysis is text, and your final message is what "
        "phasegate gives the coder."
    ),
    "tests": (
        "You are the TESTER. Write automated tests for the design below, and only tests: "
        "put them in test files (for example tests/test_*.py) and do not implement the code. "
        "Leave your files in the working directory; phasegate commits them and shows them, "
        "with a first (red) run, to a human reviewer."
    ),
    "implementation": (
        "You are the CODER. Implement the design below so that the approved tests pass. "
        "The tests are approved and locked: do not change, delete or skip them, and do not "
        "change the test runner's configuration. Leave your changes in the working directory; "
        "phasegate commits them and runs the tests itself."
    ),
    "fix": (
        "You are the CODER. The approved tests failed on your last change (details below). "
        "Fix the code, not the tests: the tests are locked. Leave your changes in the working "
        "directory; phasegate runs the tests again."
    ),
}


def build_prompt(session: Session, kind: str, *, last_run: Mapping[str, Any] | None = None) -> str:
    """The prompt text for a `kind` submission (design, tests, implementation, fix, review).

    `last_run` is the whole evidence of the session's last run (its failures).
    """
    ctx = session.context
    task = _TASKS[kind].format(
        design_path=ctx.get("design_path") or "the design document",
        base=session.base_commit or "HEAD~1",
    )
    heading = "## Request" if kind == "design" else "## Design"
    parts = [
        f"# phasegate session {session.short_id}: {session.task_name} ({session.phase})",
        task,
        f"{heading}\n\n" + str(ctx.get("design", "")).strip(),
    ]
    if kind == "design" and ctx.get("designs"):
        parts.append(
            f"Your previous draft is in {ctx.get('design_path')}; revise it for the feedback."
        )
    if kind not in ("tests", "design"):
        parts.append(_approved_tests(ctx))
    if kind == "review":
        run = last_run or ctx.get("test_results") or {}
        parts.append(_failures(run, run.get("failures") or ctx.get("failures") or []))
    if kind == "fix":
        run = last_run or ctx.get("test_results") or {}
        parts.append(_failures(run, run.get("failures") or ctx.get("failures") or []))
        parts.append(_comments("Reviewer analysis of the failures", ctx.get("reviews") or []))
        parts.append(_comments("Guidance from a human", ctx.get("guidance") or []))
    parts.append(_comments("Feedback from the human reviewer", ctx.get("feedback") or []))
    return "\n\n".join(p for p in parts if p) + "\n"


def _approved_tests(ctx: Mapping[str, Any]) -> str:
    tests = ctx.get("tests") or {}
    paths = tests.get("paths") or sorted((ctx.get("approved_tests") or {}).get("hashes", {}))
    if not paths:
        return ""
    listing = "\n".join(f"- {p}" for p in paths)
    return f"## Approved tests (read them in the working directory)\n\n{listing}"


def _failures(results: Mapping[str, Any], failures: Sequence[Mapping[str, Any]]) -> str:
    lines = [f"## Last test run: {results.get('status', '?')}: {results.get('reason', '')}"]
    for failure in failures[:20]:
        lines.append(f"\n### {failure.get('id', '?')} ({failure.get('outcome', 'failed')})")
        if failure.get("message"):
            lines.append(str(failure["message"]))
        if failure.get("traceback"):
            lines.append("```\n" + str(failure["traceback"]) + "\n```")
    return "\n".join(lines)


def _comments(title: str, entries: Sequence[Mapping[str, Any]]) -> str:
    if not entries:
        return ""
    lines = [f"## {title}"]
    for entry in entries[-5:]:
        lines.append(
            f"- ({entry.get('phase', '')}, {entry.get('by', '')}): {entry.get('comment', '')}"
        )
    return "\n".join(lines)
