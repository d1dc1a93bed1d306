"""What `phasegate init --agent` writes into each agent harness's own project config.

For Claude Code, Codex and Gemini CLI: where the harness registers MCP
servers, the rules it enforces itself to keep its agent away from
phasegate's state (`.phasegate/`: the database, the dashboard's secret) and
from the human's config directory (credentials, audit keys), and, as
plainly, what those rules can't stop. Files are merged: other entries stay,
nothing is added twice, and a file phasegate can't parse is left alone with
a note. Pure file reading and writing: the CLI prints the lines, and
`deny_rules_status` is there for `phasegate doctor`.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from phasegate.credentials import config_dir as user_config_dir

HARNESSES = {"claude": "Claude Code", "codex": "Codex", "gemini": "Gemini CLI"}
#: Files or folders whose presence says a project uses the harness (for `deny_rules_status`).
MARKERS = {
    "claude": (".claude", "CLAUDE.md"),
    "codex": (".codex",),
    "gemini": (".gemini", "GEMINI.md"),
}
STATE = "./.phasegate"
SHELL_DENIED = ("phasegate", "sqlite3")  # deciding a gate as the human; reading the database
GEMINI_IGNORE = "/.phasegate/"
GUARDED = "only guarded mode (phasegate serve --guarded, as its own user) closes these gaps"


@dataclass(frozen=True)
class McpServer:
    """How a harness starts phasegate's MCP server."""

    command: str
    args: tuple[str, ...] = ("mcp", "--project", ".")
    tool_timeout_s: int = 660  # a tool call can wait for a whole test run


@dataclass(frozen=True)
class HarnessSetup:
    """What `set_up` wrote for one harness (a line per file), and what the harness can't enforce."""

    harness: str
    title: str
    wrote: tuple[str, ...]
    gaps: tuple[str, ...]


class _Unexpected(Exception):
    """A config file whose shape phasegate won't guess at (its message says which part)."""


def set_up(harness: str, root: Path, server: McpServer, config: Path | None = None) -> HarnessSetup:
    """Register phasegate's MCP server with `harness` in `root` and write its deny rules."""
    config = Path(os.path.abspath(config or user_config_dir()))
    wrote: list[str] = []
    if harness == "claude":
        wrote.append(register_mcp_json(root, server))
        wrote.append(_edit_json(root, ".claude/settings.json", _claude_edit(config)))
    elif harness == "codex":
        wrote.append(_edit_codex(root, server))
    elif harness == "gemini":
        wrote.append(_edit_json(root, ".gemini/settings.json", _gemini_edit(server)))
        wrote.append(_add_line(root, ".geminiignore", GEMINI_IGNORE))
    else:
        raise ValueError(f"unknown harness {harness!r}")
    return HarnessSetup(harness, HARNESSES[harness], tuple(wrote), _gaps(harness, config))


def register_mcp_json(root: Path, server: McpServer) -> str:
    """Add phasegate to the project's `.mcp.json` (Claude Code and others read it)."""

    def edit(data: dict[str, Any]) -> list[str]:
        servers = _table(data, "mcpServers")
        if "phasegate" in servers:
            return []
        servers["phasegate"] = {"command": server.command, "args": list(server.args)}
        return ["added the phasegate MCP server (agents: `phasegate mcp`)"]

    return _edit_json(root, ".mcp.json", edit)


def deny_rules_status(root: Path, config: Path | None = None) -> dict[str, bool | None]:
    """Per harness: are phasegate's deny rules in place? None if the project doesn't use it."""
    config = Path(os.path.abspath(config or user_config_dir()))
    checks: dict[str, Callable[[], bool]] = {
        "claude": lambda: _claude_has_rules(root, config),
        "codex": lambda: _codex_has_sandbox(root),
        "gemini": lambda: _gemini_has_rules(root),
    }
    return {
        name: check() if any((root / m).exists() for m in MARKERS[name]) else None
        for name, check in checks.items()
    }


# --- Claude Code ----------------------------------------------------------------------------


def claude_deny_rules(config: Path) -> list[str]:
    """`permissions.deny` rules: Read and Edit (which covers Write) of both places, and the
    shell commands that would decide a gate or open the database."""
    places = (STATE, _claude_path(config))
    return [f"{tool}({place}/**)" for place in places for tool in ("Read", "Edit")] + [
        f"Bash({command}:*)" for command in SHELL_DENIED
    ]


def _claude_path(path: Path) -> str:
    """A path as a Claude Code rule spells it: `~/…` in HOME, else `//…` (absolute)."""
    home = Path.home()
    if path != home and path.is_relative_to(home):
        return "~/" + path.relative_to(home).as_posix()
    return "/" + path.as_posix()


def _claude_edit(config: Path) -> Callable[[dict[str, Any]], list[str]]:
    def edit(data: dict[str, Any]) -> list[str]:
        rules = _add_all(_list(_table(data, "permissions"), "deny"), claude_deny_rules(config))
        filesystem = _table(_table(data, "sandbox"), "filesystem")
        places = [STATE, _claude_path(config)]
        paths = sum(_add_all(_list(filesystem, key), places) for key in ("denyRead", "denyWrite"))
        if not rules + paths:
            return []
        return [f"added {rules} rule(s) to permissions.deny, {paths} to sandbox.filesystem"]

    return edit


def _claude_has_rules(root: Path, config: Path) -> bool:
    deny: set[str] = set()
    for name in ("settings.json", "settings.local.json"):
        data = _read_json(root / ".claude" / name)
        permissions = data.get("permissions") if isinstance(data, dict) else None
        found = permissions.get("deny") if isinstance(permissions, dict) else None
        deny |= (
            {rule for rule in found if isinstance(rule, str)} if isinstance(found, list) else set()
        )
    spellings = {_claude_path(config), "/" + config.as_posix()}
    needed = [r for r in claude_deny_rules(config) if _claude_path(config) not in r]
    return set(needed) <= deny and all(
        any(f"{tool}({s}/**)" in deny for s in spellings) for tool in ("Read", "Edit")
    )


# --- Codex ------------------------------------------------------------------------------------

_CODEX_SANDBOX = (
    "# phasegate init: commands may write only inside this project\n"
    'sandbox_mode = "workspace-write"\n'
)


def _edit_codex(root: Path, server: McpServer) -> str:
    """`.codex/config.toml`: `[mcp_servers.phasegate]`, and `sandbox_mode` unless one is chosen."""
    rel = ".codex/config.toml"
    path = root / rel
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    try:
        data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        return f"{rel}: left alone, it is not valid TOML ({exc}); add phasegate by hand"
    done, head, tail = [], "", ""
    if "sandbox_mode" not in data and "default_permissions" not in data:
        head = _CODEX_SANDBOX
        done.append('set sandbox_mode = "workspace-write"')
    elif data.get("sandbox_mode") not in (None, "workspace-write", "read-only"):
        done.append(f"kept your sandbox_mode = {data['sandbox_mode']!r}")
    servers = data.get("mcp_servers", {})
    if not isinstance(servers, dict):
        return f"{rel}: left alone, its mcp_servers is not a table; add phasegate by hand"
    if "phasegate" not in servers:
        tail = _codex_server_table(server)
        done.append("added the phasegate MCP server")
    if not head and not tail:
        return f"{rel}: already set up" + (f" ({done[0]})" if done else "")
    body = text if not text or text.endswith("\n") else text + "\n"
    new = head + ("\n" if head and body else "") + body + ("\n" if body and tail else "") + tail
    try:
        if tail and "phasegate" not in tomllib.loads(new).get("mcp_servers", {}):
            raise ValueError("the result lost the server")
    except (tomllib.TOMLDecodeError, ValueError) as exc:
        return f"{rel}: left alone, phasegate's table wouldn't merge ({exc}); add it by hand"
    _write(path, new)
    return f"{rel}: " + "; ".join(done)


def _codex_server_table(server: McpServer) -> str:
    def string(value: str) -> str:
        return json.dumps(value, ensure_ascii=False)  # a valid TOML basic string too

    args = ", ".join(string(a) for a in server.args)
    return (
        "[mcp_servers.phasegate]\n"
        f"command = {string(server.command)}\n"
        f"args = [{args}]\n"
        "required = true  # without it codex exec may start before phasegate's tools are there\n"
        "startup_timeout_sec = 60\n"
        f"tool_timeout_sec = {server.tool_timeout_s}\n"
    )


def _codex_has_sandbox(root: Path) -> bool:
    try:
        data = tomllib.loads((root / ".codex" / "config.toml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False
    if "default_permissions" in data:
        return bool(data["default_permissions"] != ":danger-full-access")
    return data.get("sandbox_mode") in ("workspace-write", "read-only")


# --- Gemini CLI -------------------------------------------------------------------------------

GEMINI_EXCLUDED = tuple(f"run_shell_command({command})" for command in SHELL_DENIED)


def _gemini_edit(server: McpServer) -> Callable[[dict[str, Any]], list[str]]:
    def edit(data: dict[str, Any]) -> list[str]:
        done = []
        servers = _table(data, "mcpServers")
        if "phasegate" not in servers:
            servers["phasegate"] = {
                "command": server.command,
                "args": list(server.args),
                "timeout": server.tool_timeout_s * 1000,
                "trust": True,  # its tools decide no gate; headless runs can't confirm a call
            }
            done.append("added the phasegate MCP server")
        # Settings before Gemini CLI's v2 format had a top-level excludeTools.
        excluded = _list(data, "excludeTools") if "excludeTools" in data else None
        excluded = excluded if excluded is not None else _list(_table(data, "tools"), "exclude")
        added = _add_all(excluded, GEMINI_EXCLUDED)
        if added:
            done.append(f"excluded {added} shell command(s) (tools.exclude)")
        return done

    return edit


def _gemini_has_rules(root: Path) -> bool:
    data = _read_json(root / ".gemini" / "settings.json")
    if not isinstance(data, dict):
        return False
    tools = data.get("tools")
    excluded = data.get("excludeTools") or (tools.get("exclude") if isinstance(tools, dict) else [])
    ignore = root / ".geminiignore"
    ignored = ignore.exists() and GEMINI_IGNORE in ignore.read_text(encoding="utf-8").split()
    return isinstance(excluded, list) and all(e in excluded for e in GEMINI_EXCLUDED) and ignored


# --- what each harness can't enforce ----------------------------------------------------------


def _gaps(harness: str, config: Path) -> tuple[str, ...]:
    where = _claude_path(config).removeprefix("/")  # ~/… in HOME, else the absolute path
    if harness == "claude":
        return (
            f"its deny rules bind Read/Edit, not programs Bash runs: a script can read {where}",
            "Bash(phasegate:*) stops the plain command, not phasegate started another way",
            "its sandbox is off until you turn it on (/sandbox); then Bash loses those paths too",
        )
    if harness == "codex":
        return (
            f"its sandbox stops writes outside the project, not reads of {where} or .phasegate/",
            "it reads .codex/config.toml only in a trusted project: run it with -s workspace-write",
        )
    return (
        f"tools.exclude blocks only phasegate and sqlite3: other programs can read {where}",
        ".geminiignore hides .phasegate/ from its file tools, not from its shell",
        "its sandbox (tools.sandbox: Docker or Podman) is off unless you turn it on",
    )


# --- merging files ----------------------------------------------------------------------------


def _edit_json(root: Path, rel: str, edit: Callable[[dict[str, Any]], list[str]]) -> str:
    """Apply `edit` to the JSON object in `root/rel` (new if missing); one line on what happened."""
    path = root / rel
    try:
        data = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    except (OSError, ValueError) as exc:
        why = str(exc).splitlines()[0]
        return f"{rel}: left alone, it is not valid JSON ({why}); add phasegate's entries by hand"
    try:
        if not isinstance(data, dict):
            raise _Unexpected("it is not a JSON object")
        done = edit(data)
    except _Unexpected as exc:
        return f"{rel}: left alone, {exc}; add phasegate's entries by hand"
    if not done:
        return f"{rel}: already set up"
    _write(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    return f"{rel}: " + "; ".join(done)


def _add_line(root: Path, rel: str, line: str) -> str:
    path = root / rel
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    if line in text.splitlines():
        return f"{rel}: already set up"
    _write(path, text + ("\n" if text and not text.endswith("\n") else "") + line + "\n")
    return f"{rel}: added {line}"


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _table(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.setdefault(key, {})
    if not isinstance(value, dict):
        raise _Unexpected(f"its {key} is not an object")
    return value


def _list(data: dict[str, Any], key: str) -> list[Any]:
    value = data.setdefault(key, [])
    if not isinstance(value, list):
        raise _Unexpected(f"its {key} is not a list")
    return value


def _add_all(items: list[Any], new: tuple[str, ...] | list[str]) -> int:
    """Append the entries of `new` not in `items` yet; how many were added."""
    missing = [entry for entry in new if entry not in items]
    items.extend(missing)
    return len(missing)


def _write(path: Path, text: str) -> None:
    """Replace `path` whole (a temporary file renamed over it), keeping its permissions."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".phasegate-tmp")
    tmp.write_text(text, encoding="utf-8")
    if path.exists():
        os.chmod(tmp, path.stat().st_mode & 0o7777)
    os.replace(tmp, path)
