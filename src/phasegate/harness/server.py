"""How a harness starts phasegate's MCP server, and phasegate's entry in a harness's config.

The command is a name PATH finds (`phasegate`, else `python3 -m phasegate`), never a path into
one checkout's venv: the entry goes in files the team shares.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from phasegate.harness.files import Unexpected, kind_of, table_at

TOKEN_ENV = "PHASEGATE_AGENT_TOKEN"  # who `phasegate mcp` acts as (see entrypoints/mcp/bridge.py)
#: What `phasegate mcp` reads from its environment: Codex passes a server only what is named.
SERVER_ENV = (
    TOKEN_ENV,
    "PHASEGATE_DATABASE_URL",
    "PHASEGATE_SERVER_URL",
    "PHASEGATE_STATE_DIR",
    "PHASEGATE_CONFIG_DIR",
    "XDG_CONFIG_HOME",
    "PHASEGATE_AUDIT_KEY",
    "PHASEGATE_AUDIT_KEY_FILE",
    "PHASEGATE_BWRAP",
)


@dataclass(frozen=True)
class McpServer:
    """How a harness starts phasegate's MCP server: by a name PATH finds, in its project."""

    launcher: tuple[str, ...] = ("phasegate",)  # or ("python3", "-m", "phasegate")
    tool_timeout_s: int = 660  # a tool call can wait for a whole test run
    startup_timeout_s: int = 60  # phasegate took over 30 s to start on a loaded machine

    @property
    def command(self) -> str:
        return self.launcher[0]

    @property
    def args(self) -> tuple[str, ...]:
        return (*self.launcher[1:], "mcp", "--project", ".")

    def entry(self) -> dict[str, Any]:
        """The plain `{command, args}` entry every harness understands."""
        return {"command": self.command, "args": list(self.args)}

    def __str__(self) -> str:
        return " ".join((self.command, *self.args))


@dataclass(frozen=True)
class AgentToken:
    """The agent token a harness hands phasegate's server, and whether init just made it."""

    name: str
    token: str
    new: bool


def find_launcher(executable: str = sys.executable) -> tuple[tuple[str, ...], str | None]:
    """How to start this phasegate by a name PATH finds (a path into one checkout's venv breaks for
    everyone else), and a note when PATH finds no way to."""
    here = os.path.dirname(os.path.abspath(executable))
    mine = os.path.join(here, "phasegate")
    found = shutil.which("phasegate")
    if found and _same_phasegate(found, mine, executable):
        return ("phasegate",), None
    for name in dict.fromkeys(("python3", "python", os.path.basename(executable))):
        python = shutil.which(name)
        if python and os.path.dirname(os.path.abspath(python)) == here:
            return (name, "-m", "phasegate"), None
    if found:
        return ("phasegate",), (
            f"the phasegate first on your PATH is {found}, not this one ({mine}): "
            "harnesses will start that one"
        )
    return ("phasegate",), (
        f"phasegate is not on your PATH (this one is {mine}): activate its environment, "
        "or put phasegate on PATH, before you start a harness"
    )


def _same_phasegate(found: str, mine: str, executable: str) -> bool:
    """Is `found` this installation's script: the same file, or one run by this interpreter?"""
    if os.path.realpath(found) == os.path.realpath(mine):
        return True
    try:
        with open(found, "rb") as script:
            first = script.readline(1024)
    except OSError:
        return False
    return first.startswith(b"#!") and first[2:].split()[:1] == [
        os.fsencode(os.path.abspath(executable))
    ]


def add_server(
    wanted: dict[str, Any],
    server: McpServer,
    extra: Callable[[dict[str, Any]], list[str]] | None = None,
) -> Callable[[dict[str, Any]], list[str]]:
    """An edit that puts `wanted` under `mcpServers.phasegate` (then runs `extra`)."""

    def edit(data: dict[str, Any]) -> list[str]:
        detail = ", ".join(key for key in wanted if key not in ("command", "args"))
        did = merge_server(table_at(data, "mcpServers"), wanted, server, "mcpServers", detail)
        return did + (extra(data) if extra else [])

    return edit


def merge_server(
    servers: dict[str, Any], wanted: dict[str, Any], server: McpServer, where: str, detail: str = ""
) -> list[str]:
    """Add phasegate's entry, or complete the one there: missing keys are added, an absolute
    command (a path into someone's venv) is replaced, the user's own choices stay."""
    current = servers.get("phasegate")
    if current is None:
        servers["phasegate"] = wanted
        return [f"added the phasegate MCP server ({server}{'; ' + detail if detail else ''})"]
    if not isinstance(current, dict):
        raise Unexpected(f"{where}.phasegate is {kind_of(current)}, not a table of settings")
    if any(key in current for key in ("url", "httpUrl", "serverUrl")):
        return ["kept your phasegate entry (it connects over HTTP)"]
    did = []
    if _absolute(current):
        current["command"], current["args"] = wanted["command"], wanted["args"]
        did.append(f"phasegate's command had an absolute path; it is now {server}")
    for key, value in wanted.items():
        if key not in current:
            current[key] = value
            did.append(f"set {key}")
        elif isinstance(value, dict) and isinstance(current[key], dict):
            missing = [name for name in value if name not in current[key]]
            current[key].update({name: value[name] for name in missing})
            if missing:
                did.append(f"added {', '.join(missing)} to {key}")
    return did


def _absolute(entry: dict[str, Any]) -> bool:
    args = entry.get("args")
    words = [entry.get("command"), *(args if isinstance(args, list) else [])]
    return any(isinstance(word, str) and os.path.isabs(word) for word in words)
