"""The rules that turn a finished run and its evidence into a verdict.

First matching rule wins:

1. timed out                                   → failed
2. killed by a resource limit                  → failed ("killed: memory limit 2 GiB")
3. no report, exit 127/126, and the program really is missing (pytest's
   interpreter before pytest started; another command's program not on PATH)
                                               → error, infrastructure, setup
   pytest killed by a signal before finishing  → failed
4. the stream, report and exit status disagree → failed ("the run's evidence disagrees…")
5. report unreadable                           → error
6. harness tampering flagged                   → failed, flagged: a human must look
7. no report, killed by a signal               → failed
8. pytest exit 3/4 (internal or usage error) but no conftest import error
                                               → failed, setup: the command, not the code
9. no report, pytest exit 5                    → failed ("no tests were collected"), setup
10. no report, an inventory was pinned         → failed ("approved tests did not run")
11. no report, none configured (not pytest)    → the exit code decides
12. no report, pytest exit 2/3/4               → failed ("tests could not be collected")
13. no report otherwise                        → error (not infrastructure: the code stopped it)
14. collection errors in the report            → failed
15. not exactly the pinned inventory passed    → failed, naming the difference
16. report lists no tests                      → failed, setup
17. failures or errors in the report           → failed (and says so if the exit code was 0)
18. nonzero exit although nothing failed       → failed
19. otherwise                                  → passed
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from phasegate.testrun.evidence import Status
from phasegate.testrun.inventory import InventoryCheck, TestInventory, check_inventory
from phasegate.testrun.junit import JUnitReport
from phasegate.testrun.process import ProcessOutcome
from phasegate.testrun.stream import StreamEvidence, disagreement

_NOT_FOUND = {
    127: "test command not found (exit 127)",
    126: "test command not executable (exit 126)",
}
# A command the sandbox's init saw killed by a signal exits 128 + the signal's number.
_LIMIT_SIGNALS = {24: "CPU time limit", 25: "file size limit"}  # SIGXCPU, SIGXFSZ
# pytest's own statuses that say the command is wrong, not the code: a human fixes the setup.
_PYTEST_SETUP_EXITS = {
    3: "pytest stopped with an internal error (exit 3)",
    4: "pytest refused its command line (usage error, exit 4)",
}
# ...except a conftest that doesn't import, which pytest also reports with exit 4: the tests'
# (or, once they are locked, the code they import's) fault.
_CONFTEST_BROKEN = "ImportError while loading conftest"
_LISTED = 5  # ids named in a reason before "+N more"


@dataclass(frozen=True)
class Verdict:
    """A run's status, the one-line reason, and whether the failure is the code's fault."""

    status: Status
    reason: str
    infrastructure: bool = False
    flags: tuple[str, ...] = ()  # harness tampering: the run went to a human
    setup: bool = False  # the test command, not the code, is wrong: a human fixes it


def judge(
    outcome: ProcessOutcome,
    report: JUnitReport | None,
    *,
    timeout_s: float,
    report_problem: str | None = None,
    report_expected: bool = True,
    stream: StreamEvidence | None = None,
    inventory: TestInventory | None = None,
    flags: Sequence[str] = (),
    program_missing: bool = False,
) -> Verdict:
    """Apply the rules in this module's docstring; `stream` is given for pytest runs.

    `program_missing`: phasegate looked the command's program up before the run
    and didn't find it. A 127 alone proves nothing for a command that isn't
    pytest: the code under test can exit 127 itself to pass for a setup error.
    """
    code = outcome.exit_code
    if outcome.timed_out:
        return Verdict("failed", f"the test command timed out after {timeout_s:g} s")
    if killed := outcome.killed_by or _limit_signal(code, stream):
        return Verdict("failed", f"killed: {killed}")
    started = stream is not None and stream.starts > 0
    missing = program_missing if stream is None else not started
    if report is None and missing and code in _NOT_FOUND:
        return Verdict("error", _NOT_FOUND[code], infrastructure=True, setup=True)
    if stream is not None and not stream.finishes and code is not None and code > 128:
        return Verdict("failed", f"the test command was killed by signal {code - 128}")
    if stream is not None and (why := disagreement(stream, report, code)):
        return Verdict("failed", f"the run's evidence disagrees with itself: {why}")
    if report_problem is not None:
        return Verdict("error", f"the test report could not be read: {report_problem}")
    if flags:
        more = f" (+{len(flags) - 1} more)" if len(flags) > 1 else ""
        return Verdict(
            "failed", f"flagged for a human: {flags[0]}{more}", flags=tuple(dict.fromkeys(flags))
        )
    if (
        stream is not None
        and code in _PYTEST_SETUP_EXITS
        and _CONFTEST_BROKEN not in outcome.output
    ):
        return Verdict("failed", _PYTEST_SETUP_EXITS[code], setup=True)
    if report is None:
        return _without_report(code, report_expected, stream is not None, inventory)
    ran = (
        stream.outcomes.items() if stream is not None else [(t.id, t.outcome) for t in report.tests]
    )
    return _with_report(code, report, inventory, list(ran))


def _limit_signal(code: int | None, stream: StreamEvidence | None) -> str | None:
    if code is None or (stream is not None and stream.finishes):
        return None  # pytest finished: a test's own child hitting a limit is just a failure
    signal = -code if code < 0 else code - 128
    return _LIMIT_SIGNALS.get(signal)


def _without_report(
    code: int | None, expected: bool, is_pytest: bool, inventory: TestInventory | None
) -> Verdict:
    if code is not None and code < 0:
        return Verdict("failed", f"the test command was killed by signal {-code}")
    if is_pytest and code == 5:
        return Verdict("failed", "no tests were collected (pytest exit 5)", setup=True)
    if inventory:
        return Verdict(
            "failed", f"approved tests did not run: no test report was written (exit {code})"
        )
    if not expected:
        if code == 0:
            return Verdict("passed", "exit code 0 (no JUnit report configured, so no test ids)")
        return Verdict("failed", f"the test command failed (exit {code})")
    if is_pytest and code in (2, 3, 4):
        return Verdict("failed", f"tests could not be collected (pytest exit {code})")
    return Verdict("error", f"no test report was written (exit {code}); see the output")


def _with_report(
    code: int | None,
    report: JUnitReport,
    inventory: TestInventory | None,
    ran: list[tuple[str, str]],
) -> Verdict:
    broken = [t.id for t in report.tests if _is_collection_error(t.id, t.outcome, t.message)]
    if broken:
        return Verdict("failed", f"tests could not be collected: {_list(broken)}")
    # Failures are reported by the rules below; here only what ran is checked.
    if inventory and (reason := _inventory_problem(check_inventory(inventory, ran))):
        return Verdict("failed", reason)
    counts = report.counts()
    if counts["total"] == 0:
        return Verdict("failed", f"no tests were collected (exit {code})", setup=True)
    if counts["failed"] or counts["errors"]:
        tally = _tally(counts)
        if code == 0:
            return Verdict("failed", f"exit code 0 but the report shows failures ({tally})")
        return Verdict("failed", tally)
    if code != 0:
        return Verdict("failed", f"exit code {code} but the report shows no failures")
    skipped = f", {counts['skipped']} skipped" if counts["skipped"] else ""
    return Verdict("passed", f"all {counts['passed']} tests passed{skipped}")


def _inventory_problem(check: InventoryCheck) -> str:
    """Why the run was not the approved tests; failures of pinned tests are left to the counts."""
    skipped = [t.rsplit(": ", 1)[0] for t in check.not_passed if t.endswith(": skipped")]
    if check.missing or skipped:
        note = f" ({len(skipped)} skipped)" if skipped else ""
        return f"approved tests did not run{note}: {_list([*check.missing, *skipped])}"
    if check.unexpected:
        return f"tests outside the approved inventory ran: {_list(list(check.unexpected))}"
    if check.miscounted:
        return f"approved tests ran a different number of times: {_list(list(check.miscounted))}"
    return ""


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
