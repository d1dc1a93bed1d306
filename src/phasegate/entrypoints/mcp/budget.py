"""Keeping a whole result within its size budget: the least needed parts are cut first.

Each part of a result already has its own limit (results.py); a session with
a big design, many test files and loud failures could still add up to more
than a model should read in one go, or more than a client accepts (Claude
Code refuses results over 25,000 tokens). So a result is measured as the
compact JSON a client shows, and while it is over its budget the next step
below cuts one kind of part, each time leaving a pointer to the resource that
holds the whole.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TypeVar

from pydantic import BaseModel

from phasegate.entrypoints.mcp.results import (
    FailureItem,
    StatusResult,
    SubmitResult,
    TestRunSummary,
    TestsView,
    cut,
)

#: `get_session_status`, `start_session`, `claim_next`: about 6,000 tokens.
STATUS_BUDGET = 24_000
#: Every other result (submissions, runs, decisions): about 3,000 tokens.
RESULT_BUDGET = 12_000
SHORT = 400  # what a cut text keeps, characters
FAILURES_KEPT = 3
PATHS_KEPT = 20
FINDINGS_KEPT = 10  # of a pre-review: the rest are in the timeline

M = TypeVar("M", bound=BaseModel)
Step = Callable[[BaseModel, str], None]


def size(result: BaseModel) -> int:
    """The result's length as a client shows it to the model (compact JSON)."""
    return len(result.model_dump_json())


def fit(result: M, budget: int, pointer: str) -> M:
    """`result`, cut step by step (in place) until it is within `budget` characters."""
    for step in STEPS:
        if size(result) <= budget:
            break
        step(result, pointer)
    return result


def _output_tails(result: BaseModel, pointer: str) -> None:
    for run in _runs(result):
        if run.output_tail:
            run.output_tail = f"[output left out to keep this result small; read {pointer}]"


def _earlier_runs(result: BaseModel, pointer: str) -> None:
    """Every run summary but the newest loses its failures (the red run next to a later one)."""
    for run in list(_runs(result))[:-1]:
        if run.failures or run.warnings:
            run.failures, run.warnings = [], []
            run.omitted = f"left out to keep this result small; read {pointer}"


def _tracebacks(result: BaseModel, pointer: str) -> None:
    for failure in _failures(result):
        failure.traceback = cut(failure.traceback, SHORT, pointer)
        failure.message = cut(failure.message, SHORT, pointer)


def _comments(result: BaseModel, pointer: str) -> None:
    if isinstance(result, StatusResult):
        for entry in [*result.feedback, *result.guidance, *result.reviews]:
            entry.comment = cut(entry.comment, SHORT, "the session timeline")
        if result.pre_review is not None:
            review = result.pre_review
            review.summary = cut(review.summary, SHORT, "the session timeline")
            review.findings = review.findings[:FINDINGS_KEPT]
            for finding in review.findings:
                finding.comment = cut(finding.comment, SHORT, "the session timeline")
        if result.approval_request:
            result.approval_request = cut(result.approval_request, SHORT, "the session timeline")


def _fewer_failures(result: BaseModel, pointer: str) -> None:
    if isinstance(result, StatusResult):
        result.failures = result.failures[:FAILURES_KEPT]
    for run in _runs(result):
        if len(run.failures) > FAILURES_KEPT:
            run.failures = run.failures[:FAILURES_KEPT]
            run.omitted = f"only the first {FAILURES_KEPT} failures are shown; read {pointer}"


def _shorter_test_files(result: BaseModel, pointer: str) -> None:
    if isinstance(result, StatusResult) and result.tests is not None:
        where = _in_worktree(result.tests)
        for file in result.tests.files:
            file.content = cut(file.content, SHORT * 2, where)


def _test_paths_only(result: BaseModel, pointer: str) -> None:
    if isinstance(result, StatusResult) and result.tests is not None:
        tests = result.tests
        for file in tests.files:
            file.content = f"[left out to keep this result small; read {_in_worktree(tests)}]"
        tests.more_files += max(0, len(tests.files) - PATHS_KEPT)
        tests.files = tests.files[:PATHS_KEPT]


def _submitted_paths(result: BaseModel, pointer: str) -> None:
    """A submission of hundreds of files lists the first ones and says how many more."""
    if isinstance(result, SubmitResult):
        for name in ("paths", "deleted"):
            paths: list[str] = getattr(result, name)
            if len(paths) > PATHS_KEPT:
                more = len(paths) - PATHS_KEPT
                kept = [cut(p, SHORT // 2, pointer) for p in paths[:PATHS_KEPT]]
                setattr(result, name, [*kept, f"[{more} more; read {pointer}]"])


def _design(result: BaseModel, pointer: str) -> None:
    if isinstance(result, StatusResult):
        result.design = cut(result.design, SHORT * 3, result.design_resource)


def _failure_texts(result: BaseModel, pointer: str) -> None:
    for failure in _failures(result):
        failure.traceback = ""
        failure.message = cut(failure.message, SHORT // 2, pointer)


STEPS: tuple[Step, ...] = (
    _output_tails,
    _earlier_runs,
    _tracebacks,
    _comments,
    _fewer_failures,
    _shorter_test_files,
    _submitted_paths,
    _design,
    _test_paths_only,
    _failure_texts,
)


def _in_worktree(tests: TestsView) -> str:
    return f"the file at commit {tests.commit[:10]} in the session's worktree"


def _runs(result: BaseModel) -> Iterator[TestRunSummary]:
    """The run summaries in a result, oldest evidence first (the red run before the others)."""
    for name in ("red_run", "last_run", "run", "test_run_in_progress"):
        run = getattr(result, name, None)
        if isinstance(run, TestRunSummary):
            yield run


def _failures(result: BaseModel) -> Iterator[FailureItem]:
    for run in _runs(result):
        yield from run.failures
    if isinstance(result, StatusResult):
        yield from result.failures
