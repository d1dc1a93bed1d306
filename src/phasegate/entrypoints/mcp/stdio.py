"""`phasegate mcp`: the MCP server on stdin/stdout for a local agent.

With a server URL (`[server] url` or PHASEGATE_SERVER_URL) it opens nothing of
the project's state and relays to that server instead (see bridge.py).

It answers the handshake first and opens the rest behind it. Agent harnesses
give a server a few seconds (Codex 10 s; Claude Code drops one that misses
MCP_TIMEOUT) and `import mcp` takes most of them, so `initialize` (and `ping`,
`server/discover`) waits for nothing of phasegate's own. The database and its
migrations, the stdio agent's principal and the tools open in a thread while
the SDK serves, and every other request waits for them; the automatic test
runner and the notifier start next. If opening fails, the requests waiting for
it are answered with the reason, and the process exits with it in one line on
stderr, as when it opened everything before answering.

Nothing but protocol messages may reach stdout: logging goes to stderr, and
while the SDK serves it points file descriptor 1 at stderr, so a stray print
or a child process cannot corrupt the stream (test runs capture their own
output through pipes anyway).
"""

from __future__ import annotations

import logging
import os
import sys
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp.types import INTERNAL_ERROR

from phasegate.domain.principal import Principal, PrincipalKind
from phasegate.entrypoints.mcp.bridge import TOKEN_ENV, serve_bridge
from phasegate.entrypoints.mcp.server import add_tools, new_server
from phasegate.errors import Conflict, Unauthenticated

if TYPE_CHECKING:
    from phasegate.config import Project
    from phasegate.orchestrator import Orchestrator
    from phasegate.services import Background

STDIO_AGENT = "stdio-agent"
STDIO_ROLES = ("tester", "coder", "runner")
HANDSHAKE = frozenset({"initialize", "server/discover", "ping"})  # answered while phasegate opens
_ANSWERING_S = 0.5  # after a failed open: time for the waiting requests' answers to go out


def stdio_principal(orch: Orchestrator) -> Principal:
    """The local agent: PHASEGATE_AGENT_TOKEN's principal, else `stdio-agent` (made once)."""
    token = os.environ.get(TOKEN_ENV)
    if token:
        principal = orch.authenticate(token)
        if principal.is_human:
            raise Unauthenticated(
                f"{TOKEN_ENV} holds a human token; an agent must never act as "
                "a human. Create one with: phasegate token add --agent NAME "
                "--role tester --role coder --role runner"
            )
        return principal
    found = _by_name(orch, STDIO_AGENT)
    if found is not None:
        return found
    try:
        return orch.add_principal("agent", STDIO_AGENT, STDIO_ROLES)[0]
    except Conflict:  # another `phasegate mcp` created it first
        found = _by_name(orch, STDIO_AGENT)
        if found is None:
            raise Unauthenticated(
                f"the {STDIO_AGENT} principal is revoked; set {TOKEN_ENV} to an agent token"
            ) from None
        return found


def _by_name(orch: Orchestrator, name: str) -> Principal | None:
    from phasegate.store import queries as q

    with orch.db.read() as conn:
        row = q.principal_by_name(conn, name)
    if row is None or row.get("revoked_at") is not None:
        return None
    if row["kind"] != PrincipalKind.AGENT.value:
        raise Unauthenticated(f"principal {name!r} is a human; rename it or set {TOKEN_ENV}")
    return Principal(row["id"], row["name"], PrincipalKind(row["kind"]), tuple(row["roles"]))


def serve_stdio(project_dir: Path | None) -> None:
    """Serve MCP on stdio until the client hangs up: from the project, or through its server."""
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.WARNING,
        format="phasegate-mcp %(levelname)s %(name)s: %(message)s",
    )
    from phasegate.config import open_project

    project = open_project(project_dir)  # reads phasegate.toml only
    if project.server_url:
        serve_bridge(project.server_url, os.environ.get(TOKEN_ENV))
        return
    server = LocalServer(project)
    try:
        anyio.run(server.serve)
    finally:
        server.close()
    if server.failure is not None:
        raise server.failure  # one line on stderr and exit 1, as any command's error


class LocalServer:
    """The project's MCP server: the handshake at once, the tools once phasegate is open."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self.mcp = new_server()
        self.mcp.middleware.append(self._hold_until_open)
        self.orch: Orchestrator | None = None
        self.background: Background | None = None
        self.failure: Exception | None = None
        self._opened: anyio.Event | None = None

    async def serve(self) -> None:
        """Serve stdio while `open` runs in a thread; its failure ends the process."""
        self._opened = anyio.Event()
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(self._open_behind, self._opened)
            await self.mcp.run_stdio_async()

    async def _open_behind(self, opened: anyio.Event) -> None:
        try:
            await anyio.to_thread.run_sync(self.open)
            opened.set()
            await anyio.to_thread.run_sync(self.start_background)
        except Exception as exc:
            self.failure = exc
            opened.set()  # the requests waiting for phasegate get the reason (_hold_until_open)
            await anyio.sleep(_ANSWERING_S)
            # Cancelling the serving would end it only once the SDK's reader has its next
            # line (it reads in a thread that only input or a hang-up wakes), and a client
            # waiting for `tools/list` sends nothing more. So, the answers out, the process ends.
            print(f"phasegate: {_one_line(exc)}", file=sys.stderr, flush=True)
            os._exit(1)

    def open(self) -> None:
        """The database (migrated), the agent and the tools: what requests wait for."""
        from phasegate.orchestrator import Orchestrator

        self.orch = Orchestrator.open(self.project)
        principal = stdio_principal(self.orch)
        add_tools(self.mcp, self.orch, lambda: principal, transport="stdio")

    def start_background(self) -> None:
        """The automatic test runner and the notifier, as every long-running phasegate has."""
        from phasegate.services import Background

        assert self.orch is not None
        self.background = Background(self.orch).start()

    async def _hold_until_open(
        self, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        """Middleware: a request other than the handshake waits until `open` is done.

        The SDK composed this request's chain when it arrived, before `open` added
        the tools' own middleware (argument checks, `Error:` wording): a request
        that had to wait goes through those now, as one arriving later would.
        """
        opened = self._opened
        if ctx.request_id is None or ctx.method in HANDSHAKE or opened is None:
            return await call_next(ctx)
        if opened.is_set() and self.failure is None:
            return await call_next(ctx)
        await opened.wait()
        if self.failure is not None:
            raise MCPError(INTERNAL_ERROR, f"phasegate could not open: {_one_line(self.failure)}")
        mine = self.mcp.middleware.index(self._hold_until_open)
        for later in reversed(self.mcp.middleware[mine + 1 :]):
            call_next = partial(_through, later, call_next)
        return await call_next(ctx)

    def close(self) -> None:
        if self.background is not None:
            self.background.stop()
        if self.orch is not None:
            self.orch.close()


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


async def _through(
    middleware: Any, call_next: CallNext, ctx: ServerRequestContext[Any, Any]
) -> HandlerResult:
    return await middleware(ctx, call_next)  # type: ignore[no-any-return]
