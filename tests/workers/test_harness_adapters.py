"""The claude, codex and gemini adapters when their CLI is missing, too old or misbehaves.

The CLI here is a stand-in on PATH under the real program's name: these tests are about what
phasegate does with a process that exits non-zero, hangs or prints garbage. The real CLIs
driving whole sessions are in tests/harnesses/.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from phasegate.agents import Endpoint, build_agent
from phasegate.entrypoints.mcp.scope import JobTokens
from phasegate.errors import ConfigError
from phasegate.orchestrator import Orchestrator
from phasegate.worker import Worker, WorkerOptions
from tests.workers.fleet import PHASEGATE, fast_orchestrator, make_fast_project, running, wait_for

ENDPOINT = Endpoint("http://127.0.0.1:9/mcp", JobTokens())  # never reached by these stand-ins

STAND_IN = """#!{python}
import json, sys, time
if sys.argv[1:] == ["--version"]:
    print({version!r})
    sys.exit(0)
{body}
"""
GARBAGE_THEN_EXIT_3 = """
print(json.dumps({"type": "assistant", "message": {"content": [
    {"type": "text", "text": "I will write the tests now."},
    {"type": "tool_use", "name": "mcp__phasegate__get_session_status",
     "input": {"session_id": "x"}},
]}}), flush=True)
print("\\x1b[2J#### segfault-ish garbage {{{", flush=True)
sys.exit(3)
"""
HANGS = """
print(json.dumps({"type": "assistant", "message": {"content": [
    {"type": "text", "text": "thinking..."}]}}), flush=True)
time.sleep(600)
"""
QUITS_WITHOUT_SUBMITTING = """
print(json.dumps({"type": "result", "subtype": "success", "result": "All done!"}), flush=True)
"""


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def orch(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Orchestrator]:
    """A fast project whose tester times out after 3 s, on each database."""
    toml = "agent_failures_to_human = 5\n[agents.tester]\ntimeout_s = 3\n"
    with fast_orchestrator(request.param, tmp_path, toml) as opened:
        yield opened


def _stand_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str, version: str) -> None:
    """Put a fake `claude` first on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    program = bin_dir / "claude"
    program.write_text(STAND_IN.format(python=sys.executable, version=version, body=body))
    program.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{Path(sys.executable).parent}:/usr/bin:/bin")


def _one_attempt(orch: Orchestrator, caplog: pytest.LogCaptureFixture) -> tuple[str, list[Any]]:
    """Start a session and let a claude-adapter worker fail on it once."""
    human = orch.add_principal("human", "reviewer")[0]
    sid = orch.start_session("design.md", human).id
    principal = orch.add_principal("agent", "tester-bot", ["tester"])[0]
    agent = build_agent("claude", "tester", orch.project, endpoint=ENDPOINT)
    options = WorkerOptions(lease_ttl_s=5, poll_interval_s=0.05, max_backoff_s=30)
    with (
        caplog.at_level(logging.INFO, logger="phasegate.worker"),
        running(Worker(orch, principal, {"tester": agent}, options)),
    ):
        wait_for(lambda: _actions(orch, sid).count("agent_failed") >= 1, timeout_s=60)
    return sid, orch.timeline(sid)


def _actions(orch: Orchestrator, sid: str) -> list[str]:
    return [event["action"] for event in orch.timeline(sid)]


@pytest.mark.parametrize(
    ("body", "reason", "shown"),
    [
        (GARBAGE_THEN_EXIT_3, "claude exited 3", "segfault-ish garbage"),
        (HANGS, "claude timed out after 3 s and was killed", "thinking..."),
        (QUITS_WITHOUT_SUBMITTING, "claude ended without submitting anything", "All done!"),
    ],
    ids=["exits-non-zero-with-garbage", "hangs", "quits-without-submitting"],
)
def test_a_misbehaving_harness_leaves_the_session_unchanged_and_says_why(
    orch: Orchestrator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    body: str,
    reason: str,
    shown: str,
) -> None:
    """The lease is released, the phase and files are as before, and the timeline (a
    transcript, then the failure) and the worker's log say what the CLI did."""
    _stand_in(tmp_path, monkeypatch, body, "2.1.197 (Claude Code)")
    sid, timeline = _one_attempt(orch, caplog)
    session = orch.get(sid)
    assert (session.phase, session.lease_owner) == ("generating_tests", None)
    assert "tests" not in session.context
    worktree = orch.project.root / session.context["worktree"]
    assert not (worktree / "tests").exists()
    transcript = next(e for e in timeline if e["action"] == "agent_transcript")
    assert transcript["payload"]["harness"] == "claude"
    assert any(shown in step["text"] for step in transcript["payload"]["steps"])
    failure = next(e for e in timeline if e["action"] == "agent_failed")
    assert reason in failure["payload"]["reason"]
    assert any(reason in record.getMessage() for record in caplog.records)
    assert not any("\x1b" in record.getMessage() for record in caplog.records)  # written out
    assert [e["action"] for e in timeline].index("agent_transcript") < [
        e["action"] for e in timeline
    ].index("agent_failed")
    assert all(report.ok for report in orch.verify_audit(sid))


def test_the_transcript_reads_tool_calls_without_file_contents(
    orch: Orchestrator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A garbage line is kept as cut text, a tool call as its name and arguments."""
    _stand_in(tmp_path, monkeypatch, GARBAGE_THEN_EXIT_3, "2.1.197 (Claude Code)")
    _, timeline = _one_attempt(orch, caplog)
    steps = next(e for e in timeline if e["action"] == "agent_transcript")["payload"]["steps"]
    assert {"kind": "tool", "text": "get_session_status(session_id=x)"} in steps
    assert {"kind": "text", "text": "I will write the tests now."} in steps


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        (
            None,
            "claude is not on PATH: the claude adapter runs it; install it with npm install "
            "-g @anthropic-ai/claude-code@2.1.197",
        ),
        (
            "1.0.3 (Claude Code)",
            "the claude adapter needs @anthropic-ai/claude-code 2.1.0 or newer",
        ),
        (
            "no version here",
            "is an unknown version; install it with npm install -g "
            "@anthropic-ai/claude-code@2.1.197",
        ),
    ],
    ids=["missing", "too-old", "unreadable-version"],
)
def test_a_missing_or_old_harness_is_one_line_naming_the_npm_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, version: str | None, expected: str
) -> None:
    """`phasegate worker --agent claude` stops at once, in one line, and writes nothing."""
    if version is None:
        monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}:/usr/bin:/bin")
    else:
        _stand_in(tmp_path, monkeypatch, "", version)
    (tmp_path / "db").mkdir()
    project = make_fast_project(tmp_path / "project", f"sqlite:///{tmp_path / 'db' / 'p.db'}")
    subprocess.run(
        [PHASEGATE, "init", "--name", "alice"], cwd=project.root, check=True, capture_output=True
    )
    done = subprocess.run(
        [PHASEGATE, "worker", "--role", "tester", "--agent", "claude"],
        cwd=project.root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and expected in done.stderr, done.stderr
    tokens = subprocess.run(
        [PHASEGATE, "token", "ls", "--json"], cwd=project.root, capture_output=True, text=True
    )
    assert "worker-" not in tokens.stdout  # no agent was minted for a worker that never ran


def test_an_adapter_without_an_endpoint_is_a_config_error(orch: Orchestrator) -> None:
    """The harness adapters need phasegate's MCP endpoint to hand their CLI."""
    with pytest.raises(ConfigError, match="needs phasegate's MCP endpoint"):
        build_agent("codex", "tester", orch.project)
