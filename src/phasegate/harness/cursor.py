"""Cursor: `.cursor/mcp.json`, its documented project file; nothing else of Cursor's is verified.

So phasegate writes the server entry only: no rules (none verified) and no token (how Cursor
hands its environment to a server is not verified either: `phasegate mcp` acts as stdio-agent).
"""

from __future__ import annotations

from pathlib import Path

from phasegate.harness.files import SHARED, Change, edit_json
from phasegate.harness.server import AgentToken, McpServer, add_server

CONFIG = ".cursor/mcp.json"


def changes(root: Path, server: McpServer, config: Path, token: AgentToken | None) -> list[Change]:
    return [edit_json(root, CONFIG, SHARED, add_server(server.entry(), server))]


def token_line(token: AgentToken | None) -> str:
    return (
        "agent token: none written; phasegate mcp acts as stdio-agent (how Cursor passes its "
        "environment on is not verified)"
    )


def todo(root: Path) -> tuple[str, ...]:
    return ("check that phasegate is enabled in Cursor's MCP settings",)


def gaps(where: str) -> tuple[str, ...]:
    return (
        "phasegate writes no Cursor rules (none verified): its agent can read .phasegate/",
        f"and {where}, by its own tools or its shell",
    )
