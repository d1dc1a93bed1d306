"""apply_submission: one validated commit with trailers, or the worktree left as it was."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from phasegate.workspace import (
    FileChange,
    GitError,
    SubmissionRejected,
    apply_submission,
    changed_files,
    commit_message,
)

Snapshot = Callable[[Path], dict[str, str]]
RunGit = Callable[..., str]
TRAILERS = {
    "Phasegate-Session": "s1",
    "Phasegate-Phase": "generating_implementation",
    "Phasegate-Actor": "agent:coder",
}


def test_good_submission_commits_with_trailers(worktree: Path, run_git: RunGit) -> None:
    """A valid submission becomes one commit carrying the session, phase and actor trailers."""
    result = apply_submission(
        worktree,
        [
            FileChange("src/app.py", "def add(a, b):\n    return b + a\n"),
            FileChange("src/new/mod.py", "X = 1\n"),
        ],
        "Implement add",
        TRAILERS,
    )
    assert result.sha == run_git(worktree, "rev-parse", "HEAD")
    assert result.paths == ("src/app.py", "src/new/mod.py") and result.deleted == ()
    trailers = run_git(worktree, "log", "-1", "--format=%(trailers:only,unfold)")
    assert trailers.splitlines() == [f"{k}: {v}" for k, v in TRAILERS.items()]
    assert run_git(worktree, "log", "-1", "--format=%s") == "Implement add"
    assert run_git(worktree, "show", "HEAD:src/new/mod.py") == "X = 1"
    assert run_git(worktree, "status", "--porcelain") == ""


def test_explicit_delete_is_committed(worktree: Path, run_git: RunGit) -> None:
    """A change with content None deletes the file and reports it as deleted."""
    result = apply_submission(worktree, [FileChange("README.md", None)], "drop readme", TRAILERS)
    assert result.deleted == ("README.md",) and result.paths == ()
    assert not (worktree / "README.md").exists()
    assert "README.md" not in run_git(worktree, "ls-tree", "-r", "--name-only", "HEAD")


def test_whatever_changed_mode_picks_up_edits_new_files_and_deletions(
    worktree: Path, run_git: RunGit
) -> None:
    """With changes=None the worktree's edits, untracked files and deletions are committed."""
    (worktree / "src" / "app.py").write_text("def add(a, b):\n    return a + b + 0\n")
    (worktree / "src" / "pkg").mkdir()
    (worktree / "src" / "pkg" / "util.py").write_text("Y = 2\n")
    (worktree / "README.md").unlink()
    result = apply_submission(worktree, None, "agent edits", TRAILERS)
    assert sorted(result.paths) == ["src/app.py", "src/pkg/util.py"]
    assert result.deleted == ("README.md",)
    assert run_git(worktree, "status", "--porcelain") == ""


def test_changed_files_lists_relative_paths(worktree: Path) -> None:
    """changed_files reports edits, new files (as text) and deletions with relative paths."""
    (worktree / "src" / "app.py").write_text("edited\n")
    (worktree / "notes.md").write_text("new\n")
    (worktree / "README.md").unlink()
    assert sorted(changed_files(worktree), key=lambda c: c.path) == [
        FileChange("README.md", None),
        FileChange("notes.md", "new\n"),
        FileChange("src/app.py", "edited\n"),
    ]


def test_empty_submission_is_refused(worktree: Path, run_git: RunGit) -> None:
    """A submission with no change is refused as 'nothing to submit' and commits nothing."""
    head = run_git(worktree, "rev-parse", "HEAD")
    for changes in (None, [], [FileChange("README.md", "# demo\n")]):
        with pytest.raises(SubmissionRejected, match="nothing to submit") as refused:
            apply_submission(worktree, changes, "noop", TRAILERS)
        assert refused.value.path == ""
    assert run_git(worktree, "rev-parse", "HEAD") == head
    assert run_git(worktree, "status", "--porcelain") == ""


def test_binary_file_in_worktree_is_refused_by_name(worktree: Path) -> None:
    """A binary file among the worktree changes is refused, naming the file."""
    (worktree / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    with pytest.raises(SubmissionRejected, match=r"'logo\.png': is a binary"):
        apply_submission(worktree, None, "with binary", TRAILERS)


def test_symlink_in_worktree_is_refused_by_name(tmp_path: Path, worktree: Path) -> None:
    """A symlink the agent created in the worktree is refused, not committed."""
    (worktree / "leak.txt").symlink_to("/etc/hostname")
    with pytest.raises(SubmissionRejected, match=r"leak\.txt"):
        apply_submission(worktree, None, "with link", TRAILERS)


def test_nested_repository_in_worktree_is_refused(worktree: Path, run_git: RunGit) -> None:
    """An untracked nested git repository is refused instead of becoming a submodule."""
    (worktree / "vendored").mkdir()
    run_git(worktree / "vendored", "init", "--quiet")
    (worktree / "vendored" / "x.py").write_text("x\n")
    with pytest.raises(SubmissionRejected, match="nested git repository"):
        apply_submission(worktree, None, "with nested repo", TRAILERS)


def test_files_staged_by_the_agent_do_not_ride_along(worktree: Path, run_git: RunGit) -> None:
    """Only the submitted paths are committed, even if the agent staged others with git add."""
    (worktree / "sneaky.py").write_text("import os\n")
    run_git(worktree, "add", "sneaky.py")
    result = apply_submission(worktree, [FileChange("src/app.py", "# new\n")], "one file", TRAILERS)
    assert result.paths == ("src/app.py",)
    assert "sneaky.py" not in run_git(worktree, "ls-tree", "-r", "--name-only", "HEAD")
    assert (worktree / "sneaky.py").exists()


def test_glob_characters_in_a_name_match_only_that_file(worktree: Path, run_git: RunGit) -> None:
    """A file named '*' is a literal path: it does not stage every other changed file."""
    (worktree / "other.py").write_text("untracked\n")
    result = apply_submission(worktree, [FileChange("*", "star\n")], "star", TRAILERS)
    assert result.paths == ("*",)
    assert "other.py" not in run_git(worktree, "ls-tree", "-r", "--name-only", "HEAD")


def test_ignored_path_is_refused_before_writing(worktree: Path) -> None:
    """A path that .gitignore excludes is refused, because git would silently not commit it."""
    apply_submission(worktree, [FileChange(".gitignore", "build/\n")], "ignore build", TRAILERS)
    with pytest.raises(SubmissionRejected, match=r"ignored by \.gitignore"):
        apply_submission(worktree, [FileChange("build/out.txt", "x\n")], "ignored", TRAILERS)
    assert not (worktree / "build").exists()


def test_executable_bit_survives_an_overwrite(worktree: Path) -> None:
    """Overwriting a file keeps its permission bits (e.g. an executable script)."""
    script = worktree / "run.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    apply_submission(worktree, None, "script", TRAILERS)
    apply_submission(worktree, [FileChange("run.sh", "#!/bin/sh\necho hi\n")], "edit", TRAILERS)
    assert os.stat(script).st_mode & 0o111


def test_failure_after_writing_restores_the_worktree(
    worktree: Path, run_git: RunGit, snapshot: Snapshot
) -> None:
    """If the commit is aborted after files were written, every file and directory is restored."""
    (worktree / "wip.txt").write_text("agent's unrelated work\n")
    before, head = snapshot(worktree), run_git(worktree, "rev-parse", "HEAD")
    calls: list[Sequence[str]] = []

    def refuse_when_staged(paths: Sequence[str]) -> None:
        calls.append(paths)
        if len(calls) == 2:
            raise SubmissionRejected(paths[0], "refused by policy after staging")

    changes = [
        FileChange("src/app.py", "changed\n"),
        FileChange("README.md", None),
        FileChange("new/dir/file.py", "new\n"),
    ]
    with pytest.raises(SubmissionRejected, match="after staging"):
        apply_submission(worktree, changes, "aborted", TRAILERS, check=refuse_when_staged)
    assert snapshot(worktree) == before
    assert run_git(worktree, "rev-parse", "HEAD") == head
    assert run_git(worktree, "status", "--porcelain") == "?? wip.txt"


def test_git_failure_after_writing_restores_the_worktree(
    repo: Path, worktree: Path, run_git: RunGit, snapshot: Snapshot
) -> None:
    """A git error while staging (a held index lock) restores the worktree and names the lock."""
    before = snapshot(worktree)
    git_dir = Path(run_git(worktree, "rev-parse", "--absolute-git-dir"))
    (git_dir / "index.lock").write_text("")
    try:
        with pytest.raises(GitError, match=r"index\.lock"):
            apply_submission(worktree, [FileChange("src/app.py", "x\n")], "locked", TRAILERS)
    finally:
        (git_dir / "index.lock").unlink()
    assert snapshot(worktree) == before


def test_trailer_values_cannot_forge_more_trailers() -> None:
    """Newlines in a trailer value are flattened, so a value cannot add a trailer line."""
    message = commit_message(
        "note\n\nPhasegate-Phase: completed", {"Phasegate-Actor": "a\nPhasegate-Phase: x"}
    )
    assert message.endswith("\n\nPhasegate-Actor: a Phasegate-Phase: x\n")


def test_pre_commit_hook_in_repository_is_not_run(
    repo: Path, worktree: Path, tmp_path: Path
) -> None:
    """Git hooks never run: core.hooksPath is /dev/null for every git command."""
    canary = tmp_path / "hook-ran"
    hook = repo / ".git" / "hooks" / "pre-commit"
    hook.write_text(f"#!/bin/sh\ntouch {canary}\n")
    hook.chmod(0o755)
    apply_submission(worktree, [FileChange("src/app.py", "x = 1\n")], "no hooks", TRAILERS)
    assert not canary.exists()
