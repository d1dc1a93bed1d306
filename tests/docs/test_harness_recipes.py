"""docs/mcp.md shows what `phasegate init --agent` writes: each `<!-- init writes: FILE -->`
snippet is that file after init in a fresh repository, and every file init writes has one."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PHASEGATE = Path(sys.executable).with_name("phasegate")
SNIPPET = re.compile(r"^<!-- init writes: (\S+) -->\n```\w*\n(.*?)^```", re.MULTILINE | re.DOTALL)
TOKEN_SHOWN = "pga_…"  # how the docs show the agent's token


def _parsed(rel: str, text: str) -> Any:
    if rel.endswith(".json"):
        return json.loads(text)
    if rel.endswith(".toml"):
        return tomllib.loads(text)
    return text.splitlines()


def test_the_mcp_reference_shows_what_init_writes_for_each_harness(tmp_path: Path) -> None:
    """A fresh `init --agent claude,codex,gemini,cursor` (config directory in HOME, phasegate on
    PATH, the default test timeout) writes exactly the files and the contents docs/mcp.md shows."""
    home, repo = tmp_path / "home", tmp_path / "repo"
    home.mkdir()
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("PHASEGATE_CONFIG_DIR", "XDG_CONFIG_HOME")
    }
    env |= {"HOME": str(home), "PATH": f"{PHASEGATE.parent}{os.pathsep}{env['PATH']}"}
    done = subprocess.run(
        [str(PHASEGATE), "init", "--agent", "claude,codex,gemini,cursor"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    written = {
        str(path.relative_to(repo))
        for path in repo.rglob("*")
        if path.is_file() and path.relative_to(repo).parts[0] not in (".git", ".phasegate")
    } - {"phasegate.toml"}

    snippets = dict(SNIPPET.findall((ROOT / "docs" / "mcp.md").read_text(encoding="utf-8")))
    assert set(snippets) == written, "docs/mcp.md and init disagree on the files init writes"
    for rel, snippet in snippets.items():
        text = (repo / rel).read_text(encoding="utf-8")
        token = re.search(r'"(pga_[^"]+)"', text)
        if token:
            text = text.replace(token.group(1), TOKEN_SHOWN)
        assert _parsed(rel, snippet) == _parsed(rel, text), f"docs/mcp.md's {rel} is not init's"
