"""Fixtures for the testrun tests: throwaway git projects and process liveness checks."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

# Plugin autoloading (hypothesis, schemathesis, ...) costs seconds per run and is not under test.
PYTEST = f"PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 {sys.executable} -m pytest -q -p no:cacheprovider"

CALC = "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n"
CALC_TESTS = (
    "from calc import add, sub\n\n\n"
    "def test_add():\n    assert add(1, 2) == 3\n\n\n"
    "def test_sub():\n    assert sub(5, 3) == 2\n"
)
PYPROJECT = '[tool.pytest.ini_options]\ntestpaths = ["tests"]\n'


def git(repo: Path, *args: str) -> str:
    """Run git in `repo` and return its stdout."""
    done = subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip()


def commit_files(repo: Path, files: dict[str, str | None], message: str = "change") -> str:
    """Write (or, for None, delete) files in `repo`, commit them, and return the commit id."""
    for name, content in files.items():
        path = repo / name
        if content is None:
            path.unlink()
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--allow-empty", "-m", message)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def commit() -> Callable[..., str]:
    """The `commit_files` helper, for tests that change a fixture repo."""
    return commit_files


@pytest.fixture
def cmd_pytest() -> str:
    """A pytest command line using this interpreter, which has pytest installed."""
    return PYTEST


@pytest.fixture
def calc_repo(tmp_path: Path) -> tuple[Path, str]:
    """A git repo with a src-layout `calc` module and two passing tests."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    sha = commit_files(
        repo,
        {"pyproject.toml": PYPROJECT, "src/calc.py": CALC, "tests/test_calc.py": CALC_TESTS},
        "initial",
    )
    return repo, sha


@pytest.fixture
def pid_file(tmp_path: Path) -> Path:
    """Where a hostile test command records the pids it started."""
    return tmp_path / "pids"
