"""`phasegate mcp`: the MCP server on stdin/stdout for a local agent.

With a server URL (`[server] url` or PHASEGATE_SERVER_URL) it opens nothing of
the project's state and relays to that server instead (see bridge.py).

Nothing but protocol messages may reach stdout: logging goes to stderr, and
while the SDK serves it points file descriptor 1 at stderr, so a stray print
or a child process cannot corrupt the stream (test runs capture their own
output through pipes anyway).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from phasegate.domain.principal import Principal, PrincipalKind
from phasegate.entrypoints.mcp.bridge import TOKEN_ENV, serve_bridge
from phasegate.errors import Conflict, Unauthenticated
from phasegate.orchestrator import Orchestrator

STDIO_AGENT = "stdio-agent"
STDIO_ROLES = ("tester", "coder", "runner")


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

    from phasegate.entrypoints.mcp.server import build_server
    from phasegate.services import Background

    orch = Orchestrator.open(project)
    background = Background(orch).start()  # pending test runs, notifications
    try:
        principal = stdio_principal(orch)
        build_server(orch, lambda: principal).run("stdio")
    finally:
        background.stop()
        orch.close()
