"""Gemini CLI: `.gemini/settings.json`, its only project file, and `.geminiignore`.

Portable content only: Gemini CLI strips variables whose names hold TOKEN or KEY from a server's
environment unless the server's `env` names them, and expands `$NAME` there from the user's
shell, so the agent's token is named by reference, never written. It starts no stdio server in a
folder the user hasn't trusted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from phasegate.harness.files import SHARED, Change, add_all, add_line, edit_json, list_at, read_json
from phasegate.harness.server import SERVER_ENV, TOKEN_ENV, AgentToken, McpServer, add_server

SETTINGS = ".gemini/settings.json"
IGNORE = "/.phasegate/"
EXCLUDED = ("run_shell_command(phasegate)", "run_shell_command(sqlite3)")
#: The server's variables Gemini CLI would strip (names with TOKEN or KEY), passed on by name.
PASSED_ENV = tuple(name for name in SERVER_ENV if "TOKEN" in name or "KEY" in name)


def changes(root: Path, server: McpServer, config: Path, token: AgentToken | None) -> list[Change]:
    """Gemini CLI gets no token: it has no per-user project file (see `token_line`)."""
    wanted = {
        **server.entry(),
        "env": {name: f"${name}" for name in PASSED_ENV},  # empty when the shell has none
        "timeout": server.tool_timeout_s * 1000,
        "trust": True,  # its tools decide no gate; headless runs can't confirm a call
    }

    def exclude(data: dict[str, Any]) -> list[str]:
        # Settings before Gemini CLI's v2 format had a top-level excludeTools.
        key = ("excludeTools",) if "excludeTools" in data else ("tools", "exclude")
        added = add_all(list_at(data, *key), EXCLUDED)
        return [f"excluded {added} shell command(s) ({'.'.join(key)})"] if added else []

    return [
        edit_json(root, SETTINGS, SHARED, add_server(wanted, server, exclude)),
        add_line(root, ".geminiignore", IGNORE),
    ]


def has_rules(root: Path) -> bool:
    data = read_json(root / SETTINGS)
    if not isinstance(data, dict):
        return False
    tools = data.get("tools")
    excluded = data.get("excludeTools") or (tools.get("exclude") if isinstance(tools, dict) else [])
    ignore = root / ".geminiignore"
    ignored = ignore.exists() and IGNORE in ignore.read_text(encoding="utf-8").split()
    return isinstance(excluded, list) and all(e in excluded for e in EXCLUDED) and ignored


def token_line(token: AgentToken | None) -> str:
    return (
        "agent token: none written (Gemini CLI has no per-user project file): phasegate mcp "
        f"acts as stdio-agent, or as the agent whose token you export as {TOKEN_ENV}"
    )


def todo(root: Path) -> tuple[str, ...]:
    return (
        "trust this folder in gemini once, or it starts no stdio server: run gemini here and "
        "trust it (headless: --skip-trust)",
    )


def gaps(where: str) -> tuple[str, ...]:
    return (
        f"tools.exclude blocks only phasegate and sqlite3: other programs can read {where}",
        ".geminiignore hides .phasegate/ from its file tools, not from its shell",
        "its sandbox (tools.sandbox: Docker or Podman) is off unless you turn it on",
    )
