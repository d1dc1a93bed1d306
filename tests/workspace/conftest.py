"""Fixtures: a real git repository with one commit, a session worktree, tree snapshots."""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from phasegate.workspace import Git, create_worktree, head_commit

INITIAL_FILES = {
    "README.md": "# demo\n",
    "pyproject.toml": '[project]\nname = "demo"\n\n[tool.pytest.ini_options]\naddopts = "-q"\n',
    "src/app.py": "def add(a, b):\n    return a + b\n",
    "tests/test_app.py": "from app import add\n\n\ndef test_add():\n    assert add(1, 2) == 3\n",
}


def git(path: Path, *args: str) -> str:
    """Run git through phasegate's runner and return its stdout."""
    return Git(path).text(*args)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository with one commit holding INITIAL_FILES."""
    root = tmp_path / "project"
    root.mkdir()
    git(root, "init", "--quiet", "--initial-branch=main")
    for name, content in INITIAL_FILES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(content, encoding="utf-8")
    git(root, "add", "--all")
    git(root, "commit", "--quiet", "-m", "initial")
    return root


def make_worktree(repo: Path, session_id: str) -> Path:
    """Create the session's worktree the way the orchestrator does."""
    worktree = repo / ".phasegate" / "worktrees" / session_id
    create_worktree(repo, worktree, f"phasegate/{session_id}", head_commit(repo))
    return worktree


@pytest.fixture
def worktree(repo: Path) -> Path:
    """The worktree of session 's1' on branch phasegate/s1."""
    return make_worktree(repo, "s1")


@pytest.fixture
def new_worktree(repo: Path) -> Callable[[str], Path]:
    """A factory creating further session worktrees in the same repository."""
    return lambda session_id: make_worktree(repo, session_id)


@pytest.fixture
def snapshot() -> Callable[[Path], dict[str, str]]:
    """The snapshot_tree function, for byte-for-byte before/after comparisons."""
    return snapshot_tree


@pytest.fixture
def run_git() -> Callable[..., str]:
    """The git helper, for tests that inspect repositories directly."""
    return git


def snapshot_tree(root: Path) -> dict[str, str]:
    """Every entry under root: file content hash and mode, symlink target, or directory."""
    entries: dict[str, str] = {}
    for current, dirs, files in os.walk(root, followlinks=False):
        for name in dirs + files:
            path = Path(current) / name
            info = os.lstat(path)
            key = str(path.relative_to(root))
            if stat.S_ISLNK(info.st_mode):
                entries[key] = f"link -> {os.readlink(path)}"
            elif stat.S_ISDIR(info.st_mode):
                entries[key] = f"dir {stat.S_IMODE(info.st_mode):o}"
            else:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                entries[key] = f"file {stat.S_IMODE(info.st_mode):o} {digest}"
    return entries
