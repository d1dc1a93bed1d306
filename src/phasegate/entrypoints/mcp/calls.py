"""How a tool calls the orchestrator: in a thread, as the caller's principal, errors as ToolError.

This is the one place phasegate's errors become MCP tool errors. Each text
says what happened, the phase the session is in, and the tools the agent may
call now (never the workflow's human actions), so a model can correct itself
from the text alone; errors.py gives every failed call its `Error:` line.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import anyio.to_thread
from mcp.server.mcpserver.exceptions import ToolError

from phasegate.domain.principal import Principal
from phasegate.entrypoints.draining import Draining
from phasegate.entrypoints.mcp.errors import INTERNAL
from phasegate.entrypoints.mcp.guidance import agent_tools
from phasegate.entrypoints.mcp.runs import TestRuns
from phasegate.errors import AlreadyActive, PhasegateError
from phasegate.orchestrator import Orchestrator
from phasegate.store.database import storage_error
from phasegate.workspace import WorkspaceError

log = logging.getLogger("phasegate.mcp")
T = TypeVar("T")
# The domain's messages end with the workflow's actions for the CLI's humans
# (`Allowed now: submit_tests, pause, cancel`); an agent gets its tools instead.
_WORKFLOW_ACTIONS = re.compile(r"[.;,]? Allowed now: [\w, ]*$")

#: The principal of the current HTTP request, set by the auth middleware.
current_principal: ContextVar[Principal | None] = ContextVar(
    "phasegate_mcp_principal", default=None
)


class ChangeFeed(Protocol):
    """Wakes waiters when a session changes (the dashboard's EventFeed fits this)."""

    async def wait_for_change(
        self, session_id: str, after_version: int, timeout_s: float
    ) -> bool: ...


@dataclass
class Deps:
    """What every tool needs: the orchestrator, who is calling, and this process's runs."""

    orch: Orchestrator
    principal_source: Callable[[], Principal | None]
    feed: ChangeFeed | None = None
    run_wait_s: float = 45.0
    runs: TestRuns = field(default_factory=TestRuns)
    draining: Draining = field(default_factory=Draining)  # set when the server shuts down

    def principal(self) -> Principal:
        principal = self.principal_source()
        if principal is None:
            raise ToolError(
                "not authenticated: connect with an agent token "
                "(Authorization: Bearer <token>, or PHASEGATE_AGENT_TOKEN on stdio)"
            )
        return principal

    async def call(
        self, fn: Callable[..., T], *args: Any, session_ref: str | None = None, **kwargs: Any
    ) -> T:
        """Run a blocking orchestrator call in a worker thread; errors become ToolErrors."""
        try:
            return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))
        except Exception as exc:
            raise await self.tool_error(exc, session_ref) from exc

    async def tool_error(self, exc: BaseException, session_ref: str | None) -> ToolError:
        """The agent-facing error for `exc`, naming the session's phase and what it may call."""
        if isinstance(exc, ToolError):
            return exc
        if isinstance(exc, PhasegateError):
            text = _WORKFLOW_ACTIONS.sub("", exc.message)
            if isinstance(exc, AlreadyActive) and not session_ref:
                session_ref = exc.session_id
        elif isinstance(exc, WorkspaceError):
            text = str(exc)
        elif (storage := storage_error(exc)) is not None:  # one the store didn't translate
            text = storage.message
        else:
            log.exception("unexpected error in an MCP tool")
            text = INTERNAL
        where = await anyio.to_thread.run_sync(self._where, session_ref)
        return ToolError(f"{text}{where}")

    def _where(self, session_ref: str | None) -> str:
        if session_ref:
            try:
                session = self.orch.get(session_ref)
            except PhasegateError:
                session = None
            if session is not None:
                wf = self.orch.workflow_of(session)
                paused = " (paused)" if session.paused else ""
                return (
                    f" [session {session.short_id} is in phase {session.phase}{paused}; "
                    f"you may call: {', '.join(agent_tools(wf, session))}]"
                )
        return " [call list_sessions to see the sessions, their phases and what you may call]"
