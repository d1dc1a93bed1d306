"""Run a project's tests on exactly one commit, in a clean export, and return the evidence.

The agent never reports results: phasegate exports the commit, runs the
configured command there with an allowlisted environment, reads the JUnit
report it asked for, and judges the exit code and the report together
(rules in `verdict`). Blocking: call it from a worker thread in async code.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath

from phasegate.testrun.checkout import export_commit
from phasegate.testrun.errors import CheckoutError, ConfigError, ReportError, SpawnError
from phasegate.testrun.evidence import TestRunEvidence, empty_counts
from phasegate.testrun.junit import MAX_REPORT_BYTES, JUnitReport, parse_junit
from phasegate.testrun.process import ProcessOutcome, env_for_tests, run_command
from phasegate.testrun.verdict import Verdict, judge

OUTPUT_TAIL_CHARS = 32 * 1024  # enough for pytest's summary; the full output is not stored
MAX_FAILURES = 100  # failures kept in the evidence; the counts still cover all of them
_PYTEST = re.compile(r"\b(py\.test|pytest)\b")


def run_tests(
    repo: Path,
    commit: str,
    command: str,
    *,
    timeout_s: float = 600,
    grace_s: float = 5,
    junit_path: str | None = None,
    approved_test_ids: frozenset[str] | None = None,
    env_allow: Sequence[str] = (),
    on_output: Callable[[int], None] | None = None,
    scratch_dir: Path | None = None,
    keep_report: Path | None = None,
) -> TestRunEvidence:
    """Export `commit` from `repo`, run `command` there and judge the result.

    With `keep_report`, the JUnit report is copied there as evidence for later.
    """
    report_rel = _checked_junit_path(junit_path)
    is_pytest = report_rel is None and _PYTEST.search(command) is not None
    with tempfile.TemporaryDirectory(
        prefix="phasegate-run-", dir=scratch_dir, ignore_cleanup_errors=True
    ) as tmp:
        checkout = Path(tmp) / "checkout"
        try:
            sha = export_commit(repo, commit, checkout)
        except CheckoutError as exc:
            return _infrastructure_failure(command, commit, f"checkout failed: {exc}")
        report_file = checkout / report_rel if report_rel else Path(tmp) / "junit.xml"
        if is_pytest:
            # Appended, so it wins over any --junitxml in the project's addopts.
            command += f" --junitxml={shlex.quote(str(report_file))} -o junit_family=xunit2"
        try:
            outcome = run_command(
                command,
                checkout,
                timeout_s=timeout_s,
                grace_s=grace_s,
                env=_environment(env_allow, checkout),
                on_output=on_output,
            )
        except SpawnError as exc:
            return _infrastructure_failure(command, sha, str(exc))
        expected = is_pytest or report_rel is not None
        report, problem = _read_report(report_file, checkout) if expected else (None, None)
        if keep_report is not None and report is not None:
            keep_report.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(report_file, keep_report, follow_symlinks=False)
    verdict = judge(
        outcome,
        report,
        timeout_s=timeout_s,
        report_problem=problem,
        report_expected=expected,
        is_pytest=is_pytest,
        approved=approved_test_ids,
    )
    return _evidence(verdict, outcome, report, command, sha)


def _checked_junit_path(junit_path: str | None) -> PurePosixPath | None:
    if junit_path is None:
        return None
    path = PurePosixPath(junit_path)
    if path.is_absolute() or ".." in path.parts or not path.name:
        raise ConfigError(
            f"junit_path {junit_path!r} must be a relative path inside the checkout "
            "(e.g. 'build/junit.xml'); fix the project's test configuration"
        )
    return path


def _environment(allow: Sequence[str], checkout: Path) -> dict[str, str]:
    env = env_for_tests(os.environ, allow)
    src = checkout / "src"
    if src.is_dir():
        # An editable install would import the package from the developer's
        # working tree; putting the export's src/ first tests the commit itself.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(src), env.get("PYTHONPATH")]))
    return env


def _read_report(path: Path, checkout: Path) -> tuple[JUnitReport | None, str | None]:
    """Return the parsed report, or None if it was not written, or a reason it is unusable."""
    try:
        # O_NOFOLLOW and the size cap: the code under test could plant a
        # symlink to a secret or to /dev/zero where the report should be.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, f"cannot open {path.name}: {exc.strerror}"
    with os.fdopen(fd, "rb") as f:
        data = f.read(MAX_REPORT_BYTES + 1)
    try:
        return parse_junit(data, root=checkout), None
    except ReportError as exc:
        return None, str(exc)


def _evidence(
    verdict: Verdict, outcome: ProcessOutcome, report: JUnitReport | None, command: str, sha: str
) -> TestRunEvidence:
    tests = report.tests if report is not None else ()
    return TestRunEvidence(
        status=verdict.status,
        reason=verdict.reason,
        infrastructure=verdict.infrastructure,
        exit_code=outcome.exit_code,
        duration_s=round(outcome.duration_s, 3),
        command=command,
        commit=sha,
        counts=report.counts() if report is not None else empty_counts(),
        failures=tuple(t for t in tests if t.outcome in ("failed", "error"))[:MAX_FAILURES],
        collected=tuple(t.id for t in tests),
        output_tail=outcome.output[-OUTPUT_TAIL_CHARS:],
    )


def _infrastructure_failure(command: str, commit: str, reason: str) -> TestRunEvidence:
    return TestRunEvidence(
        status="error",
        reason=reason,
        infrastructure=True,
        exit_code=None,
        duration_s=0.0,
        command=command,
        commit=commit,
    )
