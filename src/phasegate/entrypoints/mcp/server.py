"""Building the phasegate MCP server: one `MCPServer` for stdio and streamable HTTP."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from mcp.server import MCPServer

if TYPE_CHECKING:  # the tools and what they call are imported when they are added
    from phasegate.domain.principal import Principal
    from phasegate.entrypoints.draining import Draining
    from phasegate.entrypoints.mcp.calls import ChangeFeed
    from phasegate.orchestrator import Orchestrator

INSTRUCTIONS = """\
phasegate walks you through design → tests → human review → implementation → tests → human
review. Call get_session_status(session_id) first and follow its `next_action`. phasegate runs
the tests itself; only humans approve gates (wait_for_decision waits for them). The
drive_session prompt explains the whole flow."""


def build_server(
    orch: Orchestrator,
    principal: Callable[[], Principal | None],
    feed: ChangeFeed | None = None,
    *,
    transport: str = "http",
    run_wait_s: float | None = None,
    draining: Draining | None = None,
) -> MCPServer:
    """The MCP server whose tools act as `principal()` on `orch`."""
    mcp = new_server()
    add_tools(
        mcp, orch, principal, feed, transport=transport, run_wait_s=run_wait_s, draining=draining
    )
    return mcp


def new_server() -> MCPServer:
    """The server as the handshake shows it (name, version, instructions), still without tools.

    `phasegate mcp` answers `initialize` with it while the rest loads (stdio.py).
    """
    return MCPServer(
        "phasegate",
        title="phasegate",
        instructions=INSTRUCTIONS,
        version=_version(),
        log_level="WARNING",
    )


def add_tools(
    mcp: MCPServer,
    orch: Orchestrator,
    principal: Callable[[], Principal | None],
    feed: ChangeFeed | None = None,
    *,
    transport: str,
    run_wait_s: float | None = None,
    draining: Draining | None = None,
) -> None:
    """Add the tools and resources, acting as `principal()` on `orch`; events they write
    record the harness and `transport` (channel.py)."""
    from phasegate.entrypoints.mcp.calls import Deps
    from phasegate.entrypoints.mcp.channel import RecordChannel
    from phasegate.entrypoints.mcp.resources import register_resources
    from phasegate.entrypoints.mcp.scope import SessionScope
    from phasegate.entrypoints.mcp.tools import register_tools

    if run_wait_s is None:
        run_wait_s = float(os.environ.get("PHASEGATE_MCP_RUN_WAIT_S", "45"))
    deps = Deps(orch, principal, feed, run_wait_s)
    if draining is not None:  # the host server's: its shutdown ends long waits early
        deps.draining = draining
    mcp.middleware.append(SessionScope(principal))  # a job token stays on its session
    mcp.middleware.append(RecordChannel(transport, principal))
    register_tools(mcp, deps)
    register_resources(mcp, deps)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("phasegate")
    except PackageNotFoundError:
        return "0"
