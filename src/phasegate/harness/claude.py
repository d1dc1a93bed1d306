"""Claude Code: `.mcp.json` and `.claude/settings.json` shared, the user's own in
`.claude/settings.local.json`.

A project server in `.mcp.json` waits for approval until the user's local file enables it
(`enabledMcpjsonServers`). That file's `env` reaches the server (Claude Code applies it to its
own environment, which a stdio server inherits), so the agent's token and the start-up
allowance (`MCP_TIMEOUT`, 30 s by default) go there.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from phasegate.harness.files import (
    LOCAL,
    SHARED,
    Change,
    add_all,
    edit_json,
    list_at,
    read_json,
    refusal,
    table_at,
    tracked_by_git,
)
from phasegate.harness.server import TOKEN_ENV, AgentToken, McpServer, add_server

STATE = "./.phasegate"
SHELL_DENIED = ("phasegate", "sqlite3")  # deciding a gate as the human; reading the database
LOCAL_FILE = ".claude/settings.local.json"


def mcp_json(root: Path, server: McpServer) -> Change:
    """phasegate in the project's `.mcp.json` (Claude Code and others read it)."""
    return edit_json(root, ".mcp.json", SHARED, add_server(server.entry(), server))


def changes(root: Path, server: McpServer, config: Path, token: AgentToken | None) -> list[Change]:
    """The deny rules shared; approval, token, start-up time and absolute paths local."""
    if token is not None and tracked_by_git(root, LOCAL_FILE):
        raise refusal(
            f"{LOCAL_FILE} is tracked by git, and init would put your agent token in it; "
            f"untrack it (git rm --cached {LOCAL_FILE})"
        )
    place = claude_path(config)  # `~/…` is the same for everyone; an absolute path is not
    shared, local = ([STATE, place], []) if place.startswith("~/") else ([STATE], [place])
    return [
        mcp_json(root, server),
        edit_json(root, ".claude/settings.json", SHARED, _deny(shared, shell=True)),
        edit_json(root, LOCAL_FILE, LOCAL, _local(local, server, token)),
    ]


def deny_rules(config: Path) -> list[str]:
    """`permissions.deny` rules: Read and Edit (which covers Write) of both places, and the
    shell commands that would decide a gate or open the database."""
    return _rules((STATE, claude_path(config)), shell=True)


def _rules(places: Sequence[str], shell: bool) -> list[str]:
    rules = [f"{tool}({place}/**)" for place in places for tool in ("Read", "Edit")]
    return rules + ([f"Bash({command}:*)" for command in SHELL_DENIED] if shell else [])


def claude_path(path: Path) -> str:
    """A path as a Claude Code rule spells it: `~/…` in HOME, else `//…` (absolute)."""
    home = Path.home()
    if path != home and path.is_relative_to(home):
        return "~/" + path.relative_to(home).as_posix()
    return "/" + path.as_posix()


def _deny(places: list[str], shell: bool) -> Callable[[dict[str, Any]], list[str]]:
    def edit(data: dict[str, Any]) -> list[str]:
        if not places:
            return []
        rules = add_all(list_at(data, "permissions", "deny"), _rules(places, shell))
        keys = ("denyRead", "denyWrite")
        paths = sum(add_all(list_at(data, "sandbox", "filesystem", key), places) for key in keys)
        if not rules + paths:
            return []
        return [f"added {rules} rule(s) to permissions.deny, {paths} to sandbox.filesystem"]

    return edit


def _local(
    places: list[str], server: McpServer, token: AgentToken | None
) -> Callable[[dict[str, Any]], list[str]]:
    """Approve the project's server for this user, hand it the token, give it time to start."""

    def edit(data: dict[str, Any]) -> list[str]:
        did = []
        if add_all(list_at(data, "enabledMcpjsonServers"), ["phasegate"]):
            did.append("enabled the phasegate server (enabledMcpjsonServers)")
        disabled = data.get("disabledMcpjsonServers")
        if isinstance(disabled, list) and "phasegate" in disabled:
            disabled.remove("phasegate")
            did.append("took phasegate out of disabledMcpjsonServers")
        env, names = table_at(data, "env"), []
        if token is not None and env.get(TOKEN_ENV) != token.token:
            env[TOKEN_ENV] = token.token
            names.append(f"{TOKEN_ENV} (agent {token.name})")
        if "MCP_TIMEOUT" not in env:
            env["MCP_TIMEOUT"] = str(server.startup_timeout_s * 1000)  # ms
            names.append(f"MCP_TIMEOUT={env['MCP_TIMEOUT']}")
        if names:
            did.append("set env " + ", ".join(names))
        return did + _deny(places, shell=False)(data)

    return edit


def stored_token(root: Path) -> str | None:
    """The agent token the user's local settings hand phasegate's server, if any."""
    data = read_json(root / LOCAL_FILE)
    env = data.get("env") if isinstance(data, dict) else None
    token = env.get(TOKEN_ENV) if isinstance(env, dict) else None
    return token if isinstance(token, str) and token else None


def has_rules(root: Path, config: Path) -> bool:
    deny: set[str] = set()
    for name in ("settings.json", "settings.local.json"):
        data = read_json(root / ".claude" / name)
        permissions = data.get("permissions") if isinstance(data, dict) else None
        found = permissions.get("deny") if isinstance(permissions, dict) else None
        deny |= (
            {rule for rule in found if isinstance(rule, str)} if isinstance(found, list) else set()
        )
    spellings = {claude_path(config), "/" + config.as_posix()}
    needed = [r for r in deny_rules(config) if claude_path(config) not in r]
    return set(needed) <= deny and all(
        any(f"{tool}({s}/**)" in deny for s in spellings) for tool in ("Read", "Edit")
    )


def token_line(token: AgentToken | None) -> str:
    if token is None:
        return "agent token: none written; phasegate mcp acts as stdio-agent"
    made = "new" if token.new else "kept"
    return f"agent token: {token.name} ({made}), in {LOCAL_FILE} (env {TOKEN_ENV})"


def todo(root: Path) -> tuple[str, ...]:
    return (
        f"nothing: claude starts phasegate's server, approved for you in {LOCAL_FILE}",
        "a teammate runs phasegate init --agent claude once in their clone (or approves it)",
    )


def gaps(where: str) -> tuple[str, ...]:
    return (
        f"its deny rules bind Read/Edit, not programs Bash runs: a script can read {where}",
        "Bash(phasegate:*) stops the plain command, not phasegate started another way",
        "its sandbox is off until you turn it on (/sandbox); then Bash loses those paths too",
    )
