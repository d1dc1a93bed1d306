"""Building the phasegate MCP server: one `MCPServer` for stdio and streamable HTTP."""

from __future__ import annotations

import os
from collections.abc import Callable

from mcp.server import MCPServer

from phasegate.domain.principal import Principal
from phasegate.entrypoints.mcp.calls import ChangeFeed, Deps
from phasegate.entrypoints.mcp.resources import register_resources
from phasegate.entrypoints.mcp.tools import register_tools
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
    run_wait_s: float | None = None,
) -> MCPServer:
    """The MCP server whose tools act as `principal()` on `orch`."""
    if run_wait_s is None:
        run_wait_s = float(os.environ.get("PHASEGATE_MCP_RUN_WAIT_S", "45"))
    version = _version()
    mcp = MCPServer(
        "phasegate",
        title="phasegate",
        instructions=INSTRUCTIONS,
        version=version,
        log_level="WARNING",
    )
    deps = Deps(orch, principal, feed, run_wait_s)
    register_tools(mcp, deps)
    register_resources(mcp, deps)
    return mcp


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("phasegate")
    except PackageNotFoundError:
        return "0"
