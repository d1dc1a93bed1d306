"""Per-session git worktrees: create, remove, and read what is in them."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Sequence
from pathlib import Path

from phasegate.workspace.errors import (
    FileNotFoundAtCommit,
    GitError,
    RepositoryError,
    SubmissionRejected,
)
from phasegate.workspace.git import Git, worktree_pin
from phasegate.workspace.gitcache import RepoObjects
from phasegate.workspace.paths import DEFAULT_LIMITS, FileChange, SubmissionLimits

STATE_DIR_NAME = ".phasegate"
# Scratch names used by submission.py while writing; ignored so a crash mid-write
# never turns them into "changes" an agent could submit.
SCRATCH_PREFIX = ".phasegate-scratch-"
_EXCLUDE_LINES = (f"/{STATE_DIR_NAME}/", f"{SCRATCH_PREFIX}*")


def create_worktree(repo: Path, worktree: Path, branch: str, base_commit: str) -> None:
    """Create ``worktree`` on a new ``branch`` starting at ``base_commit``.

    Idempotent: if the worktree already exists on that branch (a retry after a
    crash), this returns without changing anything.
    """
    git = Git(repo)
    commit = resolve_commit(git, base_commit)
    _check_branch_name(git, branch)
    ignore_state_dir(repo)
    if _is_worktree_on_branch(worktree, branch):
        return
    git.run("worktree", "prune")  # forget worktrees whose directory was deleted by hand
    # Made here, not by git: on a guarded server git gives directories it makes in a
    # shared repository the git dir's modes, and the agents' group must write here.
    worktree.mkdir(parents=True, exist_ok=True)
    for parent in (worktree.parent.parent, worktree.parent):  # .phasegate/ and worktrees/
        _drop_shared_write(parent)
    git.run("worktree", "add", "--quiet", "-b", branch, "--", str(worktree), commit)


def _drop_shared_write(directory: Path) -> None:
    """Only phasegate's user may rename what is in `directory` (swap a worktree for a link)."""
    info = directory.lstat()
    if info.st_uid == os.geteuid() and info.st_mode & 0o022:
        directory.chmod(stat.S_IMODE(info.st_mode) & ~0o022)


def remove_worktree(repo: Path, worktree: Path, branch: str, delete_branch: bool) -> None:
    """Remove ``worktree`` (discarding uncommitted changes) and optionally its branch.

    Idempotent: a worktree or branch that is already gone is not an error.
    """
    git = Git(repo)
    if worktree.exists():
        git.run("worktree", "remove", "--force", "--force", "--", str(worktree))
    git.run("worktree", "prune")
    if delete_branch and git.succeeds("rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"):
        _check_branch_name(git, branch)
        git.run("branch", "-D", "--", branch)


def clear_stale_index_lock(worktree: Path, older_than_s: float = 60.0) -> bool:
    """Remove the worktree's `index.lock` if it is older than `older_than_s`.

    A process killed in the middle of `git commit` leaves the lock behind, and
    every later commit in that worktree would fail on it. Call this only while
    holding phasegate's own lock on the worktree; the age guards against a git
    command someone else is running there right now.
    """
    pinned = worktree_pin(worktree).get("GIT_DIR")  # never the worktree's own .git file
    dot_git = worktree / ".git"
    if pinned:
        git_dir = Path(pinned)
    elif dot_git.is_dir():
        git_dir = dot_git
    else:
        return False  # a linked worktree phasegate doesn't keep: not ours to unlock
    lock = git_dir / "index.lock"
    try:
        age = time.time() - lock.stat().st_mtime
    except FileNotFoundError:
        return False
    if age < older_than_s:
        return False
    lock.unlink(missing_ok=True)
    return True


def discard_changes(worktree: Path) -> None:
    """Throw away every uncommitted change in ``worktree`` (tracked and untracked files)."""
    git = Git(worktree)
    git.run("reset", "--quiet", "--hard", "HEAD")
    git.run("clean", "--quiet", "-f", "-d", "--", ".")


def head_commit(repo: Path) -> str:
    """The full sha of ``HEAD`` in ``repo``; a clear error if there is no commit yet."""
    git = Git(repo)
    if not git.succeeds("rev-parse", "--git-dir"):
        raise RepositoryError(f"{repo} is not a git repository; run 'git init' there first")
    if not git.succeeds("rev-parse", "--verify", "--quiet", "HEAD^{commit}"):
        raise RepositoryError(
            f"the repository at {repo} has no commit yet; make a first commit "
            "(e.g. git commit --allow-empty -m 'initial commit') and retry"
        )
    return git.text("rev-parse", "--verify", "HEAD^{commit}")


def current_branch(repo: Path) -> str | None:
    """The short name of the branch checked out in ``repo``; None when HEAD is detached."""
    git = Git(repo)
    if not git.succeeds("symbolic-ref", "--quiet", "HEAD"):
        return None
    return git.text("symbolic-ref", "--quiet", "--short", "HEAD")


def changed_files(worktree: Path, limits: SubmissionLimits = DEFAULT_LIMITS) -> list[FileChange]:
    """The uncommitted changes in ``worktree`` (edits, untracked files, deletions) as text."""
    return [
        FileChange(path, _read_text(worktree, path, limits)) for path in changed_paths(worktree)
    ]


def changed_paths(worktree: Path) -> list[str]:
    """The paths of the uncommitted changes in ``worktree`` (edits, untracked files, deletions)."""
    status = Git(worktree).run(
        "status", "--porcelain=v1", "-z", "--untracked-files=all", "--no-renames"
    )
    return [_decode_path(entry[3:]) for entry in status.stdout.split(b"\0") if entry]


def diff_between(
    worktree: Path,
    base: str,
    head: str,
    paths: Sequence[str] | None = None,
    *,
    exclude: Sequence[str] = (),
) -> str:
    """The unified diff from commit ``base`` to commit ``head``, optionally only ``paths``
    and leaving out the exact paths in ``exclude``.

    Cached by the two resolved shas, so pass a commit sha (e.g. the session's head)
    rather than ``HEAD`` where you have one; a name is resolved afresh every call.
    """
    objects = RepoObjects(worktree)
    base_sha, head_sha = objects.commit(base), objects.commit(head)
    pathspec = tuple(paths or ())
    magic: dict[str, str] = {}
    if exclude:
        # Exclusion needs pathspec magic, which phasegate's git runs turn off; every path
        # keeps it literal still: a file named `*` leaves out that one file, never a pattern.
        pathspec = (
            *(f":(literal){p}" for p in pathspec),
            *(f":(exclude,literal){p}" for p in exclude),
        )
        magic = {"GIT_LITERAL_PATHSPECS": "0"}

    def run_diff() -> str:
        argv = ["diff", "--no-color", "--no-ext-diff", "--no-textconv", base_sha, head_sha]
        argv += ["--", *pathspec] if pathspec else []
        done = Git(worktree, identity=False).run(*argv, extra_env=magic or None)
        return done.stdout.decode("utf-8", "replace")

    return objects.diff(base_sha, head_sha, pathspec, run_diff)


def changed_between(worktree: Path, base: str, head: str) -> list[str]:
    """The paths that differ between commits ``base`` and ``head`` (a rename is both its paths)."""
    out = Git(worktree, identity=False).run(
        "diff", "--name-only", "-z", "--no-renames", "--no-ext-diff", base, head
    )
    return [raw.decode("utf-8", "replace") for raw in out.stdout.split(b"\0") if raw]


def read_file_at(worktree: Path, commit: str, path: str) -> str:
    """The text of ``path`` (relative to the repository root) at ``commit``.

    Read through the object cache: once a commit's file was read, reading it
    again starts no git process.
    """
    objects = RepoObjects(worktree)
    sha = objects.commit(commit)
    found = objects.entry(sha, path)
    if found.kind == "missing":
        raise FileNotFoundAtCommit(path, sha)
    if found.kind != "blob":
        what = "a directory" if found.kind == "tree" else f"a {found.kind} (e.g. a submodule)"
        raise RepositoryError(
            f"'{path}' at commit {sha} is {what}, not a file; pass the path of a file"
        )
    try:
        return found.data.decode("utf-8")
    except UnicodeDecodeError:
        raise RepositoryError(
            f"file '{path}' at commit {sha} is not UTF-8 text; only text files can be read"
        ) from None


def resolve_commit(git: Git, revision: str) -> str:
    """The full sha of a commit, refusing option-like or unknown revisions."""
    if not revision or revision.startswith("-"):
        raise RepositoryError(f"'{revision}' is not a valid commit; pass a commit sha")
    try:
        return git.text(
            "rev-parse", "--verify", "--quiet", "--end-of-options", f"{revision}^{{commit}}"
        )
    except GitError:
        raise RepositoryError(
            f"commit '{revision}' does not exist in {git.cwd}; pass a commit from this repository"
        ) from None


def ignore_state_dir(repo: Path) -> None:
    """Add ``/.phasegate/`` to ``.git/info/exclude`` so it never shows in ``git status``.

    ``info/exclude`` lives in the common git dir, so it applies to every worktree too.
    """
    common_dir = Path(Git(repo).text("rev-parse", "--path-format=absolute", "--git-common-dir"))
    exclude = common_dir / "info" / "exclude"
    existing = exclude.read_text("utf-8") if exclude.is_file() else ""
    missing = [line for line in _EXCLUDE_LINES if line not in existing.splitlines()]
    if not missing:
        return
    exclude.parent.mkdir(parents=True, exist_ok=True)
    separator = "" if existing == "" or existing.endswith("\n") else "\n"
    with exclude.open("a", encoding="utf-8") as handle:
        handle.write(f"{separator}# phasegate state and scratch files\n")
        handle.write("".join(f"{line}\n" for line in missing))


def _check_branch_name(git: Git, branch: str) -> None:
    if branch.startswith("-") or not git.succeeds("check-ref-format", "--branch", branch):
        raise RepositoryError(
            f"'{branch}' is not a valid branch name; use e.g. 'phasegate/<session-id>'"
        )


def _is_worktree_on_branch(worktree: Path, branch: str) -> bool:
    if not (worktree / ".git").exists():
        return False
    git = Git(worktree)
    if not git.succeeds("symbolic-ref", "--quiet", "HEAD"):
        return False
    if git.text("symbolic-ref", "--quiet", "HEAD") == f"refs/heads/{branch}":
        return True
    raise RepositoryError(
        f"{worktree} already exists on another branch; remove it with remove_worktree first"
    )


def _decode_path(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        shown = raw.decode("utf-8", "replace")
        raise SubmissionRejected(
            shown, "has a name that is not UTF-8", "rename the file to a UTF-8 name"
        ) from None


def _read_text(worktree: Path, path: str, limits: SubmissionLimits) -> str | None:
    """The file's text, ``None`` if it was deleted; refuses links, directories and binaries."""
    full = worktree / path
    try:
        mode = os.lstat(full).st_mode
    except FileNotFoundError:
        return None
    if path.endswith("/") or stat.S_ISDIR(mode):
        raise SubmissionRejected(
            path,
            "is a directory (a nested git repository or submodule)",
            "remove it or submit its files",
        )
    not_regular = SubmissionRejected(
        path, "is a symbolic link or special file", "replace it with a regular file"
    )
    if not stat.S_ISREG(mode):
        raise not_regular
    try:  # O_NONBLOCK: a file swapped for a FIFO after the lstat must not hang us.
        fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        raise not_regular from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise not_regular
        if info.st_size > limits.max_file_bytes:
            raise SubmissionRejected(
                path,
                f"is {info.st_size} bytes, more than the limit of {limits.max_file_bytes} bytes",
                "keep generated or large data files out of submissions",
            )
        data = handle.read(limits.max_file_bytes + 1)
    try:
        if b"\0" in data:
            raise UnicodeDecodeError("utf-8", data, data.index(b"\0"), len(data), "NUL byte")
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise SubmissionRejected(
            path,
            "is a binary or non-UTF-8 file",
            "only text files can be submitted; delete it or convert it to UTF-8",
        ) from None
