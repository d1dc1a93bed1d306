"""What `phasegate init --agent` writes, read by the real harnesses, offline: Claude Code and
Gemini CLI start phasegate's server from it and connect; Codex lists the server it parsed.

Each CLI is installed once from npm (tests/harnesses/installed_clis.py) and runs with HOME in a
temporary directory and its update checks and telemetry off.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from engine_helpers import make_project_repo, run_cli
from tests.harnesses import installed_clis

pytestmark = [pytest.mark.node, pytest.mark.slow]

clis = installed_clis.clis  # the shared session fixture, requested by name below
_cli = installed_clis.cli

SERVER_LINE = "phasegate: phasegate mcp --project ."


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user's HOME, with phasegate's config directory in it and phasegate on PATH."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("PHASEGATE_CONFIG_DIR", raising=False)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    return home


def _project(tmp_path: Path, agent: str) -> Path:
    root = make_project_repo(tmp_path / "repo").resolve()
    done = run_cli(root, "init", "--agent", agent)
    assert done.returncode == 0, done.stderr
    return root


def _run(command: list[str], root: Path, **env: str) -> str:
    """What the CLI printed on stdout, then on stderr."""
    done = _output(command, root, **env)
    return done.stdout + done.stderr


def _output(command: list[str], root: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command,
        cwd=root,
        env={**os.environ, "NO_COLOR": "1", **env},
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_claude_code_connects_to_the_server_init_enabled_for_this_user(
    tmp_path: Path, home: Path, clis: Path
) -> None:
    """`claude mcp list` starts phasegate from `.mcp.json` and connects; without the user's
    local settings the same server waits for approval."""
    root = _project(tmp_path, "claude")
    claude = _cli(clis, "claude")
    env = {
        "CLAUDE_CONFIG_DIR": str(home / ".claude"),
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
    }
    out = _run([claude, "mcp", "list"], root, **env)
    assert f"{SERVER_LINE} - ✔ Connected" in out, out
    local = root / ".claude" / "settings.local.json"
    local.rename(tmp_path / "aside.json")
    out = _run([claude, "mcp", "list"], root, **env)
    assert f"{SERVER_LINE} - ⏸ Pending approval" in out, out


def test_gemini_cli_connects_once_the_folder_is_trusted(
    tmp_path: Path, home: Path, clis: Path
) -> None:
    """`gemini mcp list` leaves the server disabled in an untrusted folder, and starts it and
    connects once the user trusts the folder."""
    root = _project(tmp_path, "gemini")
    gemini = _cli(clis, "gemini")
    settings = {
        "general": {"disableAutoUpdate": True, "disableUpdateNag": True},
        "privacy": {"usageStatisticsEnabled": False},
        "telemetry": {"enabled": False},
    }
    (home / ".gemini").mkdir(exist_ok=True)  # `gemini --version` may have made it
    (home / ".gemini" / "settings.json").write_text(json.dumps(settings))
    out = _run([gemini, "mcp", "list"], root)
    assert f"{SERVER_LINE} (stdio) - Disabled" in out, out
    (home / ".gemini" / "trustedFolders.json").write_text(json.dumps({str(root): "TRUST_FOLDER"}))
    out = _run([gemini, "mcp", "list"], root)
    assert f"✓ {SERVER_LINE} (stdio) - Connected" in out, out


def test_codex_lists_the_server_once_the_project_is_trusted(
    tmp_path: Path, home: Path, clis: Path
) -> None:
    """`codex mcp list` ignores `.codex/config.toml` in an untrusted project, and lists
    phasegate's server with its timeouts and the variables it passes on once it is trusted."""
    root = _project(tmp_path, "codex")
    codex = _cli(clis, "codex")
    codex_home = home / ".codex"
    codex_home.mkdir(exist_ok=True)
    config = codex_home / "config.toml"
    config.write_text(
        "check_for_update_on_startup = false\n[analytics]\nenabled = false\n"
        "[features]\nplugins = false\nremote_plugin = false\napps = false\n"
    )
    env = {"CODEX_HOME": str(codex_home)}
    assert "phasegate" not in _run([codex, "mcp", "list"], root, **env)
    config.write_text(config.read_text() + f'[projects."{root}"]\ntrust_level = "trusted"\n')
    listed = {
        e["name"]: e
        for e in json.loads(_output([codex, "mcp", "list", "--json"], root, **env).stdout)
    }
    entry = listed["phasegate"]
    assert entry["enabled"] is True
    transport = entry["transport"]
    assert (transport["command"], transport["args"]) == ("phasegate", ["mcp", "--project", "."])
    assert "PHASEGATE_AGENT_TOKEN" in transport["env_vars"]
    assert (entry["startup_timeout_sec"], entry["tool_timeout_sec"]) == (60, 660)
