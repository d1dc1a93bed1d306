"""The workspace error tree: every message says what happened and what to do next."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

_MAX_SHOWN_PATH = 200


class WorkspaceError(Exception):
    """Base class for every error raised by ``phasegate.workspace``."""


class GitError(WorkspaceError):
    """A git command failed; the message carries git's own stderr."""

    def __init__(self, message: str, *, argv: Sequence[str] = (), stderr: str = "") -> None:
        super().__init__(message)
        self.argv = tuple(argv)
        self.stderr = stderr


class RepositoryError(WorkspaceError):
    """The repository or worktree is not in a state the operation needs."""


class FileNotFoundAtCommit(RepositoryError):
    """A path asked for does not exist at the given commit."""

    def __init__(self, path: str, commit: str) -> None:
        super().__init__(
            f"file '{path}' does not exist at commit {commit}; "
            "check the path (relative to the repository root) and the commit"
        )
        self.path = path
        self.commit = commit


class SubmissionRejected(WorkspaceError):
    """A submitted path or its content was refused before anything was written."""

    default_hint = "submit a relative path inside the worktree, e.g. 'src/app.py'"

    def __init__(self, path: str, reason: str, hint: str | None = None) -> None:
        self.path = path
        self.reason = reason
        self.hint = hint if hint is not None else self.default_hint
        super().__init__(f"refused path '{printable_path(path)}': {reason}; {self.hint}")


class LockedTestViolation(SubmissionRejected):
    """A submission touches an approved (locked) test or test-runner configuration file.

    Subclass of ``SubmissionRejected`` so callers that only care about "refused"
    can catch one type; catch this one first to report it specifically.
    """

    default_hint = (
        "approved tests and runner configuration are locked; change the implementation "
        "instead, or ask a human to reopen the tests"
    )


def printable_path(path: str) -> str:
    """The path with control and invisible characters escaped and its length capped.

    Hostile paths end up in logs, terminals and the dashboard; a raw newline,
    escape sequence or bidi override there could forge or hide text.
    """
    shown = "".join(
        f"\\u{ord(ch):04x}" if unicodedata.category(ch)[0] in "CZ" and ch != " " else ch
        for ch in path[:_MAX_SHOWN_PATH]
    )
    return shown + ("…" if len(path) > _MAX_SHOWN_PATH else "")
