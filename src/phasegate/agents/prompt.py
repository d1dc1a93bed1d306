"""The prompt an agent CLI gets for one phase: the design plus what the phase needs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from phasegate.domain.session import Session

_TASKS = {
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
    """The prompt text for a `kind` submission (tests, implementation, fix) on `session`.

    `last_run` is the whole evidence of the session's last run (its failures).
    """
    ctx = session.context
    parts = [
        f"# phasegate session {session.short_id}: {session.task_name} ({session.phase})",
        _TASKS[kind],
        "## Design\n\n" + str(ctx.get("design", "")).strip(),
    ]
    if kind != "tests":
        parts.append(_approved_tests(ctx))
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
