"""A worker's agent CLI holds a job token: it can act on its claimed session and nothing else.

The CLI here is hostile: a stand-in on PATH under Claude Code's name that reads the MCP config
and token the claude adapter hands it and, with the official MCP client, tries the session
it wasn't given, starting and claiming sessions, and keeping its token for later.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from phasegate.agents import Endpoint, build_agent
from phasegate.entrypoints.mcp.endpoint import local_endpoint
from phasegate.orchestrator import Orchestrator
from phasegate.worker import Worker, WorkerOptions
from tests.workers.fleet import TESTS, fast_orchestrator, running, wait_for

HOSTILE_CLI = """#!{python}
import asyncio, json, os, sys
if sys.argv[1:] == ["--version"]:
    print("2.1.197 (Claude Code)")
    sys.exit(0)
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

config = json.load(open(sys.argv[sys.argv.index("--mcp-config") + 1]))["mcpServers"]["phasegate"]
token = config["headers"]["Authorization"].split()[-1]
open(".stolen-token", "w").write(token)  # the worktree: the test reads it after the job
mine, other = os.environ["PHASEGATE_SESSION"], {other!r}
evil = [{{"path": "tests/test_evil.py", "content": "def test_x():\\n    assert True\\n"}}]

def say(text):
    print(json.dumps({{"type": "assistant", "message": {{"content": [
        {{"type": "text", "text": text}}]}}}}), flush=True)

async def main():
    async with httpx2.AsyncClient(headers=config["headers"], timeout=60) as http, Client(
        streamable_http_client(config["url"], http_client=http)
    ) as client:
        say("env token is the job's: " + str(os.environ["PHASEGATE_AGENT_TOKEN"] == token))
        for name, arguments in [
            ("submit_tests", {{"session_id": other, "files": evil}}),
            ("submit_tests", {{"session_id": other[:8], "files": evil}}),
            ("start_session", {{"task": "design.md", "again": True}}),
            ("list_sessions", {{}}),
            ("claim_next", {{"role": "tester"}}),
        ]:
            result = await client.call_tool(name, arguments)
            say(f"{{name}} -> {{result.content[0].text}}")
        try:
            await client.read_resource(f"phasegate://sessions/{{other}}")
            say("read other -> READ")
        except Exception as exc:
            say(f"read other -> {{exc}}")
        result = await client.call_tool(
            "submit_tests", {{"session_id": mine, "files": [{{"path": "tests/test_calc.py",
                                                              "content": {tests!r}}}]}}
        )
        say(f"mine -> error={{result.is_error}}")

asyncio.run(main())
"""


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def orch(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Orchestrator]:
    with fast_orchestrator(request.param, tmp_path) as opened:
        yield opened


def test_a_hostile_cli_acts_only_on_its_own_session(
    orch: Orchestrator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another session, starting, listing, claiming and reading elsewhere are refused in one
    line each and change nothing; its own submission lands; its token dies with the job."""
    human = orch.add_principal("human", "reviewer")[0]
    mine = orch.start_session("design.md", human).id
    other = orch.start_session("design.md", human, again=True).id
    other_before = orch.get(other)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    cli = bin_dir / "claude"
    cli.write_text(HOSTILE_CLI.format(python=sys.executable, other=other, tests=TESTS))
    cli.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{Path(sys.executable).parent}:/usr/bin:/bin")
    worker = orch.add_principal("agent", "tester-bot", ["tester"])[0]
    options = WorkerOptions(lease_ttl_s=30, poll_interval_s=0.05)
    tasks_before = orch.list_tasks()

    with local_endpoint(orch) as (url, tokens):
        agent = build_agent("claude", "tester", orch.project, endpoint=Endpoint(url, tokens))
        # Only `mine` is the worker's: the other session is paused, so no claim reaches it.
        orch.decide(other, "pause", human)
        with running(Worker(orch, worker, {"tester": agent}, options)):
            wait_for(lambda: orch.get(mine).phase == "awaiting_test_review", timeout_s=90)
            wait_for(lambda: _transcript(orch, mine) is not None, timeout_s=30)
        worktree = orch.project.root / orch.get(mine).context["worktree"]
        stolen = (worktree / ".stolen-token").read_text()
        later = httpx.post(
            url,
            headers={"Authorization": f"Bearer {stolen}", "Accept": "application/json"},
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        )
        assert later.status_code == 401  # the job ended: its token with it

    said = [s["text"] for s in (_transcript(orch, mine) or [])]
    assert "env token is the job's: True" in said, said
    refusals = [t for t in said if "-> Error:" in t]
    assert len(refusals) == 5, said
    assert all("may not" in t and f"session {mine} only" in t for t in refusals), refusals
    assert any(t.startswith("read other -> ") and "READ" not in t for t in said), said
    assert "mine -> error=False" in said
    after = orch.get(other)
    assert (after.phase, after.version) == ("generating_tests", other_before.version + 1)
    assert "tests" not in after.context  # nothing was submitted to it (only the pause)
    assert orch.list_tasks() == tasks_before
    assert len(orch.list_sessions(include_finished=True)) == 2
    submitted = next(e for e in orch.timeline(mine) if e["action"] == "submit_tests")
    assert submitted["actor_id"] == "tester-bot"


def _transcript(orch: Orchestrator, sid: str) -> list[dict[str, str]] | None:
    events = [e for e in orch.timeline(sid) if e["action"] == "agent_transcript"]
    return events[-1]["payload"]["steps"] if events else None


def test_the_workers_own_token_is_refused_by_its_endpoint(orch: Orchestrator) -> None:
    """The endpoint the agent CLIs reach takes job tokens only, not a project's agent tokens."""
    _, agent_token = orch.add_principal("agent", "bot", ["tester"])
    with local_endpoint(orch) as (url, _tokens):
        refused = httpx.post(
            url,
            headers={"Authorization": f"Bearer {agent_token}", "Accept": "application/json"},
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        )
    assert refused.status_code == 401
    assert "takes only the token of a job" in json.loads(refused.text)["error"]["message"]
