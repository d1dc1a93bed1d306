"""The rules that turn a finished command and its JUnit report into a verdict.

First matching rule wins:

1. timed out                                   → failed
2. no report, exit 127/126 (command missing)   → error, infrastructure
3. report unreadable                           → error
4. no report, killed by a signal               → failed
5. no report, approved tests expected          → failed ("approved tests did not run")
6. no report, none configured (not pytest)     → the exit code decides
7. no report, pytest exit 2/3/4                → failed ("tests could not be collected")
8. no report, pytest exit 5                    → failed ("no tests were collected")
9. no report otherwise                         → error (not infrastructure: the code stopped it)
10. collection errors in the report            → failed
11. an approved test missing or skipped        → failed
12. report lists no tests                      → failed
13. failures or errors in the report           → failed (and says so if the exit code was 0)
14. nonzero exit although nothing failed       → failed
15. otherwise                                  → passed
"""

from __future__ import annotations

from dataclasses import dataclass

from phasegate.testrun.evidence import Status
from phasegate.testrun.junit import JUnitReport
from phasegate.testrun.process import ProcessOutcome

_NOT_FOUND = {
    127: "test command not found (exit 127)",
    126: "test command not executable (exit 126)",
}
_PYTEST_COLLECTION_EXITS = (2, 3, 4)  # interrupted, internal error, usage error (bad conftest)
_LISTED = 5  # ids named in a reason before "+N more"


@dataclass(frozen=True)
class Verdict:
    """A run's status, the one-line reason, and whether the failure is the code's fault."""

    status: Status
    reason: str
    infrastructure: bool = False


def judge(
    outcome: ProcessOutcome,
    report: JUnitReport | None,
    *,
    timeout_s: float,
    report_problem: str | None = None,
    report_expected: bool = True,
    is_pytest: bool = False,
    approved: frozenset[str] | None = None,
) -> Verdict:
    """Apply the rules in this module's docstring."""
    code = outcome.exit_code
    if outcome.timed_out:
        return Verdict("failed", f"the test command timed out after {timeout_s:g} s")
    if report is None and code in _NOT_FOUND:
        return Verdict("error", _NOT_FOUND[code], infrastructure=True)
    if report_problem is not None:
        return Verdict("error", f"the test report could not be read: {report_problem}")
    if report is None:
        return _without_report(code, report_expected, is_pytest, approved)
    return _with_report(code, report, approved)


def _without_report(
    code: int | None, expected: bool, is_pytest: bool, approved: frozenset[str] | None
) -> Verdict:
    if code is not None and code < 0:
        return Verdict("failed", f"the test command was killed by signal {-code}")
    if approved:
        return Verdict(
            "failed", f"approved tests did not run: no test report was written (exit {code})"
        )
    if not expected:
        if code == 0:
            return Verdict("passed", "exit code 0 (no JUnit report configured, so no test ids)")
        return Verdict("failed", f"the test command failed (exit {code})")
    if is_pytest and code in _PYTEST_COLLECTION_EXITS:
        return Verdict("failed", f"tests could not be collected (pytest exit {code})")
    if is_pytest and code == 5:
        return Verdict("failed", "no tests were collected (pytest exit 5)")
    return Verdict("error", f"no test report was written (exit {code}); see the output")


def _with_report(code: int | None, report: JUnitReport, approved: frozenset[str] | None) -> Verdict:
    broken = [t.id for t in report.tests if _is_collection_error(t.id, t.outcome, t.message)]
    if broken:
        return Verdict("failed", f"tests could not be collected: {_list(broken)}")
    if approved:
        outcomes = {t.id: t.outcome for t in report.tests}
        missing = sorted(i for i in approved if outcomes.get(i) in (None, "skipped"))
        if missing:
            n_skipped = sum(1 for i in missing if outcomes.get(i) == "skipped")
            note = f" ({n_skipped} skipped)" if n_skipped else ""
            return Verdict("failed", f"approved tests did not run{note}: {_list(missing)}")
    counts = report.counts()
    if counts["total"] == 0:
        return Verdict("failed", f"no tests were collected (exit {code})")
    if counts["failed"] or counts["errors"]:
        tally = _tally(counts)
        if code == 0:
            return Verdict("failed", f"exit code 0 but the report shows failures ({tally})")
        return Verdict("failed", tally)
    if code != 0:
        return Verdict("failed", f"exit code {code} but the report shows no failures")
    skipped = f", {counts['skipped']} skipped" if counts["skipped"] else ""
    return Verdict("passed", f"all {counts['passed']} tests passed{skipped}")


def _is_collection_error(test_id: str, outcome: str, message: str) -> bool:
    # pytest reports a module that failed to import as an error whose id is the file itself.
    whole_file = test_id.endswith(".py") and "::" not in test_id
    return outcome == "error" and (message == "collection failure" or whole_file)


def _tally(counts: dict[str, int]) -> str:
    total, failed, errors = counts["total"], counts["failed"], counts["errors"]
    parts = [f"{failed} of {total} tests failed"] if failed else []
    if errors:
        parts.append(f"{errors} of {total} tests errored" if not failed else f"{errors} errored")
    return ", ".join(parts)


def _list(ids: list[str]) -> str:
    shown = ", ".join(ids[:_LISTED])
    return shown + (f" (+{len(ids) - _LISTED} more)" if len(ids) > _LISTED else "")
