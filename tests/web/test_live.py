"""Live updates over a real socket: SSE from this and other processes; health and metrics."""

from __future__ import annotations

import os
import subprocess
import time

import httpx
from starlette.testclient import TestClient

from tests.web.conftest import PHASEGATE, WebEnv
from tests.web.sse_client import SseReader


def cli(env: WebEnv, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the phasegate CLI in another process, as the human, on the same database."""
    return subprocess.run(
        [PHASEGATE, "--project", str(env.root), *args],
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "PHASEGATE_TOKEN": env.human_token,
            "PHASEGATE_DATABASE_URL": env.orch.project.database_url,
        },
        check=True,
        timeout=60,
    )


def test_change_from_another_process_reaches_sse_within_a_second(
    live_url: str, env: WebEnv
) -> None:
    """A pause made by the CLI in another process arrives on /api/events within a second."""
    session = env.new_session()
    reader = SseReader(f"{live_url}/api/events?session={session.id}", env.bearer)
    try:
        cli(env, "pause", session.id)
        done = time.perf_counter()
        message = reader.next_change(5, session_id=session.id, action="pause")
        assert message.received_at - done < 1.0
        assert message.data["version"] == session.version + 1
    finally:
        reader.close()


def test_session_filter_only_streams_that_session(live_url: str, env: WebEnv) -> None:
    """With ?session=ID, changes to other sessions are not sent."""
    mine, other = env.new_session(), env.new_session()
    reader = SseReader(f"{live_url}/api/events?session={mine.id}", env.bearer)
    try:
        env.orch.decide(other.id, "pause", env.human)
        env.orch.decide(mine.id, "pause", env.human)
        message = reader.next_change(3)
        assert message.data["session_id"] == mine.id
    finally:
        reader.close()


def test_reconnect_with_last_event_id_replays_missed_events(live_url: str, env: WebEnv) -> None:
    """A client reconnecting with Last-Event-ID gets the events it missed."""
    session = env.new_session()
    env.orch.decide(session.id, "pause", env.human)
    pause_id = env.orch.timeline(session.id)[-1]["id"]
    env.orch.decide(session.id, "resume", env.human)
    reader = SseReader(
        f"{live_url}/api/events?session={session.id}",
        {**env.bearer, "Last-Event-ID": str(pause_id)},
    )
    try:
        assert reader.next_change(3).data["action"] == "resume"
    finally:
        reader.close()


def test_a_client_that_drops_before_its_first_change_resumes_from_ready(
    live_url: str, env: WebEnv
) -> None:
    """`ready` carries the stream's starting position: a reconnect from it misses nothing."""
    session = env.new_session()
    url = f"{live_url}/api/events?session={session.id}"
    with httpx.stream("GET", url, headers=env.bearer, timeout=5) as response:
        lines = response.iter_lines()
        ready = [line for line in iter(lambda: next(lines), "") if line.startswith("id:")]
    env.orch.decide(session.id, "pause", env.human)
    reader = SseReader(url, {**env.bearer, "Last-Event-ID": ready[0][3:].strip()})
    try:
        message = reader.next_change(3)
        assert (message.data["action"], message.data["version"]) == ("pause", session.version + 1)
    finally:
        reader.close()


def test_a_last_event_id_that_is_not_a_position_starts_a_fresh_stream(
    live_url: str, env: WebEnv
) -> None:
    """A Last-Event-ID the server never gave out is ignored: live changes still come."""
    session = env.new_session()
    reader = SseReader(
        f"{live_url}/api/events?session={session.id}", {**env.bearer, "Last-Event-ID": "x.1"}
    )
    try:
        env.orch.decide(session.id, "pause", env.human)
        assert reader.next_change(3).data["action"] == "pause"
    finally:
        reader.close()


def test_events_need_a_human(live_url: str, env: WebEnv) -> None:
    """The event stream refuses no token (401) and agent tokens (403)."""
    assert httpx.get(f"{live_url}/api/events").status_code == 401
    assert httpx.get(f"{live_url}/api/events", headers=env.agent_bearer).status_code == 403


def test_healthz(live_url: str) -> None:
    """/healthz answers 200 with the database dialect, without a token."""
    body = httpx.get(f"{live_url}/healthz").json()
    assert body["status"] == "ok" and body["database"] in ("sqlite", "postgresql")


def test_metrics_count_phases_transitions_and_gate_waits(live_url: str, env: WebEnv) -> None:
    """/metrics has sessions by phase, the transitions seen, test runs and gate wait times."""
    session = env.gate_session()
    env.orch.decide(session.id, "reject", env.human, comment="more tests")
    deadline = time.monotonic() + 5
    text = ""
    while time.monotonic() < deadline:
        text = httpx.get(f"{live_url}/metrics").text
        if 'phasegate_gate_wait_seconds_count{gate="awaiting_test_review"}' in text:
            break
        time.sleep(0.1)
    assert 'phasegate_sessions{phase="generating_tests"}' in text
    assert 'phasegate_transitions_total{action="reject",to_phase="generating_tests"}' in text
    assert 'phasegate_test_runs_total{kind="red",status="failed"}' in text
    assert 'phasegate_gate_wait_seconds_count{gate="awaiting_test_review"}' in text


INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "test", "version": "1"},
    },
}
MCP_HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}


def test_mcp_is_mounted_for_agents_at_slash_mcp(live_url: str, env: WebEnv) -> None:
    """POST /mcp initializes an MCP session for an agent token; a human token is refused."""
    agent = httpx.post(
        f"{live_url}/mcp", json=INITIALIZE, headers={**MCP_HEADERS, **env.agent_bearer}
    )
    assert agent.status_code == 200 and '"serverInfo"' in agent.text
    human = httpx.post(f"{live_url}/mcp", json=INITIALIZE, headers={**MCP_HEADERS, **env.bearer})
    assert human.status_code == 403


def test_mcp_answers_the_hosts_the_server_was_told_to_serve(
    client: TestClient, env: WebEnv
) -> None:
    """A Host in allowed_hosts (a team's server name) reaches /mcp; an unknown Host does not."""
    ok = client.post("/mcp", json=INITIALIZE, headers={**MCP_HEADERS, **env.agent_bearer})
    assert ok.status_code == 200 and '"serverInfo"' in ok.text
    evil = client.post(
        "/mcp", json=INITIALIZE, headers={**MCP_HEADERS, **env.agent_bearer, "Host": "evil.example"}
    )
    assert evil.status_code in (400, 421)
