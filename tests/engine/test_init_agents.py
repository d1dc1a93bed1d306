"""`phasegate init --agent`: each harness's MCP entry, settings and deny rules, merged; portable
in the files meant to be committed, the token and the user's own choices in local files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from engine_helpers import make_project_repo, run_cli

import phasegate
from phasegate.config import open_project
from phasegate.harness import deny_rules_status, find_launcher
from phasegate.orchestrator import Orchestrator

CLAUDE_RULES = [
    "Read(./.phasegate/**)",
    "Edit(./.phasegate/**)",
    "Read(~/.config/phasegate/**)",
    "Edit(~/.config/phasegate/**)",
    "Bash(phasegate:*)",
    "Bash(sqlite3:*)",
]
GEMINI_EXCLUDED = ["run_shell_command(phasegate)", "run_shell_command(sqlite3)"]
ALL = ("claude", "codex", "gemini", "cursor")
SERVER = {"command": "phasegate", "args": ["mcp", "--project", "."]}
#: What each harness's files are: meant to be committed (shared), or one user's (local).
SHARED = [
    ".mcp.json",
    ".claude/settings.json",
    ".codex/config.toml",
    ".gemini/settings.json",
    ".geminiignore",
    ".cursor/mcp.json",
]
LOCAL = ".claude/settings.local.json"


@pytest.fixture(autouse=True)
def phasegate_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """This installation's `phasegate` is on PATH, as after `pip install` or an activated venv."""
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")


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


def _json(root: Path, rel: str) -> Any:
    return json.loads((root / rel).read_text())


def _toml(root: Path, rel: str) -> dict[str, Any]:
    return tomllib.loads((root / rel).read_text())


def _strings(value: Any) -> list[str]:
    """Every string in a parsed JSON or TOML document, keys included."""
    if isinstance(value, dict):
        return [s for key, item in value.items() for s in (key, *_strings(item))]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return [value] if isinstance(value, str) else []


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and ".git" not in p.relative_to(root).parts
    }


EXISTING = {
    ".mcp.json": json.dumps({"mcpServers": {"other": {"command": "other-mcp"}}}),
    ".claude/settings.json": json.dumps(
        {"model": "opus", "permissions": {"allow": ["Bash(npm test)"], "deny": ["Read(./.env)"]}}
    ),
    ".claude/settings.local.json": json.dumps({"permissions": {"allow": ["Bash(make)"]}}),
    ".codex/config.toml": 'model = "o3"  # mine\n\n[mcp_servers.other]\ncommand = "other-mcp"\n',
    ".gemini/settings.json": json.dumps(
        {
            "ui": {"theme": "dark"},
            "mcpServers": {"other": {"command": "other-mcp"}},
            "tools": {"exclude": ["run_shell_command(rm -rf)"]},
        }
    ),
    ".geminiignore": "node_modules/\n",
    ".cursor/mcp.json": json.dumps({"mcpServers": {"other": {"url": "http://127.0.0.1:1/mcp"}}}),
}


def test_each_harness_gets_its_server_and_deny_rules_merged_with_what_was_there(
    tmp_path: Path, home: Path
) -> None:
    """Each harness gets phasegate's MCP server and deny rules in its own files; other servers,
    rules, settings and comments stay; a second init changes no byte."""
    root = make_project_repo(tmp_path / "repo")
    _write(root, EXISTING)
    _init(root, "claude", "codex,gemini", "cursor")

    servers = _json(root, ".mcp.json")["mcpServers"]
    assert servers == {"other": {"command": "other-mcp"}, "phasegate": SERVER}

    claude = _json(root, ".claude/settings.json")
    assert claude["model"] == "opus" and claude["permissions"]["allow"] == ["Bash(npm test)"]
    assert claude["permissions"]["deny"] == ["Read(./.env)", *CLAUDE_RULES]
    places = ["./.phasegate", "~/.config/phasegate"]
    assert claude["sandbox"]["filesystem"] == {"denyRead": places, "denyWrite": places}
    local = _json(root, LOCAL)
    assert local["permissions"] == {"allow": ["Bash(make)"]}
    assert local["enabledMcpjsonServers"] == ["phasegate"]

    codex_text = (root / ".codex" / "config.toml").read_text()
    codex = tomllib.loads(codex_text)
    assert codex["model"] == "o3" and codex["mcp_servers"]["other"] == {"command": "other-mcp"}
    assert codex["sandbox_mode"] == "workspace-write" and "# mine" in codex_text
    assert {k: codex["mcp_servers"]["phasegate"][k] for k in SERVER} == SERVER

    gemini = _json(root, ".gemini/settings.json")
    assert gemini["ui"] == {"theme": "dark"} and gemini["mcpServers"]["other"]["command"]
    assert {k: gemini["mcpServers"]["phasegate"][k] for k in SERVER} == SERVER
    assert gemini["tools"]["exclude"] == ["run_shell_command(rm -rf)", *GEMINI_EXCLUDED]
    assert (root / ".geminiignore").read_text() == "node_modules/\n/.phasegate/\n"
    assert _json(root, ".cursor/mcp.json")["mcpServers"]["phasegate"] == SERVER
    assert deny_rules_status(root) == {"claude": True, "codex": True, "gemini": True}

    written = _tree(root)
    exclude = (root / ".git" / "info" / "exclude").read_text()
    again = _init(root, "cursor", "gemini", "codex", "claude")
    assert _tree(root) == written
    assert (root / ".git" / "info" / "exclude").read_text() == exclude
    assert again.stdout.count("already set up") == 7, again.stdout
    assert "agent token: claude (kept)" in again.stdout


@pytest.mark.parametrize(
    "config_in_home", [True, False], ids=["config-in-home", "config-elsewhere"]
)
def test_committed_files_hold_no_absolute_path_and_no_token(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch, config_in_home: bool
) -> None:
    """The files meant to be committed name phasegate as PATH finds it and nothing of this
    machine (no absolute path, no token); git sees them as new files and ignores the local one,
    which holds the token of a real agent."""
    if not config_in_home:  # its deny rules then need an absolute path: the local file has them
        monkeypatch.setenv("PHASEGATE_CONFIG_DIR", str(tmp_path / "elsewhere"))
    root = make_project_repo(tmp_path / "repo")
    _init(root, *ALL)

    for rel in SHARED:
        text = (root / rel).read_text()
        parsed = _json(root, rel) if rel.endswith(".json") else None
        parsed = _toml(root, rel) if rel.endswith(".toml") else parsed
        words = _strings(parsed) if parsed is not None else []  # `/x/` anchors an ignore rule
        assert not [w for w in words if os.path.isabs(w)], (rel, text)
        for secret in ("pga_", "pgh_", str(tmp_path), str(home)):
            assert secret not in text, (rel, secret)

    status = subprocess.run(
        ["git", "status", "--porcelain", "--ignored", "--untracked-files=all"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert {f"?? {rel}" for rel in SHARED} <= set(status), status
    assert f"!! {LOCAL}" in status and "!! .phasegate/phasegate.db" in status

    token = _json(root, LOCAL)["env"]["PHASEGATE_AGENT_TOKEN"]
    deny = _json(root, LOCAL).get("permissions", {}).get("deny", [])
    assert bool(deny) is not config_in_home  # the absolute `//…` rules, only when needed
    assert (root / LOCAL).stat().st_mode & 0o077 == 0
    orch = Orchestrator.open(open_project(root))
    try:
        agent = orch.authenticate(token)
    finally:
        orch.close()
    assert agent.name == "claude" and not agent.is_human
    assert set(agent.roles) == {"tester", "coder", "runner"}


def test_each_file_parses_and_holds_what_its_harness_needs(tmp_path: Path, home: Path) -> None:
    """Claude Code: the server enabled, the token and a start-up allowance in its env; Codex:
    required, timeouts and the variables it may pass on; Gemini CLI: timeout, trust and the
    token by reference; Cursor: the server."""
    root = make_project_repo(tmp_path / "repo")
    (root / "phasegate.toml").write_text(
        (root / "phasegate.toml").read_text() + "test_timeout_s = 300\n"
    )
    _init(root, *ALL)

    local = _json(root, LOCAL)
    assert local["enabledMcpjsonServers"] == ["phasegate"]
    assert local["env"]["MCP_TIMEOUT"] == "60000"
    assert local["env"]["PHASEGATE_AGENT_TOKEN"].startswith("pga_")

    codex = _toml(root, ".codex/config.toml")["mcp_servers"]["phasegate"]
    assert codex["required"] is True
    assert codex["startup_timeout_sec"] == 60 and codex["tool_timeout_sec"] == 360
    assert {"PHASEGATE_AGENT_TOKEN", "PHASEGATE_DATABASE_URL"} <= set(codex["env_vars"])
    assert "env" not in codex

    gemini = _json(root, ".gemini/settings.json")["mcpServers"]["phasegate"]
    assert gemini["timeout"] == 360_000 and gemini["trust"] is True
    assert gemini["env"]["PHASEGATE_AGENT_TOKEN"] == "$PHASEGATE_AGENT_TOKEN"

    assert _json(root, ".cursor/mcp.json") == {"mcpServers": {"phasegate": SERVER}}


def test_the_printout_says_what_was_written_where_and_what_is_left(
    tmp_path: Path, home: Path
) -> None:
    """Per harness: each file, shared or local; where the token went; what the user must still
    do; what the harness can't enforce (its shell), and that only guarded mode closes that."""
    root = make_project_repo(tmp_path / "repo")
    out = _init(root, *ALL).stdout
    for title in ("Claude Code:", "Codex:", "Gemini CLI:", "Cursor:"):
        assert title in out.splitlines()
    assert out.count("still to do:") == 4 and out.count("can't enforce:") == 4
    assert out.count("agent token:") == 4
    assert f"  {LOCAL} (yours, kept out of git): enabled the phasegate server" in out
    assert "  .mcp.json (shared, commit it): added the phasegate MCP server" in out
    assert f".git/info/exclude: added /{LOCAL}" in out
    assert "agent token: claude (new), in .claude/settings.local.json" in out
    assert "export as PHASEGATE_AGENT_TOKEN" in out
    assert "trust this project in codex once" in out and "trust this folder in gemini" in out
    lines = out.splitlines()
    gaps = [
        line
        for i, line in enumerate(lines)
        if line.startswith("    - ")
        and lines[max(j for j in range(i) if not lines[j].startswith("    - "))]
        == "  can't enforce:"
    ]
    assert len(gaps) == 10 and all(len(line) < 100 for line in gaps), gaps
    assert "not programs Bash runs: a script can read ~/.config/phasegate" in out
    assert "its sandbox stops writes outside the project, not reads of ~/.config/phasegate" in out
    assert "tools.exclude blocks only phasegate and sqlite3" in out
    assert "only guarded mode (phasegate serve --guarded" in out


def test_a_config_dir_outside_home_is_denied_by_its_absolute_path_in_the_local_file(
    tmp_path: Path,
) -> None:
    """With PHASEGATE_CONFIG_DIR outside HOME, Claude Code's rules name it absolutely (//…), in
    the user's local settings: the shared file keeps the rules every teammate shares."""
    root = make_project_repo(tmp_path / "repo")
    _init(root, "claude")
    config = (tmp_path / "user-config").resolve()  # the suite's PHASEGATE_CONFIG_DIR
    deny = _json(root, LOCAL)["permissions"]["deny"]
    assert deny == [f"Read(/{config}/**)", f"Edit(/{config}/**)"]
    shared = _json(root, ".claude/settings.json")["permissions"]["deny"]
    assert shared == [r for r in CLAUDE_RULES if "~" not in r]
    assert deny_rules_status(root)["claude"] is True


MALFORMED = [
    ("claude", ".claude/settings.json", '{"permissions": {"deny": [', "is not valid JSON"),
    ("claude", ".claude/settings.json", '{"permissions": {"deny": "x"}}', "permissions.deny"),
    ("claude", LOCAL, '{"env": ["PHASEGATE_AGENT_TOKEN"]}', ": env is a list"),
    ("claude", ".mcp.json", json.dumps({"mcpServers": ["not", "an", "object"]}), "mcpServers"),
    ("codex", ".codex/config.toml", "model = \n", "is not valid TOML"),
    ("codex", ".codex/config.toml", "mcp_servers = 3\n", ": mcp_servers is a number"),
    ("codex", ".codex/config.toml", '[mcp_servers]\nphasegate = "x"\n', "mcp_servers.phasegate"),
    (
        "codex",
        ".codex/config.toml",
        'mcp_servers = { phasegate = { command = "/venv/bin/phasegate" } }\n',
        "mcp_servers.phasegate",
    ),
    ("gemini", ".gemini/settings.json", "[1, 2]", "not a JSON object"),
    ("gemini", ".gemini/settings.json", '// mine\n{"ui": {}}', "with comments"),
    ("gemini", ".gemini/settings.json", '{"tools": {"exclude": "x"}}', "tools.exclude"),
    ("cursor", ".cursor/mcp.json", '{"mcpServers": {"phasegate": 3}}', "mcpServers.phasegate"),
    (None, ".mcp.json", "{", "is not valid JSON"),
]


@pytest.mark.parametrize(
    ("agent", "rel", "text", "key"), MALFORMED, ids=[f"{a}-{k}" for a, _, _, k in MALFORMED]
)
def test_a_config_init_cannot_merge_is_refused_and_nothing_is_written(
    tmp_path: Path, agent: str | None, rel: str, text: str, key: str
) -> None:
    """Broken JSON or TOML, or something else where phasegate needs a table or a list: exit 1,
    one line naming the file and the key, and not a byte written anywhere (no settings, no
    state, no token)."""
    root = tmp_path / "bare"
    root.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    _write(root, {rel: text})
    before = _tree(root)
    done = run_cli(root, "init", *(("--agent", agent) if agent else ()))
    assert done.returncode == 1, done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"phasegate: {rel}"), done.stderr
    assert key in lines[0] and "wrote nothing" in lines[0] and "Traceback" not in done.stderr
    assert _tree(root) == before
    assert not (tmp_path / "user-config").exists()


def test_an_agent_init_cannot_set_up_is_refused_with_one_line_and_nothing_written(
    tmp_path: Path,
) -> None:
    """An unknown harness: exit 1, one line naming the supported ones, and not a file written."""
    root = tmp_path / "bare"
    root.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    done = run_cli(root, "init", "--agent", "claude", "--agent", "aider")
    assert done.returncode == 1, done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("phasegate: ") and "'aider'" in lines[0]
    assert "claude, codex, gemini or cursor" in lines[0]
    assert _tree(root) == {}
    assert not (tmp_path / "user-config").exists()


def test_a_local_settings_file_tracked_by_git_gets_no_token(tmp_path: Path, home: Path) -> None:
    """A `.claude/settings.local.json` in git's index would carry the token into a commit: init
    refuses, saying how to untrack it, and writes nothing."""
    root = make_project_repo(tmp_path / "repo")
    _write(root, {LOCAL: "{}\n"})
    subprocess.run(["git", "add", LOCAL], cwd=root, check=True)
    before = _tree(root)
    done = run_cli(root, "init", "--agent", "claude")
    assert done.returncode == 1
    assert f"git rm --cached {LOCAL}" in done.stderr and len(done.stderr.splitlines()) == 1
    assert _tree(root) == before


@pytest.mark.parametrize("target", ["docs", "outside"])
def test_a_linked_claude_folder_is_refused_and_the_token_goes_nowhere(
    tmp_path: Path, home: Path, target: str
) -> None:
    """A committed `.claude` link (into a tracked folder, or out of the repository) would carry
    the token where git or others see it: init refuses in one line and writes nothing."""
    root = make_project_repo(tmp_path / "repo")
    outside = tmp_path / "outside"
    outside.mkdir()
    _write(root, {"docs/settings.local.json": "{}\n"})
    (root / ".claude").symlink_to(root / "docs" if target == "docs" else outside)
    subprocess.run(["git", "add", "docs", ".claude"], cwd=root, check=True)
    before = _tree(root)
    done = run_cli(root, "init", "--name", "alice", "--agent", "claude")
    assert done.returncode == 1 and len(done.stderr.splitlines()) == 1
    assert "goes through a link (.claude)" in done.stderr
    assert _tree(root) == before and list(outside.iterdir()) == []
    assert "pga_" not in (root / "docs" / "settings.local.json").read_text()


def test_the_local_file_is_owner_only_whatever_its_mode_was(tmp_path: Path, home: Path) -> None:
    """A pre-existing world-readable settings.local.json doesn't leave the token readable."""
    root = make_project_repo(tmp_path / "repo")
    _write(root, {LOCAL: "{}\n"})
    (root / LOCAL).chmod(0o666)
    _init(root, "claude")
    assert (root / LOCAL).stat().st_mode & 0o777 == 0o600
    assert "PHASEGATE_AGENT_TOKEN" in (root / LOCAL).read_text()


def test_the_agent_token_is_kept_while_it_works_and_replaced_when_it_does_not(
    tmp_path: Path, home: Path
) -> None:
    """A token the local file holds that still authenticates an agent is kept; an unknown one,
    or a human's, is replaced by a new agent's, and init says which."""
    root = make_project_repo(tmp_path / "repo")
    _init(root, "claude")
    first = _json(root, LOCAL)["env"]["PHASEGATE_AGENT_TOKEN"]
    assert "agent token: claude (kept)" in _init(root, "claude").stdout
    assert _json(root, LOCAL)["env"]["PHASEGATE_AGENT_TOKEN"] == first

    for wrong in ("pga_not-a-token", _human_token(root)):
        data = _json(root, LOCAL)
        data["env"]["PHASEGATE_AGENT_TOKEN"] = wrong
        (root / LOCAL).write_text(json.dumps(data))
        out = _init(root, "claude").stdout
        token = _json(root, LOCAL)["env"]["PHASEGATE_AGENT_TOKEN"]
        assert token not in (wrong, first) and token.startswith("pga_")
        assert "(new), in .claude/settings.local.json" in out


def _human_token(root: Path) -> str:
    credentials = Path(os.environ["HOME"]) / ".config" / "phasegate" / "credentials.json"
    return str(json.loads(credentials.read_text())[str(root.resolve())]["token"])


def test_an_absolute_command_from_an_older_init_is_replaced_and_the_rest_kept(
    tmp_path: Path, home: Path
) -> None:
    """An entry naming phasegate by a path into someone's venv (what init used to write) gets
    the portable command and the missing settings; what else the user put in it stays."""
    root = make_project_repo(tmp_path / "repo")
    old = "/home/bob/repo/.venv/bin/phasegate"
    _write(
        root,
        {
            ".mcp.json": json.dumps(
                {"mcpServers": {"phasegate": {"command": old, "args": SERVER["args"], "env": {}}}}
            ),
            ".codex/config.toml": (
                'sandbox_mode = "read-only"\n\n[mcp_servers.phasegate]  # mine\n'
                f'command = "{old}"\nargs = ["mcp", "--project", "."]\nstartup_timeout_sec = 90\n'
                '\n[mcp_servers.phasegate.env]\nFOO = "bar"\n'
            ),
        },
    )
    out = _init(root, "claude", "codex").stdout
    assert out.count("phasegate's command had an absolute path") == 2
    assert _json(root, ".mcp.json")["mcpServers"]["phasegate"] == {**SERVER, "env": {}}
    codex = _toml(root, ".codex/config.toml")
    entry = codex["mcp_servers"]["phasegate"]
    assert {k: entry[k] for k in SERVER} == SERVER and entry["required"] is True
    assert entry["startup_timeout_sec"] == 90 and entry["env"] == {"FOO": "bar"}
    assert codex["sandbox_mode"] == "read-only"
    assert "# mine" in (root / ".codex" / "config.toml").read_text()


def test_an_http_entry_of_the_users_own_is_kept(tmp_path: Path, home: Path) -> None:
    """A phasegate entry that connects to `phasegate serve` over HTTP is the user's choice."""
    root = make_project_repo(tmp_path / "repo")
    entry = {"httpUrl": "http://127.0.0.1:8765/mcp", "headers": {"Authorization": "Bearer $T"}}
    _write(root, {".gemini/settings.json": json.dumps({"mcpServers": {"phasegate": entry}})})
    out = _init(root, "gemini").stdout
    assert "kept your phasegate entry (it connects over HTTP)" in out
    assert _json(root, ".gemini/settings.json")["mcpServers"]["phasegate"] == entry


def _executable(path: Path, text: str = "#!/bin/sh\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)
    return path


def test_the_command_is_a_name_path_finds_never_a_venv_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`phasegate` when PATH finds this installation's script (itself, a link to it, or one its
    interpreter runs); else `python3 -m phasegate` when PATH finds this interpreter; else
    `phasegate`, with a note that says what to put on PATH."""
    venv = tmp_path / "venv" / "bin"
    python = _executable(venv / "python")
    _executable(venv / "python3")
    script = _executable(venv / "phasegate", f"#!{python}\n")
    links = tmp_path / "links"
    links.mkdir()
    (links / "phasegate").symlink_to(script)  # pipx and uv tool put such links on PATH
    user_bin = tmp_path / "user-bin"  # pip install --user: a script run by this interpreter
    _executable(user_bin / "phasegate", f"#!{python}\n")
    other = _executable(tmp_path / "other" / "phasegate", "#!/usr/bin/python3\n")

    cases = [
        ([venv], ("phasegate",)),
        ([links], ("phasegate",)),
        ([user_bin], ("phasegate",)),
    ]
    for path, launcher in cases:
        monkeypatch.setenv("PATH", os.pathsep.join(map(str, path)))
        assert find_launcher(str(python))[0] == launcher, path

    (venv / "phasegate").unlink()  # running from a checkout: only the interpreter is there
    monkeypatch.setenv("PATH", str(venv))
    assert find_launcher(str(python)) == (("python3", "-m", "phasegate"), None)

    monkeypatch.setenv("PATH", str(other.parent))
    launcher, note = find_launcher(str(python))
    assert launcher == ("phasegate",) and note and str(other) in note
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    launcher, note = find_launcher(str(python))
    assert launcher == ("phasegate",) and note and "not on your PATH" in note


def test_init_writes_the_python_launcher_when_only_the_interpreter_is_on_path(
    tmp_path: Path, home: Path
) -> None:
    """Run from a checkout (no `phasegate` script), with the interpreter on PATH as `python3`:
    the harness starts `python3 -m phasegate`, which runs the CLI."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(os.path.realpath(sys.executable))
    source = Path(phasegate.__file__).parents[1]
    site = [p for p in sys.path if p.endswith("site-packages")]
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin",
        "PYTHONPATH": os.pathsep.join([str(source), *site]),
    }
    root = make_project_repo(tmp_path / "repo")
    for args in (["--project", str(root), "init"], ["--version"]):
        done = subprocess.run(
            ["python3", "-m", "phasegate", *args],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
    entry = _json(root, ".mcp.json")["mcpServers"]["phasegate"]
    assert entry == {"command": "python3", "args": ["-m", "phasegate", "mcp", "--project", "."]}


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
