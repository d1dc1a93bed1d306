"""The test lock: what counts as a test, and refusing any touch of approved tests."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest

from phasegate.workspace import (
    DEFAULT_TEST_PATTERNS,
    FileChange,
    LockedTestViolation,
    SubmissionRejected,
    TestPatterns,
    apply_submission,
    check_lock,
    check_tests_only,
    head_commit,
    is_protected_path,
    is_runner_config,
    is_test_path,
    snapshot_protected,
    verify_snapshot,
)

RunGit = Callable[..., str]
Snapshot = Callable[[Path], dict[str, str]]

TEST_PATHS = [
    "tests/test_app.py", "tests/helpers/data.json", "pkg/tests/util.py", "test_x.py",
    "src/x_test.py", "conftest.py", "src/deep/conftest.py", "web/app.test.ts",
    "web/App.test.tsx", "web/app.spec.js", "web/__tests__/x.js", "cmd/main_test.go",
    "pkg/testdata/in.txt", "test/my_app_test.exs", "lib/thing_test.exs", "Tests/Test_X.py",
]  # fmt: skip
NOT_TEST_PATHS = [
    "src/app.py", "testing.py", "src/contest.py", "web/app.ts", "cmd/main.go",
    "lib/my_app.ex", "README.md", "latest/x.py", "src/attest.py", "docs/tests.md",
]  # fmt: skip
RUNNER_CONFIG = [
    "pyproject.toml", "pytest.ini", "setup.cfg", "tox.ini", "package.json", "jest.config.js",
    "vitest.config.ts", ".mocharc.yml", "mix.exs", "go.mod", "web/package.json",
]  # fmt: skip


@pytest.mark.parametrize("path", TEST_PATHS)
def test_test_files_are_recognised(path: str) -> None:
    """Test files of Python, JS/TS, Go and Elixir projects count as tests."""
    assert is_test_path(path, DEFAULT_TEST_PATTERNS)


@pytest.mark.parametrize("path", NOT_TEST_PATHS)
def test_implementation_files_are_not_tests(path: str) -> None:
    """Implementation and docs files are neither tests nor protected."""
    assert not is_test_path(path) and not is_protected_path(path)


@pytest.mark.parametrize("path", RUNNER_CONFIG)
def test_runner_configuration_is_protected(path: str) -> None:
    """Files that configure the test runner are protected like tests."""
    assert is_runner_config(path) and is_protected_path(path)


def test_custom_patterns_replace_the_defaults() -> None:
    """A project's own TestPatterns decide what is a test."""
    patterns = TestPatterns(test_globs=("checks/**", "*.check"), runner_config=("runner.cfg",))
    assert is_test_path("checks/a.py", patterns) and is_test_path("x/y.check", patterns)
    assert not is_test_path("tests/test_app.py", patterns)
    assert is_protected_path("runner.cfg", patterns)


def test_tests_only_submission_accepts_tests_and_refuses_code(worktree: Path) -> None:
    """submit_tests accepts tests and runner config but refuses an implementation file by name."""
    check_tests_only(["tests/test_new.py", "conftest.py", "pyproject.toml"])
    with pytest.raises(SubmissionRejected, match=r"'src/app\.py': is not a test file"):
        check_tests_only(["tests/test_new.py", "src/app.py"])


def test_tests_only_check_refuses_before_writing(
    tmp_path: Path, worktree: Path, snapshot: Snapshot
) -> None:
    """Used as apply_submission's check, a non-test file refuses the tests submission unwritten."""
    before = snapshot(tmp_path)
    changes = [FileChange("tests/test_sub.py", "def test_x(): pass\n"), FileChange("src/x.py", "")]
    with pytest.raises(SubmissionRejected, match=r"src/x\.py"):
        apply_submission(worktree, changes, "tests", {}, check=check_tests_only)
    assert snapshot(tmp_path) == before


def test_snapshot_hashes_exactly_the_protected_files(repo: Path, worktree: Path) -> None:
    """snapshot_protected maps tests and runner config (not code) to the sha256 of their bytes."""
    approved = snapshot_protected(worktree, head_commit(repo), DEFAULT_TEST_PATTERNS)
    assert sorted(approved) == ["pyproject.toml", "tests/test_app.py"]
    expected = hashlib.sha256((worktree / "tests" / "test_app.py").read_bytes()).hexdigest()
    assert approved["tests/test_app.py"] == expected


SKIP_MARKER = "import pytest\n\n\n@pytest.mark.skip\ndef test_add():\n    assert False\n"
LOCK_VIOLATIONS = [
    pytest.param([FileChange("tests/test_app.py", "def test_add():\n    pass\n")], id="edit"),
    pytest.param([FileChange("tests/test_app.py", None)], id="delete"),
    pytest.param([FileChange("conftest.py", "collect_ignore = ['tests']\n")], id="add-conftest"),
    pytest.param([FileChange("tests/conftest.py", "import sys\nsys.exit(0)\n")], id="add-nested"),
    pytest.param([FileChange("tests/test_more.py", "def test_x(): pass\n")], id="add-test"),
    pytest.param([FileChange("pyproject.toml", "[tool.pytest.ini_options]\n")], id="pyproject"),
    pytest.param([FileChange("pytest.ini", "[pytest]\naddopts = -p no:x\n")], id="pytest-ini"),
    pytest.param([FileChange("tests/test_app.py", SKIP_MARKER)], id="skip-marker"),
    pytest.param(
        [FileChange("src/app.py", "ok\n"), FileChange("TESTS/test_app.py", "")], id="case"
    ),
]


@pytest.mark.parametrize("changes", LOCK_VIOLATIONS)
def test_touching_approved_tests_is_refused_by_name(
    repo: Path, worktree: Path, run_git: RunGit, snapshot: Snapshot, changes: list[FileChange]
) -> None:
    """After approval, an implementation that touches a protected file is refused, naming it."""
    approved = snapshot_protected(worktree, head_commit(repo))
    before, head = snapshot(worktree), run_git(worktree, "rev-parse", "HEAD")
    guard = partial(check_lock, approved=approved, patterns=DEFAULT_TEST_PATTERNS)
    with pytest.raises(LockedTestViolation) as refused:
        apply_submission(worktree, changes, "implementation", {}, check=guard)
    assert refused.value.path == changes[-1].path
    assert f"'{changes[-1].path}'" in str(refused.value)
    assert snapshot(worktree) == before and run_git(worktree, "rev-parse", "HEAD") == head


def test_implementation_only_passes_the_lock(repo: Path, worktree: Path) -> None:
    """An implementation that touches only code passes the lock and is committed."""
    approved = snapshot_protected(worktree, head_commit(repo))
    guard = partial(check_lock, approved=approved)
    result = apply_submission(worktree, [FileChange("src/app.py", "x\n")], "impl", {}, check=guard)
    assert result.paths == ("src/app.py",)


def test_lock_applies_to_worktree_changes_too(repo: Path, worktree: Path) -> None:
    """In 'whatever changed' mode an edited approved test is refused the same way."""
    approved = snapshot_protected(worktree, head_commit(repo))
    (worktree / "src" / "app.py").write_text("impl\n")
    (worktree / "tests" / "test_app.py").write_text("def test_add(): pass\n")
    with pytest.raises(LockedTestViolation, match=r"tests/test_app\.py"):
        apply_submission(worktree, None, "impl", {}, check=partial(check_lock, approved=approved))
    assert (worktree / "tests" / "test_app.py").read_text() == "def test_add(): pass\n"


def test_verify_snapshot_is_empty_when_tests_are_intact(repo: Path, worktree: Path) -> None:
    """verify_snapshot reports nothing when approved files are byte-identical at the commit."""
    approved = snapshot_protected(worktree, head_commit(repo))
    result = apply_submission(worktree, [FileChange("src/app.py", "x\n")], "impl", {})
    assert verify_snapshot(worktree, result.sha, approved, DEFAULT_TEST_PATTERNS) == []


def test_verify_snapshot_reports_tampering_behind_the_lock(
    repo: Path, worktree: Path, run_git: RunGit
) -> None:
    """Edits, deletions, symlink swaps and added conftests made with raw git are all reported."""
    approved = snapshot_protected(worktree, head_commit(repo))
    (worktree / "pyproject.toml").write_text("[tool.pytest.ini_options]\naddopts = '-k none'\n")
    (worktree / "tests" / "test_app.py").unlink()
    (worktree / "tests" / "test_app.py").symlink_to("../src/app.py")
    (worktree / "conftest.py").write_text("import sys\nsys.exit(0)\n")
    run_git(worktree, "add", "--all")
    run_git(worktree, "commit", "--quiet", "-m", "tamper")
    tampered = verify_snapshot(worktree, "HEAD", approved, DEFAULT_TEST_PATTERNS)
    assert tampered == ["conftest.py", "pyproject.toml", "tests/test_app.py"]
    assert verify_snapshot(worktree, "HEAD", approved) == ["pyproject.toml", "tests/test_app.py"]


def test_verify_snapshot_reports_a_deleted_test(
    repo: Path, worktree: Path, run_git: RunGit
) -> None:
    """A deleted approved test is reported as differing."""
    approved = snapshot_protected(worktree, head_commit(repo))
    run_git(worktree, "rm", "--quiet", "tests/test_app.py")
    run_git(worktree, "commit", "--quiet", "-m", "delete")
    assert verify_snapshot(worktree, "HEAD", approved) == ["tests/test_app.py"]
