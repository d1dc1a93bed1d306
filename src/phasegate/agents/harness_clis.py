"""The agent CLIs a push-mode worker can run headless: how to start each, and how to read it.

Each harness connects to phasegate over MCP (streamable HTTP, with the
worker's agent token) and submits through phasegate's tools itself. The
flags and settings are the ones checked against the real CLIs (see
docs/workers.md): headless mode, JSON-lines output, phasegate's server
required at start-up, generous tool timeouts, and no update checks,
telemetry or plugin sync. Everything is passed on the command line or in a
file the adapter writes to a private folder: nothing is written into the
user's own configuration.

`steps` turns a CLI's JSON lines into what a reviewer reads in the timeline:
the agent's text, each tool it called, and how the run ended. Lines that
aren't JSON (a CLI printing garbage) are kept as text, cut short.
"""

from __future__ import annotations

import json
import re
import shlex
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from phasegate.domain.principal import Principal

SERVER = "phasegate"  # the MCP server's name in each harness's configuration
TOKEN_ENV = "PHASEGATE_AGENT_TOKEN"
STEP_CHARS = 2000  # of one step's text, the timeline keeps this much
TRANSCRIPT_STEPS = 200  # of a long run, the timeline keeps the first and last steps…
TRANSCRIPT_CHARS = 64_000  # …within this much text: one event, not a log
_VERSION = re.compile(r"(\d+)\.(\d+)\.(\d+)")


@dataclass(frozen=True)
class Step:
    """One thing the agent did, as the timeline shows it."""

    kind: str  # text | tool | result | error
    text: str

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "text": self.text[:STEP_CHARS]}


class JobTokens(Protocol):
    """Issues each job's token: the worker's agent, on the job's one session only."""

    def issue(self, principal: Principal, session_id: str) -> str: ...

    def revoke(self, token: str) -> None: ...


@dataclass(frozen=True)
class Endpoint:
    """phasegate's MCP endpoint as the harness reaches it, and where its job tokens come from."""

    url: str
    tokens: JobTokens


@dataclass(frozen=True)
class HarnessCli(ABC):
    """One agent CLI: its npm package, the oldest version known to work, and how to run it."""

    name: str
    program: str
    package: str
    tested: str  # the version docs/workers.md and the tests were checked with
    oldest: tuple[int, int, int]

    def install_hint(self) -> str:
        return f"npm install -g {self.package}@{self.tested}"

    def version_of(self, output: str) -> tuple[int, int, int] | None:
        found = _VERSION.search(output)
        return (int(found[1]), int(found[2]), int(found[3])) if found else None

    @abstractmethod
    def command(self, url: str, prompt_file: Path, config_dir: Path) -> str:
        """The shell command line (the prompt is read from `prompt_file`)."""

    def environment(self, config_dir: Path) -> dict[str, str]:
        """Variables the CLI needs besides the agent's token."""
        return {}

    def write_config(self, url: str, token: str, config_dir: Path) -> None:  # noqa: B027
        """Files the CLI reads, written into the adapter's private `config_dir` (Codex takes
        everything on its command line: none)."""

    def steps(self, lines: Iterable[str]) -> Iterator[Step]:
        """The timeline's steps from the CLI's output lines."""
        for line in lines:
            event = _json(line)
            if event is None:
                if line.strip():
                    yield Step("text", line.strip())
                continue
            yield from self.read(event)

    @abstractmethod
    def read(self, event: Mapping[str, Any]) -> Iterator[Step]:
        """The steps one of its JSON events stands for (often none)."""


class ClaudeCode(HarnessCli):
    """`claude -p`, with phasegate from an `--mcp-config` file and only its tools pre-allowed."""

    def write_config(self, url: str, token: str, config_dir: Path) -> None:
        server = {"type": "http", "url": url, "headers": {"Authorization": f"Bearer {token}"}}
        _write_private(config_dir / "mcp.json", json.dumps({"mcpServers": {SERVER: server}}))

    def command(self, url: str, prompt_file: Path, config_dir: Path) -> str:
        argv = [
            self.program,
            "-p",
            "--output-format=stream-json",
            "--verbose",
            "--mcp-config",
            str(config_dir / "mcp.json"),
            "--strict-mcp-config",
            "--permission-mode",
            "acceptEdits",
            "--allowedTools",
            f"mcp__{SERVER} Read Edit Write Glob Grep",
        ]
        return f"{shlex.join(argv)} < {shlex.quote(str(prompt_file))}"

    def environment(self, config_dir: Path) -> dict[str, str]:
        return {
            "MCP_TIMEOUT": "60000",  # phasegate must be connected before the first request
            "MCP_CONNECTION_NONBLOCKING": "0",
            "MCP_TOOL_TIMEOUT": "660000",
            "DISABLE_AUTOUPDATER": "1",
            "DISABLE_TELEMETRY": "1",
            "DISABLE_ERROR_REPORTING": "1",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        }

    def read(self, event: Mapping[str, Any]) -> Iterator[Step]:
        kind = event.get("type")
        if kind == "assistant":
            for block in _list(_dict(event.get("message")).get("content")):
                block = _dict(block)
                if block.get("type") == "text" and str(block.get("text", "")).strip():
                    yield Step("text", str(block["text"]).strip())
                elif block.get("type") == "tool_use":
                    yield Step("tool", _call(block.get("name"), block.get("input")))
        elif kind == "result":
            failed = event.get("is_error") or event.get("subtype") != "success"
            yield Step("error" if failed else "result", str(event.get("result") or kind))


class Codex(HarnessCli):
    """`codex exec --json`, with phasegate as a required server given by `-c` overrides."""

    def command(self, url: str, prompt_file: Path, config_dir: Path) -> str:
        overrides = {
            f"mcp_servers.{SERVER}.url": json.dumps(url),
            f"mcp_servers.{SERVER}.bearer_token_env_var": json.dumps(TOKEN_ENV),
            f"mcp_servers.{SERVER}.required": "true",
            f"mcp_servers.{SERVER}.startup_timeout_sec": "60",
            f"mcp_servers.{SERVER}.tool_timeout_sec": "660",
            "approval_policy": '"never"',
            # phasegate's own sandbox confines the CLI; Codex's would need namespaces inside it.
            "sandbox_mode": '"danger-full-access"',
            "check_for_update_on_startup": "false",
            "analytics.enabled": "false",
            "features.plugins": "false",
            "features.remote_plugin": "false",
            "features.apps": "false",
        }
        argv = [self.program, "exec", "--json", "--skip-git-repo-check"]
        for key, value in overrides.items():
            argv += ["-c", f"{key}={value}"]
        argv.append("-")  # the prompt from stdin
        return f"{shlex.join(argv)} < {shlex.quote(str(prompt_file))}"

    def read(self, event: Mapping[str, Any]) -> Iterator[Step]:
        kind = event.get("type")
        item = _dict(event.get("item"))
        if kind == "item.completed" and item.get("type") in ("agent_message", "reasoning"):
            if str(item.get("text", "")).strip():
                yield Step("text", str(item["text"]).strip())
        elif kind == "item.completed" and item.get("type") == "mcp_tool_call":
            yield Step("tool", _call(item.get("tool"), item.get("arguments")))
        elif kind == "turn.completed":
            yield Step("result", "turn completed")
        elif kind in ("turn.failed", "error"):
            message = _dict(event.get("error")).get("message") or event.get("message") or kind
            yield Step("error", str(message))


class GeminiCli(HarnessCli):
    """`gemini -p`, with phasegate from a system settings file (it overrides the user's)."""

    def write_config(self, url: str, token: str, config_dir: Path) -> None:
        settings = {
            "mcpServers": {
                SERVER: {
                    "httpUrl": url,
                    "headers": {"Authorization": f"Bearer {token}"},
                    "timeout": 660_000,
                    "trust": True,  # headless runs can't confirm a call; its tools decide no gate
                }
            },
            "general": {"enableAutoUpdate": False, "enableAutoUpdateNotification": False},
            "privacy": {"usageStatisticsEnabled": False},
            "telemetry": {"enabled": False},
            "security": {"folderTrust": {"enabled": False}},
        }
        _write_private(config_dir / "settings.json", json.dumps(settings))

    def command(self, url: str, prompt_file: Path, config_dir: Path) -> str:
        argv = [
            self.program,
            "--output-format",
            "stream-json",
            "--approval-mode",
            "yolo",
            "--allowed-mcp-server-names",
            SERVER,
        ]
        # `-p` takes the prompt itself; the shell reads it from the file, unmangled.
        return f'{shlex.join(argv)} -p "$(cat {shlex.quote(str(prompt_file))})" < /dev/null'

    def environment(self, config_dir: Path) -> dict[str, str]:
        return {"GEMINI_CLI_SYSTEM_SETTINGS_PATH": str(config_dir / "settings.json")}

    def read(self, event: Mapping[str, Any]) -> Iterator[Step]:
        kind = event.get("type")
        if kind == "message" and event.get("role") == "assistant":
            if str(event.get("content", "")).strip():
                yield Step("text", str(event["content"]))
        elif kind == "tool_use":
            yield Step("tool", _call(event.get("tool_name"), event.get("parameters")))
        elif kind == "result":
            ok = event.get("status") == "success"
            yield Step("result" if ok else "error", str(event.get("status") or kind))
        elif kind == "error":
            yield Step("error", str(event.get("message") or kind))

    def steps(self, lines: Iterable[str]) -> Iterator[Step]:
        """Its assistant text streams in pieces: consecutive pieces make one step."""
        text: list[str] = []
        for step in super().steps(lines):
            if step.kind == "text":
                text.append(step.text)
                continue
            if text:
                yield Step("text", "".join(text).strip())
                text = []
            yield step
        if text:
            yield Step("text", "".join(text).strip())


def bounded(steps: list[Step]) -> list[dict[str, str]]:
    """The steps the timeline keeps: the first and the last ones, within TRANSCRIPT_STEPS and
    TRANSCRIPT_CHARS, and a marker saying how many were left out between them."""
    shown = [step.to_dict() for step in steps]
    head: list[dict[str, str]] = []
    tail: list[dict[str, str]] = []
    first, last, used = 0, len(shown) - 1, 0
    while first <= last and len(head) + len(tail) < TRANSCRIPT_STEPS:
        front = len(head) <= len(tail)
        step = shown[first] if front else shown[last]
        used += len(step["text"]) + 30  # the JSON around it
        if used > TRANSCRIPT_CHARS:
            break
        if front:
            head.append(step)
            first += 1
        else:
            tail.append(step)
            last -= 1
    left = last - first + 1
    marker = [{"kind": "text", "text": f"[{left} step(s) left out: the log has them all]"}]
    return head + (marker if left > 0 else []) + tail[::-1]


CLIS: dict[str, HarnessCli] = {
    "claude": ClaudeCode("claude", "claude", "@anthropic-ai/claude-code", "2.1.197", (2, 1, 0)),
    "codex": Codex("codex", "codex", "@openai/codex", "0.171.0", (0, 171, 0)),
    "gemini": GeminiCli("gemini", "gemini", "@google/gemini-cli", "0.61.0", (0, 61, 0)),
}


def _write_private(path: Path, text: str) -> None:
    """A file only this user can read: it holds the agent's token."""
    path.touch(mode=0o600)
    path.write_text(text, encoding="utf-8")


def _json(line: str) -> Mapping[str, Any] | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _dict(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _call(name: object, arguments: object) -> str:
    """`submit_tests(session_id=…, files=[2 files])`: a call, with file contents left out."""
    tool = str(name or "?").removeprefix(f"mcp__{SERVER}__").removeprefix(f"mcp_{SERVER}_")
    if isinstance(arguments, str):
        arguments = _json(arguments) or {}
    shown = []
    for key, value in _dict(arguments).items():
        if isinstance(value, list):
            shown.append(f"{key}=[{len(value)} item(s)]")
        else:
            text = str(value)
            shown.append(f"{key}={text[:80] + '…' if len(text) > 80 else text}")
    return f"{tool}({', '.join(shown)})"
