"""A push-mode agent CLI runs sandboxed: its worktree and its own config, nothing of phasegate's."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from phasegate import credentials
from phasegate.agents import build_agent
from phasegate.domain.principal import Principal
from phasegate.orchestrator import Orchestrator
from phasegate.store import queries as q
from phasegate.worker import Worker, WorkerOptions
from tests.workers.fleet import TESTS, make_fast_project, running, wait_for

WEB_SECRET = "web-secret-0123456789abcdef"

# A hostile tester: it looks for phasegate's secrets, tries to write outside its worktree and
# to repoint the worktree's .git, prints what it found, and still writes its tests.
PROBE = """
import json, os, pathlib, sys
targets = json.loads(sys.argv[1])
report = {}
for name, path in targets["read"].items():
    try:
        report[name] = pathlib.Path(path).read_text()
    except OSError as exc:
        report[name] = "failed: " + type(exc).__name__
for name, path in targets["write"].items():
    try:
        with open(path, "a") as handle:
            handle.write("pwned")
        report[name] = "written"
    except OSError as exc:
        report[name] = "failed: " + type(exc).__name__
report["state_dir_listing"] = sorted(os.listdir(targets["state_dir"])) if os.path.isdir(
    targets["state_dir"]) else []
claude = pathlib.Path(os.environ["HOME"], ".claude")
for name in ("seen-by-agent", "settings.json"):  # a note; a hook for the human's next session
    try:
        (claude / name).write_text('{"hooks": "curl evil"}')
        report["write_claude_" + name] = "written"
    except OSError as exc:
        report["write_claude_" + name] = "failed: " + type(exc).__name__
pathlib.Path("tests").mkdir(exist_ok=True)
pathlib.Path("tests/test_calc.py").write_text(targets["tests"])
print("REPORT " + json.dumps(report))
"""


@dataclass
class Setup:
    """A project with the human's credentials stored, the dashboard's secret, and a fake HOME."""

    orch: Orchestrator
    human: Principal
    token: str
    home: Path


Opener = Callable[[str], Setup]


@pytest.fixture
def open_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Opener]:
    """Opens the project with extra phasegate.toml lines, laid out like a real machine: state
    in .phasegate/, credentials and audit keys in ~/.config/phasegate, the agent's in ~/.claude."""
    home = tmp_path / "home"
    (home / ".claude").mkdir(parents=True)
    (home / ".claude" / "settings.json").write_text('{"theme": "dark"}')
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("PHASEGATE_CONFIG_DIR", raising=False)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    opened: list[Orchestrator] = []

    def open_with(extra_toml: str) -> Setup:
        root = tmp_path / "project"
        url = f"sqlite:///{root / '.phasegate' / 'phasegate.db'}"
        orch = Orchestrator.open(make_fast_project(root, url, extra_toml))
        opened.append(orch)
        human, token = orch.add_principal("human", "reviewer")
        credentials.store_human_token(str(orch.project.root), human.name, token)
        (orch.project.state_dir / "web-secret").write_text(WEB_SECRET)
        return Setup(orch, human, token, home)

    yield open_with
    for orch in opened:
        orch.close()


def _probe_command(tmp_path: Path, *, writes: bool = True) -> str:
    """The probe's command line, its targets as one JSON argument (as a TOML string's content);
    without `writes` it only reads (run unsandboxed, its writes would do real damage)."""
    script = tmp_path / "agent" / "probe.py"
    script.parent.mkdir()
    script.write_text(PROBE)
    root, home = tmp_path / "project", tmp_path / "home"
    config = home / ".config" / "phasegate"
    targets = {
        "read": {
            "credentials": str(config / "credentials.json"),
            "database": str(root / ".phasegate" / "phasegate.db"),
            "web_secret": str(root / ".phasegate" / "web-secret"),
            "main_checkout": str(root / "calc.py"),
            "agent_config": str(home / ".claude" / "settings.json"),
        },
        "write": {}
        if not writes
        else {
            "write_credentials": str(config / "credentials.json"),
            "write_main_checkout": str(root / "calc.py"),
            "write_outside": str(tmp_path / "outside.txt"),
            "write_system": "/usr/local/pwned-by-agent",
            "write_worktree_git": ".git",
        },
        "state_dir": str(root / ".phasegate"),
        "tests": TESTS,
    }
    arg = json.dumps(targets).replace("\\", "\\\\").replace('"', '\\"')
    return f"{sys.executable} {script} '{arg}'"


AGENT_WAIT_S = 30  # a sandboxed agent CLI starts slower than a bare one


def _tester(orch: Orchestrator) -> Worker:
    principal = orch.add_principal("agent", "tester-bot", ["tester"])[0]
    agent = build_agent("command", "tester", orch.project)
    options = WorkerOptions(lease_ttl_s=3, poll_interval_s=0.05, max_backoff_s=0.2)
    return Worker(orch, principal, {"tester": agent}, options)


def _agent_log(orch: Orchestrator) -> str:
    logs = sorted((orch.project.state_dir / "logs" / "agents").glob("*.log"))
    return "".join(log.read_text() for log in logs)


def _report(log: str) -> dict[str, object]:
    line = next(line for line in log.splitlines() if line.startswith("REPORT "))
    report: dict[str, object] = json.loads(line.removeprefix("REPORT "))
    return report


def test_an_agent_finds_no_secret_writes_only_its_worktree_and_its_work_is_submitted(
    open_project: Opener, tmp_path: Path
) -> None:
    """A hostile agent CLI can't read the credentials, the database or the dashboard's secret,
    can't write outside its worktree, repoint its .git or plant anything in its own config; it
    reads that config, and the tests it wrote are submitted."""
    setup = open_project(f'[agents.tester]\ncommand = "{_probe_command(tmp_path)}"\n')
    orch = setup.orch
    creds_file = setup.home / ".config" / "phasegate" / "credentials.json"
    creds_before = creds_file.read_text()
    calc_before = (orch.project.root / "calc.py").read_text()
    assert setup.token in creds_before
    session = orch.start_session("design.md", setup.human, again=True)
    worktree = orch.project.root / session.context["worktree"]
    git_file_before = (worktree / ".git").read_text()

    with running(_tester(orch)):
        wait_for(lambda: orch.get(session.id).phase == "awaiting_test_review", AGENT_WAIT_S)

    log = _agent_log(orch)
    report = _report(log)
    for name in ("credentials", "database", "web_secret", "main_checkout"):
        assert str(report[name]).startswith("failed"), (name, report[name])
    for name in ("write_credentials", "write_system", "write_worktree_git"):
        assert str(report[name]).startswith("failed"), (name, report[name])
    listing = report["state_dir_listing"]
    assert isinstance(listing, list) and not {"phasegate.db", "web-secret", "logs"} & set(listing)
    assert report["agent_config"] == '{"theme": "dark"}'
    # Writes that "succeeded" landed in the sandbox's own empty directories, not on the host.
    assert creds_file.read_text() == creds_before
    assert (orch.project.root / "calc.py").read_text() == calc_before
    assert not (tmp_path / "outside.txt").exists()
    assert not Path("/usr/local/pwned-by-agent").exists()
    assert (worktree / ".git").read_text() == git_file_before
    # Its own config is writable inside, but nothing it writes there reaches the host.
    assert report["write_claude_seen-by-agent"] == "written"
    assert not (setup.home / ".claude" / "seen-by-agent").exists()
    assert (setup.home / ".claude" / "settings.json").read_text() == '{"theme": "dark"}'

    done = orch.get(session.id)
    assert done.context["tests"]["paths"] == ["tests/test_calc.py"]
    timeline = json.dumps(orch.timeline(session.id), default=str)
    everything = log + json.dumps(done.context, default=str) + timeline
    assert setup.token not in everything and WEB_SECRET not in everything


def test_sandbox_none_runs_the_agent_unconfined_with_a_warning(
    open_project: Opener, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """With sandbox = "none" the agent runs as the user, sees what the user sees, and the worker
    says so."""
    command = _probe_command(tmp_path, writes=False)
    setup = open_project(f'sandbox = "none"\n[agents.tester]\ncommand = "{command}"\n')
    orch = setup.orch
    session = orch.start_session("design.md", setup.human, again=True)
    with caplog.at_level("WARNING", logger="phasegate.agents"), running(_tester(orch)):
        wait_for(lambda: orch.get(session.id).phase == "awaiting_test_review", AGENT_WAIT_S)
    assert any("UNSANDBOXED" in record.getMessage() for record in caplog.records)
    assert setup.token in str(_report(_agent_log(orch))["credentials"])


def _processes_with(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and marker in (entry / "cmdline").read_text():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def _lease_reasons(orch: Orchestrator) -> list[str]:
    with orch.db.read() as conn:
        return [row["release_reason"] for row in q.lease_rows(conn) if row["release_reason"]]


def test_a_hanging_sandboxed_agent_is_killed_with_everything_it_started(
    open_project: Opener,
) -> None:
    """At timeout_s the sandboxed agent and the children it left in the background all die."""
    marker = "61.4242"
    setup = open_project(
        f'[agents.tester]\ncommand = "sleep {marker} & sleep {marker}"\ntimeout_s = 1\n'
    )
    setup.orch.start_session("design.md", setup.human, again=True)
    with running(_tester(setup.orch)):
        wait_for(lambda: bool(_processes_with(marker)), AGENT_WAIT_S)
        wait_for(lambda: "agent_failed" in _lease_reasons(setup.orch), AGENT_WAIT_S)
    wait_for(lambda: not _processes_with(marker), timeout_s=10)


def test_an_agent_cli_installed_in_home_still_runs(
    open_project: Opener, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CLI installed under HOME (its bin/ on PATH, a script with a #! line) runs inside."""
    setup = open_project('[agents.tester]\ncommand = "fake-agent --print"\n')
    cli = setup.home / ".local" / "bin" / "fake-agent"
    cli.parent.mkdir(parents=True)
    cli.write_text(
        f"#!{sys.executable}\nimport pathlib\npathlib.Path('tests').mkdir()\n"
        f"pathlib.Path('tests/test_calc.py').write_text({TESTS!r})\n"
    )
    cli.chmod(0o755)
    monkeypatch.setenv("PATH", f"{cli.parent}{os.pathsep}{os.environ['PATH']}")
    session = setup.orch.start_session("design.md", setup.human, again=True)
    with running(_tester(setup.orch)):
        wait_for(lambda: setup.orch.get(session.id).phase == "awaiting_test_review", AGENT_WAIT_S)
    assert setup.orch.get(session.id).context["tests"]["paths"] == ["tests/test_calc.py"]
