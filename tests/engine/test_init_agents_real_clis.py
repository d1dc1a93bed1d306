"""What `phasegate init --agent` writes, read by the real harnesses, offline: Claude Code and
Gemini CLI start phasegate's server from it and connect; Codex lists the server it parsed.

Each CLI is installed once from npm (pinned versions, in a cache outside the tests' temporary
directories; PHASEGATE_HARNESS_CLIS names an npm prefix that has them already) and runs with
HOME in a temporary directory and its update checks and telemetry off.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from engine_helpers import make_project_repo, run_cli

pytestmark = [pytest.mark.node, pytest.mark.slow]

VERSIONS = {
    "@anthropic-ai/claude-code": "2.1.197",
    "@openai/codex": "0.171.0",
    "@google/gemini-cli": "0.61.0",
}
NPM_FLAGS = ("--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error")
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "phasegate-tests"
SERVER_LINE = "phasegate: phasegate mcp --project ."


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One installer at a time across test workers."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@pytest.fixture(scope="session")
def clis() -> Path:
    """An npm prefix with the three CLIs."""
    given = os.environ.get("PHASEGATE_HARNESS_CLIS")
    if given:
        return Path(given)
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed: these tests install the harnesses' CLIs with it")
    tag = "-".join(f"{name.rsplit('/', 1)[-1]}-{v}" for name, v in VERSIONS.items())
    prefix = CACHE / tag
    with _locked(CACHE / f"{tag}.lock"):
        if not (prefix / "installed").exists():
            packages = [f"{name}@{version}" for name, version in VERSIONS.items()]
            done = subprocess.run(
                [npm, "install", "--prefix", str(prefix), *NPM_FLAGS, *packages],
                capture_output=True,
                text=True,
                timeout=900,
            )
            assert done.returncode == 0, done.stderr[-2000:]
            (prefix / "installed").write_text("\n".join(packages) + "\n")
    return prefix


def _cli(clis: Path, name: str) -> str:
    """The CLI's executable: Claude Code's is a native binary in a per-platform package."""
    found = (
        [*clis.glob("node_modules/@anthropic-ai/claude-code-*/claude")] if name == "claude" else []
    )
    for candidate in [*found, clis / "node_modules" / ".bin" / name]:
        if (
            subprocess.run([candidate, "--version"], capture_output=True, timeout=60).returncode
            == 0
        ):
            return str(candidate)
    raise AssertionError(f"{name} from {clis} does not run")


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
