"""How each real harness is run headless: pointed at the fake models and at phasegate's MCP
server (stdio or HTTP), with its home in a scratch directory and every call home switched off.

Each harness gets only PATH, HOME, a locale and its own variables: no credentials or proxies
leak in from the environment the tests run in.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

PHASEGATE = str(Path(sys.executable).with_name("phasegate"))


@dataclass(frozen=True)
class PhasegateServer:
    """How a harness reaches phasegate: `phasegate mcp` over stdio, or `phasegate serve`'s /mcp."""

    transport: str  # "stdio" | "http"
    root: Path
    token: str
    url: str = ""

    @property
    def args(self) -> list[str]:
        return ["mcp", "--project", str(self.root)]

    @property
    def env(self) -> dict[str, str]:
        """The stdio server's variables: the agent's token, and the user's phasegate config
        directory (it holds the database's audit key; the tests keep it outside HOME)."""
        env = {"PHASEGATE_AGENT_TOKEN": self.token}
        if "PHASEGATE_CONFIG_DIR" in os.environ:
            env["PHASEGATE_CONFIG_DIR"] = os.environ["PHASEGATE_CONFIG_DIR"]
        return env


@dataclass(frozen=True)
class Harness:
    """A harness, and the MCP clientInfo it introduces itself with."""

    name: str
    client: str
    version: str
    #: The fake's paths this harness may call (regular expressions).
    model_paths: tuple[str, ...]


HARNESSES = {
    "claude": Harness("claude", "claude-code", "2.1.197", (r"/", r"/v1/messages(/count_tokens)?")),
    "codex": Harness("codex", "codex-mcp-client", "0.171.0", (r"/v1/responses",)),
    "gemini": Harness(
        "gemini",
        "gemini-cli-mcp-client",
        "0.61.0",
        (r"/v1beta/models/[\w.-]+:(streamGenerateContent|generateContent|countTokens)",),
    ),
}


def base_env(scratch: Path) -> dict[str, str]:
    return {"PATH": os.environ["PATH"], "HOME": str(scratch), "LANG": "C.UTF-8", "NO_COLOR": "1"}


def command(
    harness: str, exe: str, scratch: Path, server: PhasegateServer, models: str, prompt: str
) -> tuple[list[str], dict[str, str]]:
    """The argv and environment that run `harness` once on `prompt`."""
    return {"claude": _claude, "codex": _codex, "gemini": _gemini}[harness](
        exe, scratch, server, models, prompt
    )


def _claude(
    exe: str, scratch: Path, server: PhasegateServer, models: str, prompt: str
) -> tuple[list[str], dict[str, str]]:
    entry: dict[str, object] = (
        {
            "type": "stdio",
            "command": PHASEGATE,
            "args": server.args,
            "env": server.env,
        }
        if server.transport == "stdio"
        else {
            "type": "http",
            "url": server.url,
            "headers": {"Authorization": f"Bearer {server.token}"},
        }
    )
    config = scratch / "mcp.json"
    config.write_text(json.dumps({"mcpServers": {"phasegate": entry}}))
    env = {
        **base_env(scratch),
        "ANTHROPIC_BASE_URL": models,
        "ANTHROPIC_API_KEY": "fake-key",
        "CLAUDE_CONFIG_DIR": str(scratch / ".claude"),
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_ERROR_REPORTING": "1",
        # A loaded machine may take over 30 s (the default) to start phasegate: then Claude
        # Code would drop the server for the whole run.
        "MCP_TIMEOUT": "180000",
    }
    argv = [exe, "-p", prompt, "--output-format", "stream-json", "--verbose"]
    argv += ["--mcp-config", str(config), "--strict-mcp-config"]
    argv += ["--allowedTools", "mcp__phasegate", "WaitForMcpServers", "ReadMcpResourceTool"]
    return argv, env


def _toml(value: str) -> str:
    return json.dumps(value)  # a JSON string is a TOML basic string for these values


def _codex(
    exe: str, scratch: Path, server: PhasegateServer, models: str, prompt: str
) -> tuple[list[str], dict[str, str]]:
    home = scratch / ".codex"
    home.mkdir(parents=True, exist_ok=True)
    if server.transport == "stdio":
        mcp = (
            f"command = {_toml(PHASEGATE)}\n"
            f"args = [{', '.join(_toml(a) for a in server.args)}]\n"
            f"env = {{ {', '.join(f'{k} = {_toml(v)}' for k, v in server.env.items())} }}\n"
        )
    else:
        mcp = f'url = {_toml(server.url)}\nbearer_token_env_var = "PHASEGATE_AGENT_TOKEN"\n'
    (home / "config.toml").write_text(
        'model = "fake-model"\nmodel_provider = "local"\napproval_policy = "never"\n'
        "check_for_update_on_startup = false\n"
        "[analytics]\nenabled = false\n"
        # Otherwise Codex syncs plugins and apps from remote hosts at start-up.
        "[features]\nplugins = false\nremote_plugin = false\napps = false\n"
        '[model_providers.local]\nname = "local"\n'
        f'base_url = {_toml(models + "/v1")}\nwire_api = "responses"\nenv_key = "FAKE_MODEL_KEY"\n'
        # Required: without it the first request goes out before phasegate's tools are there.
        f"[mcp_servers.phasegate]\nrequired = true\nstartup_timeout_sec = 180\n"
        f"tool_timeout_sec = 180\n{mcp}"
    )
    env = {**base_env(scratch), "CODEX_HOME": str(home), "FAKE_MODEL_KEY": "fake-key"}
    if server.transport == "http":
        env["PHASEGATE_AGENT_TOKEN"] = server.token
    argv = [exe, "exec", "--json", "--skip-git-repo-check", "-C", str(server.root), prompt]
    return argv, env


def _gemini(
    exe: str, scratch: Path, server: PhasegateServer, models: str, prompt: str
) -> tuple[list[str], dict[str, str]]:
    entry: dict[str, object] = (
        {
            "command": PHASEGATE,
            "args": server.args,
            "env": server.env,
        }
        if server.transport == "stdio"
        else {"httpUrl": server.url, "headers": {"Authorization": f"Bearer {server.token}"}}
    )
    settings = {
        "general": {"disableAutoUpdate": True, "disableUpdateNag": True},
        "privacy": {"usageStatisticsEnabled": False},
        "telemetry": {"enabled": False},
        "security": {"folderTrust": {"enabled": False}, "auth": {"selectedType": "gemini-api-key"}},
        "mcpServers": {"phasegate": {**entry, "timeout": 180_000, "trust": True}},
    }
    (scratch / ".gemini").mkdir(parents=True, exist_ok=True)
    (scratch / ".gemini" / "settings.json").write_text(json.dumps(settings))
    env = {**base_env(scratch), "GEMINI_API_KEY": "fake-key", "GOOGLE_GEMINI_BASE_URL": models}
    argv = [exe, "-p", prompt, "--output-format", "stream-json", "--approval-mode", "yolo"]
    argv += ["--allowed-mcp-server-names", "phasegate"]
    return argv, env
