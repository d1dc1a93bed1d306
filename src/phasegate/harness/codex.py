"""Codex: `.codex/config.toml`, its only project file (read in a trusted project only).

So it gets portable content only: `[mcp_servers.phasegate]` with `required = true` (without it
`codex exec` sends its first request before phasegate's tools are there), start-up and tool
timeouts, and `env_vars`, because Codex hands a server only the variables it names: the agent's
token comes from the user's shell. And `sandbox_mode`, unless the file chose a sandbox.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from phasegate.harness.files import Change, edit_toml_table
from phasegate.harness.server import SERVER_ENV, TOKEN_ENV, AgentToken, McpServer, merge_server

CONFIG = ".codex/config.toml"
_SANDBOX = (
    "# phasegate init: commands may write only inside this project\n"
    'sandbox_mode = "workspace-write"\n'
)
_COMMENTS = {
    "env_vars": "Codex passes a server only the variables named here",
    "required": "without it codex exec may start before phasegate's tools are there",
}


def changes(root: Path, server: McpServer, config: Path, token: AgentToken | None) -> list[Change]:
    """Codex gets no token: it has no per-user project file (see `token_line`)."""
    wanted = {
        **server.entry(),
        "env_vars": list(SERVER_ENV),
        "required": True,
        "startup_timeout_sec": server.startup_timeout_s,
        "tool_timeout_sec": server.tool_timeout_s,
    }
    detail = (
        f"required = true, startup_timeout_sec = {server.startup_timeout_s}, "
        f"tool_timeout_sec = {server.tool_timeout_s}, env_vars"
    )

    def sandbox(data: dict[str, Any]) -> tuple[str, list[str]]:
        if "sandbox_mode" not in data and "default_permissions" not in data:
            return _SANDBOX, ['set sandbox_mode = "workspace-write"']
        if data.get("sandbox_mode") not in (None, "workspace-write", "read-only"):
            return "", [f"kept your sandbox_mode = {data['sandbox_mode']!r}"]
        return "", []

    def merge(servers: dict[str, Any]) -> list[str]:
        return merge_server(servers, wanted, server, "mcp_servers", detail)

    keys = ("mcp_servers", "phasegate")
    return [edit_toml_table(root, CONFIG, keys, sandbox, merge, _COMMENTS)]


def has_sandbox(root: Path) -> bool:
    try:
        data = tomllib.loads((root / CONFIG).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False
    if "default_permissions" in data:
        return bool(data["default_permissions"] != ":danger-full-access")
    return data.get("sandbox_mode") in ("workspace-write", "read-only")


def token_line(token: AgentToken | None) -> str:
    return (
        "agent token: none written (Codex has no per-user project file): phasegate mcp "
        f"acts as stdio-agent, or as the agent whose token you export as {TOKEN_ENV}"
    )


def todo(root: Path) -> tuple[str, ...]:
    return (
        f"trust this project in codex once, or it ignores {CONFIG}: run codex here",
        f'and trust it (or add [projects."{root}"] trust_level = "trusted" to '
        "~/.codex/config.toml)",
    )


def gaps(where: str) -> tuple[str, ...]:
    return (
        f"its sandbox stops writes outside the project, not reads of {where} or .phasegate/",
        f"it reads {CONFIG} only in a trusted project: run it with -s workspace-write",
    )
