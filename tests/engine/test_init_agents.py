"""`phasegate init --agent`: each harness's MCP entry and deny rules, merged, and their limits."""

from __future__ import annotations

import json
import subprocess
import tomllib
from pathlib import Path

import pytest
from engine_helpers import make_project_repo, run_cli

from phasegate.harness import deny_rules_status

CLAUDE_RULES = [
    "Read(./.phasegate/**)",
    "Edit(./.phasegate/**)",
    "Read(~/.config/phasegate/**)",
    "Edit(~/.config/phasegate/**)",
    "Bash(phasegate:*)",
    "Bash(sqlite3:*)",
]
GEMINI_EXCLUDED = ["run_shell_command(phasegate)", "run_shell_command(sqlite3)"]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A HOME whose ~/.config/phasegate is phasegate's config directory, as on a real machine."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("PHASEGATE_CONFIG_DIR", raising=False)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    return home


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


def _init(root: Path, *agents: str) -> subprocess.CompletedProcess[str]:
    done = run_cli(
        root, "init", "--name", "alice", *(a for name in agents for a in ("--agent", name))
    )
    assert done.returncode == 0, done.stderr
    return done


EXISTING = {
    ".mcp.json": json.dumps({"mcpServers": {"other": {"command": "other-mcp"}}}),
    ".claude/settings.json": json.dumps(
        {"model": "opus", "permissions": {"allow": ["Bash(npm test)"], "deny": ["Read(./.env)"]}}
    ),
    ".codex/config.toml": 'model = "o3"\n\n[mcp_servers.other]\ncommand = "other-mcp"\n',
    ".gemini/settings.json": json.dumps(
        {
            "ui": {"theme": "dark"},
            "mcpServers": {"other": {"command": "other-mcp"}},
            "tools": {"exclude": ["run_shell_command(rm -rf)"]},
        }
    ),
    ".geminiignore": "node_modules/\n",
}


def test_each_harness_gets_its_server_and_deny_rules_merged_with_what_was_there(
    tmp_path: Path, home: Path
) -> None:
    """Claude Code, Codex and Gemini CLI each get phasegate's MCP server and deny rules in their
    own project files; other servers, rules and settings stay; a second init adds nothing."""
    root = make_project_repo(tmp_path / "repo")
    _write(root, EXISTING)
    _init(root, "claude", "codex,gemini")

    servers = json.loads((root / ".mcp.json").read_text())["mcpServers"]
    assert servers["other"] == {"command": "other-mcp"}
    assert servers["phasegate"]["args"] == ["mcp", "--project", "."]

    claude = json.loads((root / ".claude" / "settings.json").read_text())
    assert claude["model"] == "opus" and claude["permissions"]["allow"] == ["Bash(npm test)"]
    assert claude["permissions"]["deny"] == ["Read(./.env)", *CLAUDE_RULES]
    places = ["./.phasegate", "~/.config/phasegate"]
    assert claude["sandbox"]["filesystem"] == {"denyRead": places, "denyWrite": places}

    codex = tomllib.loads((root / ".codex" / "config.toml").read_text())
    assert codex["model"] == "o3" and codex["mcp_servers"]["other"] == {"command": "other-mcp"}
    assert codex["sandbox_mode"] == "workspace-write"
    entry = codex["mcp_servers"]["phasegate"]
    assert entry["args"] == ["mcp", "--project", "."] and entry["required"] is True
    assert entry["startup_timeout_sec"] >= 30 and entry["tool_timeout_sec"] > 60

    gemini = json.loads((root / ".gemini" / "settings.json").read_text())
    assert gemini["ui"] == {"theme": "dark"} and gemini["mcpServers"]["other"]["command"]
    assert gemini["mcpServers"]["phasegate"]["args"] == ["mcp", "--project", "."]
    assert gemini["tools"]["exclude"] == ["run_shell_command(rm -rf)", *GEMINI_EXCLUDED]
    assert (root / ".geminiignore").read_text() == "node_modules/\n/.phasegate/\n"
    assert deny_rules_status(root) == {"claude": True, "codex": True, "gemini": True}

    written = {rel: (root / rel).read_bytes() for rel in EXISTING}
    again = _init(root, "gemini", "codex", "claude")
    assert {rel: (root / rel).read_bytes() for rel in EXISTING} == written
    assert again.stdout.count("already set up") == 5


def test_the_printout_says_what_each_harness_cannot_enforce(tmp_path: Path, home: Path) -> None:
    """init names each harness, what it wrote, and what the harness can't enforce (its shell),
    and that only guarded mode closes that."""
    root = make_project_repo(tmp_path / "repo")
    out = _init(root, "claude", "codex", "gemini").stdout
    for title in ("Claude Code:", "Codex:", "Gemini CLI:"):
        assert title in out
    assert out.count("can't enforce:") == 3
    gaps = [line for line in out.splitlines() if line.startswith("    - ")]
    assert len(gaps) == 8 and all(len(line) < 100 for line in gaps), gaps
    assert "not programs Bash runs: a script can read ~/.config/phasegate" in out
    assert "its sandbox stops writes outside the project, not reads of ~/.config/phasegate" in out
    assert "tools.exclude blocks only phasegate and sqlite3" in out
    assert "only guarded mode (phasegate serve --guarded" in out


def test_a_config_dir_outside_home_is_denied_by_its_absolute_path(tmp_path: Path) -> None:
    """With PHASEGATE_CONFIG_DIR outside HOME, Claude Code's rules name it absolutely (//…)."""
    root = make_project_repo(tmp_path / "repo")
    _init(root, "claude")
    config = (tmp_path / "user-config").resolve()  # the suite's PHASEGATE_CONFIG_DIR
    deny = json.loads((root / ".claude" / "settings.json").read_text())["permissions"]["deny"]
    assert f"Read(/{config}/**)" in deny and f"Edit(/{config}/**)" in deny


def test_a_file_phasegate_cannot_parse_is_left_alone_with_a_note(
    tmp_path: Path, home: Path
) -> None:
    """Broken JSON or TOML, or JSON of another shape, is left byte for byte, with a one-line note;
    the rest of init still happens."""
    root = make_project_repo(tmp_path / "repo")
    broken = {
        ".claude/settings.json": '{"permissions": {"deny": [',
        ".codex/config.toml": "model = \n",
        ".gemini/settings.json": "[1, 2]",
        ".mcp.json": json.dumps({"mcpServers": ["not", "an", "object"]}),
    }
    _write(root, broken)
    out = _init(root, "claude", "codex", "gemini").stdout
    for rel, text in broken.items():
        assert (root / rel).read_text() == text, rel
        notes = [line for line in out.splitlines() if line.strip().startswith(f"{rel}: left alone")]
        assert len(notes) == 1 and "by hand" in notes[0], (rel, out)
    assert "not valid JSON" in out and "not valid TOML" in out and "not a JSON object" in out
    assert "your human token for alice" in out
    assert deny_rules_status(root) == {"claude": False, "codex": False, "gemini": False}


@pytest.mark.parametrize(("agent", "needle"), [("aider", "'aider'"), ("cursor", "Cursor")])
def test_an_agent_init_cannot_set_up_is_refused_with_one_line_and_nothing_written(
    tmp_path: Path, agent: str, needle: str
) -> None:
    """An unknown (or unsupported) harness: exit 1, one line naming the supported ones, and not a
    file written: no settings, no state, no token."""
    root = tmp_path / "bare"
    root.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    done = run_cli(root, "init", "--agent", "claude", "--agent", agent)
    assert done.returncode == 1, done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("phasegate: ") and needle in lines[0]
    assert "claude, codex or gemini" in lines[0] and "Traceback" not in done.stderr
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before
    assert not (tmp_path / "user-config").exists()


def test_deny_rules_status_says_per_harness_whether_the_rules_are_there(
    tmp_path: Path, home: Path
) -> None:
    """None for a harness the project doesn't use, False while phasegate's rules are missing,
    True once init wrote them (and after the user added rules of their own)."""
    root = make_project_repo(tmp_path / "repo")
    assert deny_rules_status(root) == {"claude": None, "codex": None, "gemini": None}
    _write(root, {"CLAUDE.md": "# notes\n", ".codex/config.toml": 'model = "o3"\n'})
    assert deny_rules_status(root) == {"claude": False, "codex": False, "gemini": None}
    _init(root, "claude", "codex")
    settings = root / ".claude" / "settings.json"
    data = json.loads(settings.read_text())
    data["permissions"]["deny"].append("Read(./secrets/**)")
    settings.write_text(json.dumps(data))
    assert deny_rules_status(root) == {"claude": True, "codex": True, "gemini": None}
