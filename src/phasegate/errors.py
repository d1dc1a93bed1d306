"""One error tree: every message says what happened and what to do next.

Entry points map these to exit codes, HTTP statuses and MCP `ToolError`s in
one place each; nothing else in phasegate raises bare exceptions at users.
"""

from __future__ import annotations

from collections.abc import Sequence


class PhasegateError(Exception):
    """Base class for every error phasegate reports to a user or an agent."""

    #: HTTP status an entry point should answer with.
    http_status: int = 400
    #: Short machine-readable code, stable across releases.
    code: str = "error"

    def __init__(
        self, message: str, *, allowed_actions: Sequence[str] = (), phase: str = ""
    ) -> None:
        super().__init__(message)
        self.message = message
        self.allowed_actions = tuple(allowed_actions)
        self.phase = phase

    def to_dict(self) -> dict[str, object]:
        """The structured form used by the HTTP API and MCP results."""
        return {
            "code": self.code,
            "message": self.message,
            "phase": self.phase or None,
            "allowed_actions": list(self.allowed_actions),
        }


class ConfigError(PhasegateError):
    """The project's configuration is missing, unreadable or invalid."""

    code = "config_error"


class GuardedStateError(ConfigError):
    """A guarded server's state could be reached by others: one line per path to fix."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = tuple(problems)


class NotFound(PhasegateError):
    """An id, name or prefix that matches nothing."""

    http_status = 404
    code = "not_found"


class Ambiguous(PhasegateError):
    """A prefix that matches several sessions or tasks."""

    code = "ambiguous"


class Conflict(PhasegateError):
    """Someone else changed the session first (stale version or lost race)."""

    http_status = 409
    code = "conflict"


class AlreadyActive(Conflict):
    """A task that already has a session in progress: a second one only when asked for."""

    code = "already_active"

    def __init__(self, message: str, *, session_id: str, phase: str) -> None:
        super().__init__(message, phase=phase)
        self.session_id = session_id

    def to_dict(self) -> dict[str, object]:
        return {**super().to_dict(), "session_id": self.session_id}


class InvalidTransition(Conflict):
    """The action is not allowed in the session's current phase (a conflict with its state)."""

    code = "invalid_transition"


class IdempotencyMismatch(PhasegateError):
    """An idempotency key was reused with different arguments."""

    http_status = 422
    code = "idempotency_mismatch"


class PermissionDenied(PhasegateError):
    """The principal may not do this (an agent deciding a gate, a wrong role, a lease)."""

    http_status = 403
    code = "permission_denied"


class Unauthenticated(PhasegateError):
    """No token, or a token that matches no active principal."""

    http_status = 401
    code = "unauthenticated"


class InvalidInput(PhasegateError):
    """Malformed or oversized input; nothing was changed."""

    http_status = 422
    code = "invalid_input"


class SubmissionRefused(PhasegateError):
    """A submission broke a path rule, a limit or the approved-test lock."""

    http_status = 422
    code = "submission_refused"


class StorageError(PhasegateError):
    """The database can't be reached or is not usable."""

    http_status = 503
    code = "storage_error"


class StorageBusy(StorageError):
    """Another process held the database's write lock past the busy timeout; nothing changed."""

    code = "storage_busy"


class StorageFull(StorageError):
    """The disk (or the database's size limit) is full; the transaction rolled back."""

    http_status = 507
    code = "storage_full"
