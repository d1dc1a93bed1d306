"""`phasegate init`: settings, the human token outside the repo, and the agent's MCP entry."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import git

PHASEGATE = str(Path(sys.executable).with_name("phasegate"))


def run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PHASEGATE, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=60,
    )


def test_init_keeps_the_token_outside_the_repo_and_registers_the_mcp_server(tmp_path: Path) -> None:
    """init prints the token once, stores it in the user config dir, and adds .mcp.json."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / ".mcp.json").write_text(json.dumps({"mcpServers": {"other": {"command": "x"}}}))

    first = run(repo, "init", "--name", "alice")
    assert first.returncode == 0, first.stderr
    token = next(w for w in first.stdout.split() if w.startswith("pgh_"))
    stored = json.loads((Path(os.environ["PHASEGATE_CONFIG_DIR"]) / "credentials.json").read_text())
    assert stored[str(repo.resolve())]["token"] == token
    assert token not in "".join(
        p.read_text(errors="ignore")
        for p in repo.rglob("*")
        if p.is_file() and ".git" not in p.parts
    )

    servers = json.loads((repo / ".mcp.json").read_text())["mcpServers"]
    assert servers["other"] == {"command": "x"}
    assert servers["phasegate"]["args"] == ["mcp", "--project", "."]
    assert "/.phasegate/" in (repo / ".git" / "info" / "exclude").read_text()

    again = run(repo, "init")
    assert again.returncode == 0 and "token already stored" in again.stdout
    assert "pgh_" not in again.stdout


def test_init_outside_a_git_repository_fails_with_one_line(tmp_path: Path) -> None:
    """init in a folder that is not a git repository says so and writes nothing."""
    done = run(tmp_path, "init")
    assert done.returncode == 1 and "not inside a git repository" in done.stderr
    assert not (tmp_path / "phasegate.toml").exists() and not (tmp_path / ".phasegate").exists()
