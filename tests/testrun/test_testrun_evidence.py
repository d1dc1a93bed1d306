"""Evidence serialisation and summaries, and verdict rules that real runs rarely hit."""

from __future__ import annotations

import pytest

from phasegate.testrun import (
    JUnitReport,
    ProcessOutcome,
    ReportError,
    TestCaseResult,
    TestRunEvidence,
    summarize,
)
from phasegate.testrun.inventory import collected_inventory
from phasegate.testrun.stream import StreamEvidence
from phasegate.testrun.verdict import judge


def finished(code: int) -> StreamEvidence:
    """The stream of a pytest run that started and finished with `code` and ran no test."""
    return StreamEvidence(starts=1, finishes=[code])


def outcome(exit_code: int | None, *, timed_out: bool = False) -> ProcessOutcome:
    return ProcessOutcome(exit_code, timed_out, 0.5, "", 0)


def report(*outcomes: str) -> JUnitReport:
    return JUnitReport(
        tuple(TestCaseResult(f"t.py::t{i}", o) for i, o in enumerate(outcomes))  # type: ignore[arg-type]
    )


FAILED = TestRunEvidence(
    status="failed",
    reason="1 of 2 tests failed",
    infrastructure=False,
    exit_code=1,
    duration_s=1.25,
    command="pytest",
    commit="a" * 40,
    counts={"total": 2, "passed": 1, "failed": 1, "errors": 0, "skipped": 0},
    failures=(TestCaseResult("t.py::t", "failed", "assert 1 == 2\nmore", "tb"),),
    collected=("t.py::t", "t.py::u"),
    output_tail="1 failed",
)


def test_summary_names_the_verdict_counts_and_failures() -> None:
    """summarize shows the status and reason, the counts, and each failure's first line."""
    text = summarize(FAILED)
    assert text.splitlines()[0] == "FAILED: 1 of 2 tests failed"
    assert "2 tests: 1 passed, 1 failed, 0 errors, 0 skipped" in text
    assert "t.py::t  assert 1 == 2" in text and "more" not in text


def test_infrastructure_errors_do_not_count_as_attempts() -> None:
    """Only failures that are the code's fault use up a fix attempt."""
    infra = TestRunEvidence("error", "test command not found (exit 127)", True, 127, 0, "x", "c")
    assert FAILED.counts_as_attempt and not infra.counts_as_attempt
    assert "does not count as a fix attempt" in summarize(infra)


def test_malformed_stored_evidence_raises_report_error() -> None:
    """from_json on something that is not evidence raises ReportError, not KeyError."""
    with pytest.raises(ReportError):
        TestRunEvidence.from_json('{"status": "passed"}')
    with pytest.raises(ReportError):
        TestRunEvidence.from_json("[1, 2]")


def test_exit_code_zero_with_errors_only_is_a_failure() -> None:
    """An exit code of 0 does not hide tests that errored."""
    verdict = judge(outcome(0), report("passed", "error"), timeout_s=60)
    assert verdict.status == "failed"
    assert verdict.reason == "exit code 0 but the report shows failures (1 of 2 tests errored)"


def test_killed_by_signal_without_report_is_the_codes_fault() -> None:
    """A command killed by a signal (e.g. out of memory) fails, and counts as an attempt."""
    verdict = judge(outcome(128 + 9), None, timeout_s=60, stream=StreamEvidence(starts=1))
    assert (verdict.status, verdict.infrastructure) == ("failed", False)
    assert verdict.reason == "the test command was killed by signal 9"


def test_many_missing_approved_tests_are_listed_briefly() -> None:
    """The reason names the first five missing approved tests and counts the rest."""
    approved = collected_inventory(f"t.py::m{i}" for i in range(8))
    verdict = judge(outcome(0), report("passed"), timeout_s=60, inventory=approved)
    assert verdict.reason.startswith("approved tests did not run: t.py::m0, ")
    assert verdict.reason.endswith("(+3 more)")


def test_no_report_for_unexpected_reason_is_an_error_but_not_infrastructure() -> None:
    """A pytest run that wrote no report and exited 1 is an error the code caused."""
    verdict = judge(outcome(1), None, timeout_s=60, stream=finished(1))
    assert (verdict.status, verdict.infrastructure) == ("error", False)
