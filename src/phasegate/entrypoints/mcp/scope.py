"""Job tokens: what a worker's agent CLI may do with phasegate, for its one claimed session.

A push-mode worker hands its agent CLI (claude, codex, gemini) a token of its
own for each job, never the worker's token: the CLI acts as the worker's agent
(so its submission passes the worker's lease) but on that one session only.
`JobTokens` keeps them in the worker's memory, for the endpoint the worker
serves; `SessionScope` refuses, in one `Error:` line, every call on another
session and every call that reaches beyond one (listing, starting, claiming).
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS, CallToolResult, TextContent

from phasegate.domain.principal import Principal
from phasegate.errors import Unauthenticated

TOKEN_PREFIX = "pgj_"
#: Tools that reach beyond one session: never for a job token.
BEYOND_ONE_SESSION = frozenset({"list_sessions", "start_session", "claim_next"})
_SESSION_RESOURCE = "phasegate://sessions/"


class JobTokens:
    """The job tokens a worker has issued: each its agent's, scoped to one session."""

    def __init__(self) -> None:
        self._by_hash: dict[str, Principal] = {}
        self._lock = threading.Lock()

    def issue(self, principal: Principal, session_id: str) -> str:
        """A new token acting as `principal` on `session_id` only, until revoked."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self._lock:
            self._by_hash[_hash(token)] = replace(principal, session_scope=session_id)
        return token

    def revoke(self, token: str) -> None:
        with self._lock:
            self._by_hash.pop(_hash(token), None)

    def authenticate(self, token: str | None) -> Principal:
        with self._lock:
            found = self._by_hash.get(_hash(token or ""))
        if found is None:
            raise Unauthenticated(
                "this endpoint takes only the token of a job its worker is running; the job "
                "may have ended"
            )
        return found


class SessionScope:
    """Server middleware: a scoped principal's calls stay on its session."""

    def __init__(self, principal: Callable[[], Principal | None]) -> None:
        self._principal = principal

    async def __call__(
        self, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        principal = self._principal()
        scope = principal.session_scope if principal is not None else None
        if scope is None or not isinstance(ctx.params, Mapping):
            return await call_next(ctx)
        if ctx.method == "tools/call":
            refusal = _tool_refusal(ctx.params, scope)
            if refusal is not None:
                return CallToolResult(
                    content=[TextContent(type="text", text=f"Error: {refusal}")], is_error=True
                )
        elif ctx.method == "resources/read":
            uri = str(ctx.params.get("uri", ""))
            if uri.startswith(_SESSION_RESOURCE) and _session_of(uri) != scope:
                raise MCPError(INVALID_PARAMS, _words(scope, "read another session"))
        return await call_next(ctx)


def _tool_refusal(params: Mapping[str, Any], scope: str) -> str | None:
    name = str(params.get("name", ""))
    arguments = params.get("arguments")
    given = arguments.get("session_id") if isinstance(arguments, Mapping) else None
    if name in BEYOND_ONE_SESSION:
        return f"{name}: {_words(scope, 'list, start or claim sessions')}"
    if not isinstance(given, str) or not given or not scope.startswith(given):
        return f"{name}: {_words(scope, 'act on another session')}"
    return None


def _words(scope: str, what: str) -> str:
    return (
        f"this agent works for a phasegate worker on session {scope} only and may not {what}; "
        f"nothing was done; call get_session_status(session_id={scope!r})"
    )


def _session_of(uri: str) -> str:
    return uri[len(_SESSION_RESOURCE) :].split("/", 1)[0]


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
