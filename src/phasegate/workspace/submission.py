"""Applying a submission: validate, write without following links, stage, commit with trailers.

Either the whole submission becomes one commit, or the worktree is left as it was.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import stat
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from phasegate.workspace.errors import GitError, SubmissionRejected
from phasegate.workspace.git import Git
from phasegate.workspace.paths import (
    DEFAULT_LIMITS,
    FileChange,
    SubmissionLimits,
    validate_submission,
    verified_root,
)
from phasegate.workspace.worktree import SCRATCH_PREFIX, changed_files

PathCheck = Callable[[Sequence[str]], None]
"""A policy hook (e.g. ``check_lock``) called with the paths about to be committed."""

_TRAILER_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
_REGULAR_MODES = frozenset({"100644", "100755"})


@dataclass(frozen=True)
class SubmissionCommit:
    """The commit a submission became: its sha, written paths and deleted paths."""

    sha: str
    paths: tuple[str, ...]
    deleted: tuple[str, ...]


def apply_submission(
    worktree: Path,
    changes: Sequence[FileChange] | None,
    message: str,
    trailers: Mapping[str, str],
    *,
    limits: SubmissionLimits = DEFAULT_LIMITS,
    check: PathCheck | None = None,
) -> SubmissionCommit:
    """Validate ``changes`` (``None``: the worktree's uncommitted changes) and commit them.

    ``check`` runs on the validated paths before anything is written, and again on
    the staged paths right before the commit; whatever it raises aborts the
    submission with the worktree restored.
    """
    root = verified_root(worktree)
    from_worktree = changes is None
    proposed = changed_files(root, limits) if changes is None else changes
    validated = validate_submission(root, proposed, limits)
    if not validated:
        raise _nothing_to_submit()
    if check is not None:
        check([change.path for change in validated])
    full_message = commit_message(message, trailers)
    git = Git(root)
    if not from_worktree:
        _refuse_ignored(git, [change.path for change in validated if not change.is_delete])
    # Anything the agent staged itself must not ride along in our commit.
    git.run("reset", "--quiet")
    journal = _Journal(root)
    try:
        if not from_worktree:
            for change in validated:
                journal.apply(change)
        return _stage_and_commit(git, [c.path for c in validated], full_message, check)
    except BaseException:
        journal.undo()
        with contextlib.suppress(GitError):  # the original error says more
            git.run("reset", "--quiet")
        raise
    finally:
        journal.discard_backups()


def commit_message(message: str, trailers: Mapping[str, str]) -> str:
    """The commit message: the text, a blank line, then one ``Key: value`` trailer per line."""
    body = message.replace("\0", "").strip() or "phasegate submission"
    lines = []
    for key, value in trailers.items():
        if not _TRAILER_KEY.fullmatch(key):
            raise ValueError(f"trailer key {key!r} must be letters, digits and '-'")
        # A newline in a value would let it forge further trailers.
        lines.append(f"{key}: {' '.join(value.replace(chr(0), '').split())}")
    return body + ("\n\n" + "\n".join(lines) if lines else "") + "\n"


def _stage_and_commit(
    git: Git, paths: list[str], message: str, check: PathCheck | None
) -> SubmissionCommit:
    git.run("add", "--all", "--pathspec-from-file=-", "--pathspec-file-nul", input=_nul(paths))
    written, deleted = _staged_changes(git, set(paths))
    if not written and not deleted:
        raise _nothing_to_submit()
    if check is not None:
        check([*written, *deleted])
    git.run("commit", "--quiet", "--no-verify", "--cleanup=whitespace", "-F", "-",
            input=message.encode("utf-8"))  # fmt: skip
    sha = git.text("rev-parse", "--verify", "HEAD^{commit}")
    return SubmissionCommit(sha=sha, paths=tuple(written), deleted=tuple(deleted))


def _staged_changes(git: Git, allowed: set[str]) -> tuple[list[str], list[str]]:
    """What the index would commit, refusing links, submodules and unexpected paths."""
    raw = git.run("diff", "--cached", "--raw", "-z", "--no-renames", "HEAD").stdout
    fields = raw.split(b"\0")
    written: list[str] = []
    deleted: list[str] = []
    for header, raw_path in zip(fields[0::2], fields[1::2], strict=False):
        if not header:
            continue
        new_mode, status = header.split()[1].decode(), header.split()[-1].decode()
        path = raw_path.decode("utf-8", "replace")
        if path not in allowed:
            raise SubmissionRejected(path, "was staged but is not part of the submission")
        if status == "D":
            deleted.append(path)
        elif new_mode in _REGULAR_MODES:
            written.append(path)
        else:
            raise SubmissionRejected(
                path, "became a symbolic link or submodule while it was being submitted"
            )
    return written, deleted


def _refuse_ignored(git: Git, paths: list[str]) -> None:
    if not paths:
        return
    # check-ignore takes plain path names and rejects the literal-pathspec setting.
    done = git.run(
        "check-ignore", "-z", "--stdin", input=_nul(paths), ok_codes=(0, 1),
        extra_env={"GIT_LITERAL_PATHSPECS": "0"},
    )  # fmt: skip
    ignored = [p for p in done.stdout.decode("utf-8", "replace").split("\0") if p]
    if ignored:
        raise SubmissionRejected(
            ignored[0],
            "is ignored by .gitignore, so git would not commit it",
            "choose a path that is not ignored, or submit a .gitignore change first",
        )


def _nothing_to_submit() -> SubmissionRejected:
    return SubmissionRejected(
        "",
        "nothing to submit: no file differs from the last commit",
        "change at least one file, or pass the files explicitly",
    )


def _nul(paths: Sequence[str]) -> bytes:
    return b"".join(path.encode("utf-8") + b"\0" for path in paths)


@dataclass(frozen=True)
class _Undo:
    directory: tuple[str, ...]
    name: str
    backup: str | None  # hard link to the previous file, None if there was none


class _Journal:
    """Writes files under a verified root without following links, and can undo them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._undo: list[_Undo] = []
        self._created_dirs: list[tuple[str, ...]] = []

    def apply(self, change: FileChange) -> None:
        """Write or delete one file, atomically, keeping a backup of what was there."""
        try:
            self._apply(change)
        except OSError as exc:
            raise SubmissionRejected(
                change.path,
                f"could not be written ({exc.strerror or exc})",
                "retry; if it fails again, check disk space and permissions of the worktree",
            ) from exc

    def _apply(self, change: FileChange) -> None:
        *directory, name = change.path.split("/")
        dir_fd = self._open_dir(change.path, tuple(directory), create=not change.is_delete)
        if dir_fd is None:
            return  # deleting inside a directory that does not exist: nothing to do
        try:
            backup = _backup_existing(dir_fd, change.path, name)
            self._undo.append(_Undo(tuple(directory), name, backup))
            if change.content is None:
                if backup is not None:
                    os.unlink(name, dir_fd=dir_fd)
            else:
                _write_atomically(dir_fd, name, change.content.encode("utf-8"))
        finally:
            os.close(dir_fd)

    def undo(self) -> None:
        """Put every touched file back as it was and remove directories we created."""
        # Best effort per entry: one failure (e.g. a directory swapped for a link
        # meanwhile) must not stop the others from being restored.
        for entry in reversed(self._undo):
            with contextlib.suppress(OSError, SubmissionRejected):
                self._restore(entry)
        self._undo.clear()  # the backups have been moved back into place
        for directory in reversed(self._created_dirs):
            with contextlib.suppress(OSError, SubmissionRejected):
                self._remove_dir(directory)

    def _restore(self, entry: _Undo) -> None:
        dir_fd = self._open_dir("", entry.directory, create=False)
        if dir_fd is None:
            return
        try:
            if entry.backup is not None:
                os.replace(entry.backup, entry.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            else:
                _unlink_if_present(dir_fd, entry.name)
        finally:
            os.close(dir_fd)

    def _remove_dir(self, directory: tuple[str, ...]) -> None:
        """rmdir a directory we created, if it is still empty."""
        dir_fd = self._open_dir("", directory[:-1], create=False)
        if dir_fd is None:
            return
        try:
            os.rmdir(directory[-1], dir_fd=dir_fd)
        finally:
            os.close(dir_fd)

    def discard_backups(self) -> None:
        """Delete the backups once they are no longer needed."""
        for entry in self._undo:
            if entry.backup is None:
                continue
            dir_fd = self._open_dir("", entry.directory, create=False)
            if dir_fd is not None:
                _unlink_if_present(dir_fd, entry.backup)
                os.close(dir_fd)

    def _open_dir(self, path: str, parts: tuple[str, ...], *, create: bool) -> int | None:
        """An fd for root/parts, opened one level at a time with O_NOFOLLOW."""
        fd = os.open(self.root, _DIR_FLAGS)
        try:
            for index, part in enumerate(parts):
                if create:
                    try:
                        os.mkdir(part, dir_fd=fd)
                        self._created_dirs.append(parts[: index + 1])
                    except FileExistsError:
                        pass
                try:
                    next_fd = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if create:
                        raise
                    os.close(fd)
                    return None
                except OSError:
                    raise SubmissionRejected(
                        path, f"'{'/'.join(parts[: index + 1])}' became a link or a file"
                    ) from None
                os.close(fd)
                fd = next_fd
        except BaseException:
            os.close(fd)
            raise
        return fd


def _backup_existing(dir_fd: int, path: str, name: str) -> str | None:
    """Hard-link the current file to a scratch name so it can be restored; None if absent."""
    try:
        mode = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(mode):
        raise SubmissionRejected(path, "became a link or special file while being submitted")
    backup = f"{SCRATCH_PREFIX}{secrets.token_hex(8)}"
    os.link(name, backup, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
    return backup


def _write_atomically(dir_fd: int, name: str, data: bytes) -> None:
    """Write to a new scratch file, then rename it over ``name`` (renames never follow links)."""
    mode = 0o644
    with contextlib.suppress(FileNotFoundError):
        mode = stat.S_IMODE(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    scratch = f"{SCRATCH_PREFIX}{secrets.token_hex(8)}"
    fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode, dir_fd=dir_fd)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(scratch, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        _unlink_if_present(dir_fd, scratch)
        raise


def _unlink_if_present(dir_fd: int, name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(name, dir_fd=dir_fd)
