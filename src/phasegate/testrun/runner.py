"""Run a project's tests on exactly one commit, in a sandboxed export, and return the evidence.

The agent never reports results: phasegate exports the commit, scans what
the session changed for code that reaches into the test harness, runs the
configured command inside the sandbox (pytest through phasegate's own
bootstrap, which streams every result to a pipe phasegate holds), reads the
JUnit report, and judges the three accounts together with the pinned test
inventory (rules in `verdict`). Blocking: call it from a worker thread in
async code.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

from phasegate.testrun.checkout import changed_paths, export_commit
from phasegate.testrun.errors import CheckoutError, ConfigError, ReportError, SpawnError
from phasegate.testrun.evidence import TestRunEvidence, empty_counts
from phasegate.testrun.inventory import TestInventory
from phasegate.testrun.junit import MAX_REPORT_BYTES, JUnitReport, parse_junit
from phasegate.testrun.launch import RunPlan, run_pytest, run_shell
from phasegate.testrun.process import ProcessOutcome, env_for_tests
from phasegate.testrun.pytest_command import parse_pytest_command
from phasegate.testrun.sandbox import Sandbox
from phasegate.testrun.stream import StreamEvidence
from phasegate.testrun.tamper import scan_for_harness_tampering
from phasegate.testrun.verdict import Verdict, judge

OUTPUT_TAIL_CHARS = 32 * 1024  # enough for pytest's summary; the full output is not stored
MAX_FAILURES = 100  # failures kept in the evidence; the counts still cover all of them
_MAX_SCANNED_BYTES = 1 << 20  # a bigger "source file" is not read for the tamper scan
_TOKEN = re.compile(r"\bpg[ha]_[A-Za-z0-9_-]{20,}")


@dataclass(frozen=True)
class TamperScan:
    """What the harness-tamper scan looks at: files changed since `base` that aren't tests."""

    base: str
    is_test: Callable[[str], bool]
    allow: Sequence[str] = ()


def run_tests(
    repo: Path,
    commit: str,
    command: str,
    *,
    timeout_s: float = 600,
    grace_s: float = 5,
    junit_path: str | None = None,
    inventory: TestInventory | None = None,
    sandbox: Sandbox | None = None,
    scan: TamperScan | None = None,
    pytest_plugins: Sequence[str] = (),
    env_allow: Sequence[str] = (),
    on_output: Callable[[int], None] | None = None,
    scratch_dir: Path | None = None,
    keep_report: Path | None = None,
) -> TestRunEvidence:
    """Export `commit` from `repo`, run `command` there in the sandbox and judge the result.

    The sandbox always hides `repo` itself. With `keep_report`, the JUnit report
    is copied there as evidence for later.
    """
    sandbox = replace(sandbox or Sandbox(), hide=(*(sandbox.hide if sandbox else ()), repo))
    report_rel = _checked_junit_path(junit_path)
    env = env_for_tests(os.environ, env_allow)
    pytest = None if report_rel else parse_pytest_command(command, env.get("PATH", os.defpath))
    with tempfile.TemporaryDirectory(
        prefix="phasegate-run-", dir=scratch_dir, ignore_cleanup_errors=True
    ) as tmp:
        scratch, checkout = Path(tmp), Path(tmp) / "checkout"
        (scratch / "out").mkdir()
        try:
            sha = export_commit(repo, commit, checkout)
            flags = _scan(repo, sha, checkout, scan) if scan else []
        except CheckoutError as exc:
            return _infrastructure_failure(command, commit, sandbox, f"checkout failed: {exc}")
        report_file = checkout / report_rel if report_rel else scratch / "out" / "junit.xml"
        plan = RunPlan(sandbox, checkout, scratch, env, timeout_s, grace_s, on_output)
        stream: StreamEvidence | None = None
        missing = False
        try:
            if pytest is not None:
                args = [*pytest.args, *_pytest_args(checkout, report_file, pytest_plugins)]
                outcome, stream = run_pytest(plan, pytest, args, pytest_plugins)
                command = shlex.join(["pytest", *args])
                flags += _runtime_flags(stream, scan)
            else:
                missing = program_missing(command, env.get("PATH", os.defpath), checkout)
                outcome = run_shell(plan, command)
        except SpawnError as exc:
            return _infrastructure_failure(command, sha, sandbox, str(exc))
        expected = pytest is not None or report_rel is not None
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
        stream=stream,
        inventory=inventory,
        flags=flags,
        program_missing=missing,
    )
    return replace(
        _evidence(verdict, outcome, report, stream, command, sha, sandbox), names_tests=expected
    )


# Shell syntax and builtins: a command starting with one of these could run anything.
_SHELL_WORDS = frozenset(
    "if then else elif fi case esac for while until do done in function select time "  # noqa: SIM905
    "{ } ( ) ! [ [[ . : cd eval exec export set test true false command env".split()
)


def program_missing(command: str, path: str, checkout: Path) -> bool:
    """Whether the program a shell command starts is certainly not there.

    Only a plain `[VAR=value …] program args` is judged: shell syntax or a
    builtin could run anything, so those never count as missing.
    """
    try:
        words = shlex.split(command)
    except ValueError:
        return False
    words = [w for w in words if not _is_assignment(w)]
    if not words or words[0] in _SHELL_WORDS or any(c in command for c in ";&|`$<>\n"):
        return False
    program = words[0]
    if "/" in program:
        found = (checkout / program) if not os.path.isabs(program) else Path(program)
        return not (found.is_file() and os.access(found, os.X_OK))
    return shutil.which(program, path=path) is None


def _is_assignment(word: str) -> bool:
    name, sep, _ = word.partition("=")
    return bool(sep) and name.isidentifier()


def _pytest_args(checkout: Path, report: Path, plugins: Sequence[str]) -> list[str]:
    """Appended after the project's arguments, so they win: rootdir, config, plugins, report."""
    flags = [f"--rootdir={checkout}", f"--confcutdir={checkout}"]
    if config := _pytest_config(checkout):
        flags.append(f"--config-file={config}")
    for plugin in plugins:
        flags += ["-p", plugin]
    return [*flags, f"--junitxml={report}", "-o", "junit_family=xunit2"]


def _pytest_config(checkout: Path) -> Path | None:
    """The configuration file pytest would pick at the root (never one in a subdirectory)."""
    for name, marker in (
        ("pytest.ini", ""),
        (".pytest.ini", ""),
        ("pytest.toml", ""),
        (".pytest.toml", ""),
        ("pyproject.toml", "[tool.pytest"),
        ("tox.ini", "[pytest]"),
        ("setup.cfg", "[tool:pytest]"),
    ):
        path = checkout / name
        if not path.is_file() or path.is_symlink():
            continue
        if not marker or marker in path.read_text(encoding="utf-8", errors="replace"):
            return path
    return None


def _runtime_flags(stream: StreamEvidence, scan: TamperScan | None) -> list[str]:
    """What the harness saw change while the tests ran, and plugins nobody approved."""
    flags = [f"the test harness changed during the run: {what}" for what in stream.tampering]
    for path in stream.plugin_paths:
        approved = PurePosixPath(path).name == "conftest.py" or (scan and scan.is_test(path))
        if not approved:
            flags.append(f"{path}: loaded as a pytest plugin but it is not an approved test file")
    return flags


def _scan(repo: Path, sha: str, checkout: Path, scan: TamperScan) -> list[str]:
    sources = {}
    for path in changed_paths(repo, scan.base, sha):
        file = checkout / path
        if not path.endswith(".py") or scan.is_test(path) or file.is_symlink():
            continue
        if file.is_file() and file.stat().st_size <= _MAX_SCANNED_BYTES:
            sources[path] = file.read_text(encoding="utf-8", errors="replace")
    return [str(flag) for flag in scan_for_harness_tampering(sources, allow=scan.allow)]


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


def scrub_tokens(text: str) -> str:
    """Replace anything shaped like a phasegate token: run output goes back to the agent."""
    return _TOKEN.sub("[token removed]", text)


def _evidence(
    verdict: Verdict,
    outcome: ProcessOutcome,
    report: JUnitReport | None,
    stream: StreamEvidence | None,
    command: str,
    sha: str,
    sandbox: Sandbox,
) -> TestRunEvidence:
    tests = report.tests if report is not None else ()
    failures = tuple(t for t in tests if t.outcome in ("failed", "error"))[:MAX_FAILURES]
    collected = tuple(stream.outcomes) if stream and stream.outcomes else tuple(t.id for t in tests)
    return TestRunEvidence(
        status=verdict.status,
        reason=scrub_tokens(verdict.reason),
        infrastructure=verdict.infrastructure,
        exit_code=outcome.exit_code,
        duration_s=round(outcome.duration_s, 3),
        command=command,
        commit=sha,
        counts=report.counts() if report is not None else empty_counts(),
        failures=tuple(
            replace(f, message=scrub_tokens(f.message), traceback=scrub_tokens(f.traceback))
            for f in failures
        ),
        collected=collected,
        output_tail=scrub_tokens(outcome.output[-OUTPUT_TAIL_CHARS:]),
        sandbox=sandbox.label,
        flags=verdict.flags,
        killed_by=outcome.killed_by,
        setup_error=verdict.setup,
    )


def _infrastructure_failure(
    command: str, commit: str, sandbox: Sandbox, reason: str
) -> TestRunEvidence:
    return TestRunEvidence(
        status="error",
        reason=reason,
        infrastructure=True,
        setup_error=True,
        exit_code=None,
        duration_s=0.0,
        command=command,
        commit=commit,
        sandbox=sandbox.label,
    )
