"""What `phasegate init --agent` writes into each agent harness's config, and where.

For Claude Code, Codex, Gemini CLI and Cursor: where the harness registers
MCP servers, the rules it enforces itself to keep its agent away from
phasegate's state (`.phasegate/`: the database, the dashboard's secret) and
from the human's config directory (credentials, audit keys), and, as plainly,
what those rules can't stop. A file meant to be committed gets only portable
content: the command by a name PATH finds, relative paths, no token. What is
one user's (the agent's token, approving the server, a start-up allowance, an
absolute path) goes in the harness's local file, kept out of git. Files are
merged: other entries stay, nothing is added twice; a file phasegate can't
parse, or of a shape it won't guess at, is refused before anything is written
(`check`). One module per harness; `files` merges JSON and TOML; `server` is
phasegate's entry. The CLI prints the lines; `deny_rules_status` is for
`phasegate doctor`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from phasegate.credentials import config_dir as user_config_dir
from phasegate.harness import claude, codex, cursor, gemini
from phasegate.harness.files import LOCAL, Change, keep_out_of_git, write
from phasegate.harness.server import AgentToken, McpServer, find_launcher

__all__ = [
    "GUARDED",
    "HARNESSES",
    "TOKEN_FILES",
    "AgentToken",
    "HarnessSetup",
    "McpServer",
    "check",
    "deny_rules_status",
    "find_launcher",
    "register_mcp_json",
    "set_up",
    "stored_agent_token",
]

HARNESSES = {"claude": "Claude Code", "codex": "Codex", "gemini": "Gemini CLI", "cursor": "Cursor"}
#: Files or folders whose presence says a project uses the harness (for `deny_rules_status`).
MARKERS = {
    "claude": (".claude", "CLAUDE.md"),
    "codex": (".codex",),
    "gemini": (".gemini", "GEMINI.md"),
}
#: The harnesses with a per-user project file, where init puts the agent's token.
TOKEN_FILES = {"claude": claude.LOCAL_FILE}
GUARDED = "only guarded mode (phasegate serve --guarded, as its own user) closes these gaps"


class _Harness(Protocol):
    """What each harness's module says: its files' changes, where the token went, what the user
    must still do, what it can't enforce (`where`: the config directory, as the user knows it)."""

    def changes(
        self, root: Path, server: McpServer, config: Path, token: AgentToken | None
    ) -> list[Change]: ...

    def token_line(self, token: AgentToken | None) -> str: ...

    def todo(self, root: Path) -> tuple[str, ...]: ...

    def gaps(self, where: str) -> tuple[str, ...]: ...


_MODULES: dict[str, _Harness] = {
    "claude": claude,
    "codex": codex,
    "gemini": gemini,
    "cursor": cursor,
}


@dataclass(frozen=True)
class HarnessSetup:
    """What `set_up` did for one harness: a line per file, where the agent's token went, what the
    user must still do, and what the harness can't enforce."""

    harness: str
    title: str
    wrote: tuple[str, ...]
    token: str
    todo: tuple[str, ...]
    gaps: tuple[str, ...]


def check(harnesses: Sequence[str], root: Path, config: Path | None = None) -> None:
    """Refuse (ConfigError, one line naming the file and the key) if a file `set_up` would edit
    can't be merged; reads only."""
    server, token = McpServer(), AgentToken("check", "pga_check", new=False)
    claude.mcp_json(root, server)
    for name in harnesses:
        _MODULES[name].changes(root, server, _config(config), token)


def set_up(
    harness: str,
    root: Path,
    server: McpServer,
    token: AgentToken | None = None,
    config: Path | None = None,
) -> HarnessSetup:
    """Register phasegate's MCP server with `harness` in `root`, its deny rules, and, where the
    harness has a per-user file, the agent's `token`."""
    config, module = _config(config), _MODULES[harness]
    wrote = _apply(root, module.changes(root, server, config, token))
    where = claude.claude_path(config).removeprefix("/")  # ~/… in HOME, else the absolute path
    return HarnessSetup(
        harness,
        HARNESSES[harness],
        wrote,
        module.token_line(token),
        module.todo(root),
        module.gaps(where),
    )


def register_mcp_json(root: Path, server: McpServer) -> str:
    """Add phasegate to the project's `.mcp.json` (Claude Code and others read it): one line."""
    return _apply(root, [claude.mcp_json(root, server)])[0]


def stored_agent_token(root: Path, harness: str) -> str | None:
    """The agent token the harness's per-user file holds for phasegate's server, if any."""
    return claude.stored_token(root) if harness in TOKEN_FILES else None


def deny_rules_status(root: Path, config: Path | None = None) -> dict[str, bool | None]:
    """Per harness: are phasegate's deny rules in place? None if the project doesn't use it."""
    config = _config(config)
    checks: dict[str, Callable[[], bool]] = {
        "claude": lambda: claude.has_rules(root, config),
        "codex": lambda: codex.has_sandbox(root),
        "gemini": lambda: gemini.has_rules(root),
    }
    return {
        name: check() if any((root / m).exists() for m in MARKERS[name]) else None
        for name, check in checks.items()
    }


def _config(config: Path | None) -> Path:
    return Path(os.path.abspath(config or user_config_dir()))


def _apply(root: Path, changes: list[Change]) -> tuple[str, ...]:
    """Write the changed files (a per-user one only once git ignores it); a line for each."""
    lines: list[str] = []
    for change in changes:
        if change.scope == LOCAL:
            lines += keep_out_of_git(root, change.rel)
        if change.text is not None:
            write(root, change.rel, change.text, private=change.scope == LOCAL)
        lines.append(change.line())
    return tuple(lines)
