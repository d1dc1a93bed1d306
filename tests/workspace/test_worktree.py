"""Worktrees: created per session, isolated, removable, and readable at any commit."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from phasegate.workspace import (
    FileChange,
    FileNotFoundAtCommit,
    Git,
    GitError,
    RepositoryError,
    apply_submission,
    create_worktree,
    diff_between,
    discard_changes,
    head_commit,
    read_file_at,
    remove_worktree,
)

RunGit = Callable[..., str]


def test_worktree_starts_at_the_base_commit_on_its_branch(
    repo: Path, worktree: Path, run_git: RunGit
) -> None:
    """A new worktree is on branch phasegate/<id> at the base commit, with the project's files."""
    assert run_git(worktree, "symbolic-ref", "HEAD") == "refs/heads/phasegate/s1"
    assert run_git(worktree, "rev-parse", "HEAD") == head_commit(repo)
    assert (worktree / "src" / "app.py").read_text() == (repo / "src" / "app.py").read_text()


def test_state_directory_never_shows_in_the_users_git_status(
    repo: Path, worktree: Path, run_git: RunGit
) -> None:
    """.phasegate/ is excluded via info/exclude, so the user's git status stays clean."""
    (repo / ".phasegate" / "phasegate.db").write_text("db")
    assert run_git(repo, "status", "--porcelain", "--untracked-files=all") == ""
    assert "/.phasegate/" in (repo / ".git" / "info" / "exclude").read_text()


def test_two_sessions_worktrees_are_isolated(
    repo: Path, new_worktree: Callable[[str], Path], run_git: RunGit
) -> None:
    """A commit in one session's worktree is invisible in another's and on the user's branch."""
    first, second = new_worktree("s1"), new_worktree("s2")
    apply_submission(first, [FileChange("src/only_s1.py", "A = 1\n")], "s1 work", {})
    assert not (second / "src" / "only_s1.py").exists()
    assert not (repo / "src" / "only_s1.py").exists()
    assert run_git(second, "rev-parse", "HEAD") == head_commit(repo)
    assert run_git(repo, "rev-parse", "phasegate/s1") != run_git(repo, "rev-parse", "phasegate/s2")


def test_create_is_idempotent(repo: Path, worktree: Path) -> None:
    """Creating the same worktree on the same branch again (a retry) changes nothing."""
    create_worktree(repo, worktree, "phasegate/s1", head_commit(repo))
    assert (worktree / "README.md").exists()


def test_create_on_another_branch_over_an_existing_worktree_is_refused(
    repo: Path, worktree: Path
) -> None:
    """Reusing a worktree directory for a different branch is a clear error."""
    with pytest.raises(RepositoryError, match="another branch"):
        create_worktree(repo, worktree, "phasegate/other", head_commit(repo))


@pytest.mark.parametrize("branch", ["-x", "--force", "a..b", "a b", "a~1", "x.lock", ""])
def test_invalid_branch_names_are_refused(repo: Path, branch: str) -> None:
    """Branch names that git refuses or that look like options are rejected before use."""
    with pytest.raises(RepositoryError, match="not a valid branch"):
        create_worktree(repo, repo / ".phasegate" / "worktrees" / "b", branch, head_commit(repo))


@pytest.mark.parametrize("commit", ["deadbeef" * 5, "--all", "-", "HEAD~99"])
def test_unknown_base_commit_is_refused(repo: Path, commit: str) -> None:
    """A base commit that does not exist (or looks like an option) is a clear error."""
    with pytest.raises(RepositoryError, match="commit"):
        create_worktree(repo, repo / ".phasegate" / "worktrees" / "c", "phasegate/c", commit)


def test_remove_deletes_worktree_and_branch_and_is_idempotent(
    repo: Path, worktree: Path, run_git: RunGit
) -> None:
    """remove_worktree discards the worktree (even with uncommitted files) and its branch."""
    (worktree / "scratch.txt").write_text("uncommitted\n")
    remove_worktree(repo, worktree, "phasegate/s1", delete_branch=True)
    assert not worktree.exists()
    assert "phasegate/s1" not in run_git(repo, "branch", "--list")
    remove_worktree(repo, worktree, "phasegate/s1", delete_branch=True)


def test_remove_can_keep_the_branch(repo: Path, worktree: Path, run_git: RunGit) -> None:
    """With delete_branch=False the branch (the session's history) survives."""
    remove_worktree(repo, worktree, "phasegate/s1", delete_branch=False)
    assert run_git(repo, "rev-parse", "--verify", "phasegate/s1")


def test_head_commit_of_an_empty_repository_is_a_clear_error(tmp_path: Path) -> None:
    """A repository without commits gets an error telling the user to make a first commit."""
    Git(tmp_path).run("init", "--quiet")
    with pytest.raises(RepositoryError, match="no commit yet"):
        head_commit(tmp_path)


def test_head_commit_outside_a_repository_is_a_clear_error(tmp_path: Path) -> None:
    """A directory that is not a git repository gets an error suggesting git init."""
    outside = tmp_path / "plain"
    outside.mkdir()
    with pytest.raises(RepositoryError, match="git init"):
        head_commit(outside)


def test_diff_to_head_shows_the_submitted_change(repo: Path, worktree: Path) -> None:
    """diff_between(base, "HEAD") is the unified diff of committed changes since the base commit."""
    base = head_commit(repo)
    apply_submission(
        worktree, [FileChange("src/app.py", "def add(a, b):\n    return 3\n")], "m", {}
    )
    (worktree / "README.md").write_text("uncommitted edits are not part of the diff\n")
    diff = diff_between(worktree, base, "HEAD")
    assert "-    return a + b\n+    return 3" in diff
    assert "README" not in diff
    assert diff_between(worktree, base, "HEAD", ["tests/test_app.py"]) == ""


def test_read_file_at_reads_any_commit(repo: Path, worktree: Path) -> None:
    """read_file_at returns a file's text at a commit, and a clear error for a missing file."""
    base = head_commit(repo)
    apply_submission(worktree, [FileChange("src/app.py", "changed\n")], "m", {})
    assert read_file_at(worktree, base, "src/app.py").startswith("def add")
    assert read_file_at(worktree, "HEAD", "src/app.py") == "changed\n"
    with pytest.raises(FileNotFoundAtCommit, match="does not exist at commit"):
        read_file_at(worktree, base, "src/missing.py")


def test_discard_changes_resets_the_worktree(worktree: Path, run_git: RunGit) -> None:
    """discard_changes drops uncommitted edits and untracked files."""
    (worktree / "README.md").write_text("edited\n")
    (worktree / "junk").mkdir()
    (worktree / "junk" / "x.txt").write_text("x\n")
    discard_changes(worktree)
    assert run_git(worktree, "status", "--porcelain", "--untracked-files=all") == ""


def test_inherited_git_environment_is_ignored(
    worktree: Path, run_git: RunGit, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """GIT_DIR or GIT_INDEX_FILE in phasegate's environment cannot redirect its git commands."""
    monkeypatch.setenv("GIT_DIR", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("GIT_INDEX_FILE", str(tmp_path / "index"))
    result = apply_submission(worktree, [FileChange("x.py", "x\n")], "env", {})
    monkeypatch.delenv("GIT_DIR")
    monkeypatch.delenv("GIT_INDEX_FILE")
    assert run_git(worktree, "rev-parse", "HEAD") == result.sha


def test_identity_is_phasegate_unless_the_repository_sets_one(
    repo: Path, worktree: Path, run_git: RunGit
) -> None:
    """Commits are by phasegate <phasegate@localhost> unless the repo configures user.*."""
    apply_submission(worktree, [FileChange("a.py", "a\n")], "m", {})
    assert run_git(worktree, "log", "-1", "--format=%an <%ae>") == "phasegate <phasegate@localhost>"
    run_git(repo, "config", "user.name", "Dev")
    run_git(repo, "config", "user.email", "dev@example.com")
    apply_submission(worktree, [FileChange("b.py", "b\n")], "m", {})
    assert run_git(worktree, "log", "-1", "--format=%an <%ae>") == "Dev <dev@example.com>"


def test_git_error_carries_gits_stderr(worktree: Path) -> None:
    """A failing git command raises GitError whose message includes git's own stderr."""
    with pytest.raises(GitError, match=r"unknown revision|bad revision|ambiguous") as failed:
        Git(worktree).run("log", "no-such-ref", "--")
    assert failed.value.stderr
