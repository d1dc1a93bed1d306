"""run_tests on real git projects with real pytest: verdicts, evidence and tamper checks."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from phasegate.testrun import ConfigError, TestRunEvidence, collected_inventory, run_tests

Repo = tuple[Path, str]
Commit = Callable[..., str]

ADD = "tests/test_calc.py::test_add"
SUB = "tests/test_calc.py::test_sub"
BOTH = frozenset({ADD, SUB})
BUGGY_SUB = "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a + b\n"


def test_passing_project_passes_with_ids_and_counts(calc_repo: Repo, cmd_pytest: str) -> None:
    """A passing suite gives status passed, the exact commit, the collected ids and counts."""
    repo, sha = calc_repo
    evidence = run_tests(repo, sha, cmd_pytest, inventory=collected_inventory(BOTH))
    assert evidence.status == "passed", evidence.output_tail
    assert evidence.reason == "all 2 tests passed"
    assert evidence.commit == sha and evidence.exit_code == 0
    assert set(evidence.collected) == BOTH
    assert evidence.counts == {"total": 2, "passed": 2, "failed": 0, "errors": 0, "skipped": 0}
    assert "--junitxml=" in evidence.command
    assert not evidence.counts_as_attempt


def test_failing_test_is_reported_with_message_and_traceback(
    calc_repo: Repo, commit: Commit, cmd_pytest: str
) -> None:
    """A failing test yields status failed with its id, assertion message and a short traceback."""
    repo, _ = calc_repo
    sha = commit(repo, {"src/calc.py": BUGGY_SUB})
    evidence = run_tests(repo, sha, cmd_pytest)
    assert evidence.status == "failed"
    assert evidence.reason == "1 of 2 tests failed"
    assert [f.id for f in evidence.failures] == [SUB]
    failure = evidence.failures[0]
    assert "assert 8 == 2" in failure.message
    assert "tests/test_calc.py:" in failure.traceback and len(failure.traceback) <= 2048
    assert evidence.counts_as_attempt


def test_runs_exactly_the_commit_not_the_working_tree(
    calc_repo: Repo, commit: Commit, cmd_pytest: str
) -> None:
    """Uncommitted edits and later commits do not affect a run of an earlier commit."""
    repo, good = calc_repo
    bad = commit(repo, {"src/calc.py": BUGGY_SUB})
    (repo / "src/calc.py").write_text("raise SystemExit('uncommitted junk')\n")
    assert run_tests(repo, good, cmd_pytest).status == "passed"
    assert run_tests(repo, bad, cmd_pytest).status == "failed"


def test_repository_is_left_untouched(calc_repo: Repo, cmd_pytest: str) -> None:
    """A run leaves no worktree, branch or file behind in the repository."""
    repo, sha = calc_repo
    before = sorted(p.name for p in (repo / ".git").iterdir())
    run_tests(repo, sha, cmd_pytest)
    assert sorted(p.name for p in (repo / ".git").iterdir()) == before
    assert not (repo / "report.xml").exists() and not (repo / ".pytest_cache").exists()


def test_import_error_in_a_test_module_is_a_collection_failure(
    calc_repo: Repo, commit: Commit, cmd_pytest: str
) -> None:
    """A test module that cannot import fails the run as 'tests could not be collected'."""
    repo, _ = calc_repo
    sha = commit(repo, {"tests/test_broken.py": "import no_such_module\n"})
    evidence = run_tests(repo, sha, cmd_pytest)
    assert evidence.status == "failed" and not evidence.infrastructure
    assert evidence.reason == "tests could not be collected: tests/test_broken.py"
    assert "ModuleNotFoundError" in evidence.output_tail


def test_broken_conftest_without_report_is_a_collection_failure(
    calc_repo: Repo, commit: Commit, cmd_pytest: str
) -> None:
    """A conftest that fails to import (no report at all) is the code's fault, not ours."""
    repo, _ = calc_repo
    sha = commit(repo, {"tests/conftest.py": "import no_such_module\n"})
    evidence = run_tests(repo, sha, cmd_pytest)
    assert evidence.status == "failed" and not evidence.infrastructure
    assert evidence.reason.startswith("tests could not be collected (pytest exit")
    assert "no_such_module" in evidence.output_tail


def test_exit_code_forced_to_zero_with_failures_is_caught(
    calc_repo: Repo, commit: Commit, cmd_pytest: str
) -> None:
    """A conftest that forces exit status 0 while tests fail is reported as failed."""
    repo, _ = calc_repo
    conftest = "def pytest_sessionfinish(session, exitstatus):\n    session.exitstatus = 0\n"
    sha = commit(repo, {"src/calc.py": BUGGY_SUB, "tests/conftest.py": conftest})
    evidence = run_tests(repo, sha, cmd_pytest)
    assert evidence.exit_code == 0
    assert evidence.status == "failed"
    assert evidence.reason.startswith("exit code 0 but the report shows failures")


def test_nonzero_exit_with_all_tests_passing_fails(calc_repo: Repo, cmd_pytest: str) -> None:
    """A report where everything passed does not override a nonzero exit code."""
    repo, sha = calc_repo
    command = f"{cmd_pytest} --junitxml=out/r.xml; exit 3"
    evidence = run_tests(repo, sha, command, junit_path="out/r.xml")
    assert evidence.status == "failed"
    assert evidence.reason == "exit code 3 but the report shows no failures"


def test_deleted_approved_test_fails_the_run(
    calc_repo: Repo, commit: Commit, cmd_pytest: str
) -> None:
    """An approved test that was deleted makes the run fail even though the rest pass."""
    repo, _ = calc_repo
    only_add = "from calc import add\n\n\ndef test_add():\n    assert add(1, 2) == 3\n"
    sha = commit(repo, {"tests/test_calc.py": only_add})
    evidence = run_tests(repo, sha, cmd_pytest, inventory=collected_inventory(BOTH))
    assert evidence.status == "failed"
    assert evidence.reason == f"approved tests did not run: {SUB}"


def test_skip_marker_on_an_approved_test_fails_the_run(
    calc_repo: Repo, commit: Commit, cmd_pytest: str
) -> None:
    """Skipping an approved test counts as not running it."""
    repo, _ = calc_repo
    skipped = (
        (repo / "tests/test_calc.py")
        .read_text()
        .replace("def test_sub", "import pytest\n\n\n@pytest.mark.skip\ndef test_sub")
    )
    sha = commit(repo, {"tests/test_calc.py": skipped})
    evidence = run_tests(repo, sha, cmd_pytest, inventory=collected_inventory(BOTH))
    assert evidence.status == "failed"
    assert evidence.reason == f"approved tests did not run (1 skipped): {SUB}"


def test_sys_exit_zero_in_conftest_fails_the_run(
    calc_repo: Repo, commit: Commit, cmd_pytest: str
) -> None:
    """`sys.exit(0)` in a conftest exits 0 with no report, and approved tests did not run."""
    repo, _ = calc_repo
    sha = commit(repo, {"tests/conftest.py": "import sys\n\nsys.exit(0)\n"})
    evidence = run_tests(repo, sha, cmd_pytest, inventory=collected_inventory(BOTH))
    assert evidence.exit_code == 0
    assert evidence.status == "failed" and not evidence.infrastructure
    assert evidence.reason.startswith("approved tests did not run")


def test_deselecting_approved_tests_in_config_fails_the_run(
    calc_repo: Repo, commit: Commit, cmd_pytest: str
) -> None:
    """A `-k` added to the pytest config that deselects an approved test is caught."""
    repo, _ = calc_repo
    config = '[tool.pytest.ini_options]\ntestpaths = ["tests"]\naddopts = "-k test_add"\n'
    sha = commit(repo, {"pyproject.toml": config})
    evidence = run_tests(repo, sha, cmd_pytest, inventory=collected_inventory(BOTH))
    assert evidence.status == "failed"
    assert evidence.reason == f"approved tests did not run: {SUB}"


def test_no_tests_at_all_fails(calc_repo: Repo, commit: Commit, cmd_pytest: str) -> None:
    """A suite with no tests (pytest exit 5) fails rather than passing vacuously."""
    repo, _ = calc_repo
    sha = commit(repo, {"tests/test_calc.py": None})
    evidence = run_tests(repo, sha, cmd_pytest)
    assert evidence.status == "failed"
    assert evidence.reason == "no tests were collected (exit 5)"


def test_missing_command_is_an_infrastructure_error(calc_repo: Repo) -> None:
    """A test command that does not exist is an infrastructure error, not a fix attempt."""
    repo, sha = calc_repo
    evidence = run_tests(repo, sha, "no-such-test-runner-xyz --all")
    assert evidence.status == "error" and evidence.infrastructure
    assert evidence.reason == "test command not found (exit 127)"
    assert not evidence.counts_as_attempt


def test_code_that_exits_127_itself_is_a_failure_not_a_setup_error(
    calc_repo: Repo, commit: Commit
) -> None:
    """Under a command that isn't pytest, the code can't pass its own exit 127 off as setup."""
    repo, _ = calc_repo
    spoof = "import os, sys\nprint('sh: python: not found', file=sys.stderr)\nos._exit(127)\n"
    sha = commit(repo, {"src/calc.py": spoof})
    evidence = run_tests(
        repo, sha, "python -c 'import sys; sys.path.insert(0, \"src\"); import calc'"
    )
    assert evidence.exit_code == 127, evidence.output_tail
    assert (evidence.status, evidence.setup_error, evidence.infrastructure) == (
        "failed",
        False,
        False,
    )
    assert evidence.counts_as_attempt


def test_a_program_path_that_is_missing_is_a_setup_error(calc_repo: Repo) -> None:
    """A relative program path the checkout doesn't have is looked up before the run."""
    repo, sha = calc_repo
    evidence = run_tests(repo, sha, "PYTHONHASHSEED=0 ./scripts/run-tests --fast")
    assert (evidence.exit_code, evidence.setup_error) == (127, True)
    assert not evidence.counts_as_attempt


def test_unknown_commit_is_an_infrastructure_error(calc_repo: Repo, cmd_pytest: str) -> None:
    """A commit that does not exist gives an infrastructure error naming the commit."""
    repo, _ = calc_repo
    evidence = run_tests(repo, "0" * 40, cmd_pytest)
    assert evidence.status == "error" and evidence.infrastructure
    assert evidence.reason.startswith("checkout failed: commit '0000")


def test_hanging_test_times_out_as_a_failure(
    calc_repo: Repo, commit: Commit, cmd_pytest: str
) -> None:
    """A test that hangs is killed at the timeout and the run fails with that reason."""
    repo, _ = calc_repo
    hang = "import time\n\n\ndef test_hang():\n    time.sleep(600)\n"
    sha = commit(repo, {"tests/test_hang.py": hang})
    started = time.monotonic()
    evidence = run_tests(repo, sha, cmd_pytest, timeout_s=1.5, grace_s=1)
    assert time.monotonic() - started < 1.5 + 1 + 2
    assert evidence.status == "failed" and not evidence.infrastructure
    assert evidence.reason == "the test command timed out after 1.5 s"
    assert evidence.exit_code is None


def test_non_pytest_command_without_report_uses_the_exit_code(calc_repo: Repo) -> None:
    """Without a JUnit report the exit code decides, and the reason says ids were not checked."""
    repo, sha = calc_repo
    passed = run_tests(repo, sha, "test -f src/calc.py")
    failed = run_tests(repo, sha, "test -f src/nope.py")
    assert passed.status == "passed" and "no JUnit report" in passed.reason
    assert failed.status == "failed" and failed.reason == "the test command failed (exit 1)"


def test_planted_symlink_report_is_refused(calc_repo: Repo, commit: Commit) -> None:
    """A report path that is a symlink (e.g. to a secret file) is not read."""
    repo, _ = calc_repo
    (repo / "out").mkdir()
    (repo / "out/r.xml").symlink_to("/etc/passwd")
    sha = commit(repo, {})
    evidence = run_tests(repo, sha, "true", junit_path="out/r.xml")
    assert evidence.status == "error"
    assert evidence.reason.startswith("the test report could not be read")


def test_junit_path_outside_the_checkout_is_refused(calc_repo: Repo) -> None:
    """A junit_path that escapes the checkout is a configuration error."""
    repo, sha = calc_repo
    with pytest.raises(ConfigError, match="relative path inside the checkout"):
        run_tests(repo, sha, "true", junit_path="../r.xml")


def test_canary_secret_is_not_in_the_test_environment(
    calc_repo: Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A PHASEGATE_ token in phasegate's environment never reaches the test command."""
    monkeypatch.setenv("PHASEGATE_TOKEN", "secret-canary-token")
    repo, sha = calc_repo
    evidence = run_tests(repo, sha, "env")
    assert "PATH=" in evidence.output_tail
    assert "secret-canary" not in evidence.output_tail


def test_evidence_survives_a_json_round_trip(
    calc_repo: Repo, commit: Commit, cmd_pytest: str
) -> None:
    """Evidence with failures serialises to JSON and back unchanged."""
    repo, _ = calc_repo
    sha = commit(repo, {"src/calc.py": BUGGY_SUB})
    evidence = run_tests(repo, sha, cmd_pytest)
    assert TestRunEvidence.from_json(evidence.to_json()) == evidence
