"""Claude Code, Codex and Gemini CLI, unmodified and headless, drive whole `tdd` sessions
through phasegate's MCP server (stdio and HTTP) against scripted local models.

The model is `fake_models`: a 127.0.0.1 server speaking each vendor's wire protocol and playing
an obedient agent that follows phasegate's results. A reviewer thread approves each gate with
`phasegate approve`. One harness run spans the whole session (the agent waits at each gate
with wait_for_decision). The audit trail must show who did each step, through which harness.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import GOOD_IMPL, GOOD_TESTS, make_project_repo
from tests.harnesses import harness_run, installed_clis
from tests.harnesses.agent_clis import HARNESSES, PhasegateServer, command
from tests.harnesses.fake_models.brain import CODE_FILE, PROMPT, TEST_FILE, Call, short_name
from tests.harnesses.fake_models.server import FakeModels
from tests.harnesses.human_side import GATES, Reviewer, on_branch, phasegate_serve
from tests.mcp.conftest import CliProject

pytestmark = [pytest.mark.node, pytest.mark.slow, pytest.mark.timeout(420)]

clis = installed_clis.clis  # the shared session fixture, requested by name below
HARNESS_TIMEOUT_S = 240
AGENT, HUMAN = "bot", "alice"
#: The whole session, in order: (action, actor kind, actor id, role).
TRAIL = [
    ("begin", "system", "phasegate", None),
    ("load_design", "system", "phasegate", None),
    ("submit_tests", "agent", AGENT, "tester"),
    ("request_approval", "agent", AGENT, "tester"),
    ("approve", "human", HUMAN, None),
    ("submission_refused", "agent", AGENT, "coder"),
    ("submit_implementation", "agent", AGENT, "coder"),
    ("tests_failed", "system", "phasegate", None),
    ("fix_failures", "agent", AGENT, "coder"),
    ("tests_passed", "system", "phasegate", None),
    ("request_approval", "agent", AGENT, "tester"),
    ("approve", "human", HUMAN, None),
]

#: The tools the agent called, in order (repeats: waiting for servers, the human, a long run).
AGENT_STEPS = (
    r"(WaitForMcpServers )*start_session submit_tests request_approval (wait_for_decision )+"
    r"submit_implementation submit_implementation (run_tests )+fix_failures (run_tests )+"
    r"request_approval (wait_for_decision )*wait_for_decision"
)


@pytest.fixture
def project(tmp_path: Path) -> CliProject:
    """The calculator project, initialised with `phasegate init` by the human alice."""
    project = CliProject(make_project_repo(tmp_path / "project").resolve())
    project.run("init", "--name", HUMAN)
    return project


def _report(run: harness_run.Run | None, fake: FakeModels, project: CliProject, serve: Path) -> str:
    """Everything needed to see why a run went wrong."""
    parts = [run.tail() if run else "the harness did not run"]
    parts.append(f"--- model requests ---\n{fake.log()}")
    parts.append(f"--- phasegate ls ---\n{project.run('ls', '--all', check=False).stdout}")
    if serve.exists():
        parts.append(f"--- phasegate serve (tail) ---\n{serve.read_text()[-3000:]}")
    return "\n".join(parts)


@pytest.mark.parametrize("transport", ["stdio", "http"])
@pytest.mark.parametrize("name", ["claude", "codex", "gemini"])
def test_a_real_harness_takes_a_session_from_start_to_completed(
    name: str,
    transport: str,
    project: CliProject,
    tmp_path: Path,
    clis: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The harness starts a session, submits tests, waits for the human, has an edit of the
    approved test refused, fails once, fixes, and is approved: the audit trail names the agent,
    the human and the harness (MCP client and transport) for every step, and nothing left
    127.0.0.1."""
    harness = HARNESSES[name]
    scratch = tmp_path / "home"
    scratch.mkdir()
    monkeypatch.setenv("HOME", str(scratch))  # `--version` may write its home too
    exe = installed_clis.cli(clis, name)
    fake, reviewer = FakeModels(), Reviewer(project)
    serve_log = tmp_path / "serve.log"
    run = None
    with fake, _phasegate(transport, project, project.agent_token(AGENT), serve_log) as server:
        argv, env = command(name, exe, scratch, server, fake.url, PROMPT)
        reviewer.start()
        try:
            run = harness_run.run(argv, env, project.root, tmp_path / "logs", HARNESS_TIMEOUT_S)
        finally:
            reviewer.finish()
    report = _report(run, fake, project, serve_log)
    assert run is not None and run.returncode == 0, report
    assert not reviewer.problem, f"{reviewer.problem}\n{report}"
    assert [gate for _, gate in reviewer.approved] == list(GATES), report

    sid = reviewer.approved[0][0]
    session = project.json("show", sid)
    assert (session["phase"], session["fix_attempts"]) == ("completed", 1), report
    events: list[dict[str, Any]] = project.json("log", sid)
    trail = [(e["action"], e["actor_kind"], e["actor_id"], e["actor_role"]) for e in events]
    assert trail == TRAIL, report
    _assert_harness_recorded(events, harness.client, harness.version, transport)
    _assert_refusal_and_runs(events)
    _assert_branch(project.root, sid)
    assert project.run("audit", "verify", sid, check=False).returncode == 0

    # The agent waited at both gates and got every result back through the harness.
    steps = " ".join(short_name(s.name) or s.name for s in fake.steps if isinstance(s, Call))
    assert re.fullmatch(AGENT_STEPS, steps), f"{steps}\n{report}"
    assert "is completed" in run.stdout, report  # the model's last words reached the user
    assert ("127.0.0.1", fake.port) in run.connections(), run.connections()  # traced
    assert not run.remote_connections(), run.remote_connections()
    unexpected = [
        (method, path, status)
        for method, path, status in fake.paths()
        if status != 200 or not any(re.fullmatch(p, path) for p in harness.model_paths)
    ]
    assert not unexpected, report


@contextmanager
def _phasegate(
    transport: str, project: CliProject, token: str, serve_log: Path
) -> Iterator[PhasegateServer]:
    """phasegate's MCP server for the harness: its stdio command, or `phasegate serve`."""
    if transport == "stdio":
        yield PhasegateServer("stdio", project.root, token)
        return
    with phasegate_serve(project, serve_log) as url:
        yield PhasegateServer("http", project.root, token, url)


def _assert_harness_recorded(
    events: list[dict[str, Any]], client: str, version: str, transport: str
) -> None:
    """Every step the agent took names the harness it came through."""
    via = {"client": client, "version": version, "transport": transport}
    for event in events:
        if event["actor_kind"] == "agent":
            assert event["payload"].get("via") == via, event
    started = events[0]["payload"].get("started_by")
    assert started == f"agent {AGENT} (tester)", events[0]


def _assert_refusal_and_runs(events: list[dict[str, Any]]) -> None:
    """The refused submission named the locked test; the failing run, then the passing one."""
    by_action = {e["action"]: e["payload"] for e in events}
    refused = by_action["submission_refused"]
    assert (refused["submission"], refused["cause"]) == ("submit_implementation", "locked_test")
    assert TEST_FILE in refused["paths"], refused
    assert by_action["submit_implementation"]["paths"] == [CODE_FILE]
    assert by_action["tests_failed"]["counts"]["failed"] == 2, by_action["tests_failed"]
    assert by_action["tests_passed"]["counts"] == {
        "total": 2,
        "passed": 2,
        "failed": 0,
        "errors": 0,
        "skipped": 0,
    }


def _assert_branch(root: Path, sid: str) -> None:
    """The session branch holds the approved test unchanged and the fixed code."""
    assert on_branch(root, sid, TEST_FILE) == GOOD_TESTS
    assert on_branch(root, sid, CODE_FILE) == GOOD_IMPL
