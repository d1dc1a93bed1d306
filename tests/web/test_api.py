"""The JSON API: every endpoint, decisions with versions, and bad input that changes nothing."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.web.conftest import WebEnv


def snapshot(env: WebEnv) -> list[tuple[str, str, int]]:
    """Every session's id, phase and version: to show that a refused request changed nothing."""
    sessions = env.orch.list_sessions(include_finished=True, limit=10_000)
    return sorted((s.id, s.phase, s.version) for s in sessions)


@pytest.fixture(scope="module")
def gate(env: WebEnv) -> Any:
    """One session at the test review gate, shared by the read-only tests."""
    return env.gate_session()


def test_me_names_the_human(client: TestClient, env: WebEnv) -> None:
    """/api/me says who the bearer token belongs to."""
    response = client.get("/api/me", headers=env.bearer)
    assert response.status_code == 200
    assert response.json() == {"name": "alice", "kind": "human", "roles": []}


def test_list_puts_the_gate_session_in_needs_human(
    client: TestClient, env: WebEnv, gate: Any
) -> None:
    """needs_human=true lists the session waiting at the test review gate, and only those."""
    env.new_session()
    body = client.get("/api/sessions?needs_human=true", headers=env.bearer).json()
    assert gate.id in [s["id"] for s in body["sessions"]]
    assert {s["waiting_on"] for s in body["sessions"]} == {"human"}


def test_list_pages_with_keysets_that_cover_every_session_once(
    client: TestClient, env: WebEnv, gate: Any
) -> None:
    """Pages of one, each starting after the previous page's `next`, list each session once."""
    env.new_session()
    env.new_session()
    whole = client.get("/api/sessions?limit=500", headers=env.bearer).json()
    assert whole["next"] is None and len(whole["sessions"]) >= 3
    seen, after = [], ""
    while True:
        page = client.get(f"/api/sessions?limit=1{after}", headers=env.bearer).json()
        seen += [s["id"] for s in page["sessions"]]
        if page["next"] is None:
            break
        after = f"&after={page['next']}"
    assert seen == [s["id"] for s in whole["sessions"]]


def test_list_filters_by_phase(client: TestClient, env: WebEnv, gate: Any) -> None:
    """phase=awaiting_test_review returns only sessions in that phase."""
    body = client.get("/api/sessions?phase=awaiting_test_review", headers=env.bearer).json()
    assert body["sessions"] and {s["phase"] for s in body["sessions"]} == {"awaiting_test_review"}


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=abc",
        "limit=100000",
        "offset=1",
        "after=not-a-cursor",
        "phase=nonsense",
        "needs_human=maybe",
    ],
)
def test_list_refuses_bad_query_parameters(client: TestClient, env: WebEnv, query: str) -> None:
    """A bad query parameter is a 422 that names the parameter."""
    response = client.get(f"/api/sessions?{query}", headers=env.bearer)
    assert response.status_code == 422
    assert query.split("=")[0] in response.json()["error"]["message"]


def test_list_by_unknown_task_is_404(client: TestClient, env: WebEnv) -> None:
    """Filtering by a task that doesn't exist says so with a 404."""
    response = client.get("/api/sessions?task=no-such-task", headers=env.bearer)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_show_returns_view_and_context(client: TestClient, env: WebEnv, gate: Any) -> None:
    """A session by unique prefix has the contract fields and its context (tests, red run)."""
    body = client.get(f"/api/sessions/{gate.id[:10]}", headers=env.bearer).json()
    assert body["id"] == gate.id and body["phase"] == "awaiting_test_review"
    assert body["allowed_actions"] == ["approve", "reject", "pause", "cancel"]
    assert body["context"]["tests"]["paths"] == ["test_calc.py"]
    assert body["context"]["red_run"]["status"] == "failed"


@pytest.mark.parametrize("path", ["", "/timeline", "/test-runs", "/diff", "/brief"])
@pytest.mark.parametrize("ref", ["0123456789abcdef", "not-hex!", "zz"])
def test_unknown_session_is_404(client: TestClient, env: WebEnv, path: str, ref: str) -> None:
    """Every session endpoint answers an unknown or malformed id with 404, not 5xx."""
    response = client.get(f"/api/sessions/{ref}{path}", headers=env.bearer)
    assert response.status_code == 404
    assert "phasegate ls" in response.json()["error"]["message"]


def test_timeline_lists_events_without_hashes(client: TestClient, env: WebEnv, gate: Any) -> None:
    """The timeline has every event in order, with the agent's note, and no chain internals."""
    events = client.get(f"/api/sessions/{gate.id}/timeline", headers=env.bearer).json()["events"]
    assert [e["action"] for e in events] == [
        "begin",
        "load_design",
        "submit_tests",
        "request_approval",
    ]
    assert events[2]["payload"]["note"] == "I covered positive and negative sums."
    assert "hash" not in events[0] and "prev_hash" not in events[0]


def test_test_runs_include_the_red_run_failures(client: TestClient, env: WebEnv, gate: Any) -> None:
    """The red run at the gate is listed with its failing tests."""
    runs = client.get(f"/api/sessions/{gate.id}/test-runs", headers=env.bearer).json()["runs"]
    assert runs[0]["kind"] == "red" and runs[0]["status"] == "failed"
    assert {f["id"] for f in runs[0]["evidence"]["failures"]} == {
        "test_calc.py::test_add",
        "test_calc.py::test_add_negative",
    }


def test_diff_shows_the_submitted_tests(client: TestClient, env: WebEnv, gate: Any) -> None:
    """The diff against the base commit contains the new test file."""
    body = client.get(f"/api/sessions/{gate.id}/diff", headers=env.bearer).json()
    assert body["base_commit"] == gate.base_commit
    assert "+++ b/test_calc.py" in body["diff"] and "+def test_add():" in body["diff"]


def test_brief_says_what_is_decided_for_humans_only(
    client: TestClient, env: WebEnv, gate: Any
) -> None:
    """The brief names the gate's question and the red run; an agent's token is refused."""
    body = client.get(f"/api/sessions/{gate.id[:10]}/brief", headers=env.bearer).json()
    assert (body["session_id"], body["task"]) == (gate.id, gate.task_name)
    brief = body["brief"]
    assert (brief["kind"], brief["phase"], brief["round"]) == ("review", "awaiting_test_review", 1)
    assert brief["question"].startswith("Are these the right tests")
    assert brief["run_status"] == "failed" and brief["run_expected_to_fail"] is True
    assert brief["submitted"]["paths"] == ["test_calc.py"]
    refused = client.get(f"/api/sessions/{gate.id}/brief", headers=env.agent_bearer)
    assert refused.status_code == 403 and "brief" not in refused.json()


def test_start_session_returns_201(client: TestClient, env: WebEnv) -> None:
    """Starting a session on a task by design path returns it, waiting for a tester."""
    again = {"task": "design.md", "again": True}  # other tests may have sessions on it
    response = client.post("/api/sessions", headers=env.bearer, json=again)
    assert response.status_code == 201
    assert response.json()["phase"] == "generating_tests"
    second = client.post("/api/sessions", headers=env.bearer, json={"task": "design.md"})
    assert (second.status_code, second.json()["error"]["code"]) == (409, "already_active")
    existing = client.get(
        f"/api/sessions/{second.json()['error']['session_id']}", headers=env.bearer
    )
    assert existing.json()["waiting_on"] is not None  # one in progress, named


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"{not json", 400),
        (b"[1, 2]", 400),
        (b"\xff\xfe", 400),
        (b"{}", 422),
        (b'{"task": ""}', 422),
        (b'{"task": "design.md", "extra": 1}', 422),
        (b'{"task": 5}', 422),
        (b'{"task": "no/such/design.md"}', 404),
    ],
)
def test_start_session_refuses_bad_bodies(
    client: TestClient, env: WebEnv, body: bytes, status: int
) -> None:
    """A malformed or invalid start request is a clear 4xx and starts nothing."""
    before = snapshot(env)
    response = client.post(
        "/api/sessions", headers={**env.bearer, "content-type": "application/json"}, content=body
    )
    assert response.status_code == status
    assert response.json()["error"]["message"]
    assert snapshot(env) == before


def test_huge_body_is_413_and_changes_nothing(client: TestClient, env: WebEnv, gate: Any) -> None:
    """A 1 MB decision body is refused before it is read, and the session stays as it was."""
    before = snapshot(env)
    response = client.post(
        f"/api/sessions/{gate.id}/reject", headers=env.bearer, json={"comment": "x" * 1_000_000}
    )
    assert response.status_code == 413
    assert snapshot(env) == before


def test_overlong_comment_is_422(client: TestClient, env: WebEnv, gate: Any) -> None:
    """A comment over 20,000 characters is refused with 422, nothing changed."""
    before = snapshot(env)
    response = client.post(
        f"/api/sessions/{gate.id}/reject", headers=env.bearer, json={"comment": "x" * 20_001}
    )
    assert response.status_code == 422
    assert snapshot(env) == before


def test_approve_with_the_seen_version_moves_on(client: TestClient, env: WebEnv) -> None:
    """Approving the tests with the version the human saw sends the session to the coder."""
    session = env.gate_session()
    response = client.post(
        f"/api/sessions/{session.id}/approve",
        headers=env.bearer,
        json={"comment": "good tests", "expected_version": session.version},
    )
    assert response.status_code == 200
    assert response.json()["phase"] == "generating_implementation"
    assert env.orch.timeline(session.id)[-1]["actor_id"] == "alice"


def test_stale_decision_is_409_with_the_current_state(client: TestClient, env: WebEnv) -> None:
    """A decision on an old version is refused with 409, the current session, and no change."""
    session = env.new_session()
    env.orch.decide(session.id, "pause", env.human)
    before = snapshot(env)
    response = client.post(
        f"/api/sessions/{session.id}/cancel",
        headers=env.bearer,
        json={"expected_version": session.version},
    )
    assert response.status_code == 409
    body = response.json()
    assert "changed since you looked" in body["error"]["message"]
    assert body["session"]["version"] == session.version + 1 and body["session"]["paused"]
    assert snapshot(env) == before


def test_reject_needs_a_comment_and_then_records_it(client: TestClient, env: WebEnv) -> None:
    """Rejecting without a comment is refused; with one, the feedback is in the context."""
    session = env.gate_session()
    refused = client.post(f"/api/sessions/{session.id}/reject", headers=env.bearer, json={})
    assert refused.status_code == 409 and "without a comment" in refused.json()["error"]["message"]
    response = client.post(
        f"/api/sessions/{session.id}/reject",
        headers=env.bearer,
        json={"comment": "test zero too", "expected_version": session.version},
    )
    assert response.status_code == 200 and response.json()["phase"] == "generating_tests"
    feedback = env.orch.get(session.id).context["feedback"]
    assert feedback[-1]["comment"] == "test zero too" and feedback[-1]["by"] == "alice"


@pytest.mark.parametrize("action", ["approve", "reject", "retry", "reopen_tests", "resume"])
def test_action_in_the_wrong_phase_is_409(client: TestClient, env: WebEnv, action: str) -> None:
    """A gate action while an agent works is a 409 naming the phase; nothing changes."""
    session = env.new_session()
    before = snapshot(env)
    response = client.post(
        f"/api/sessions/{session.id}/{action}", headers=env.bearer, json={"comment": "because"}
    )
    assert response.status_code == 409
    assert response.json()["error"]["phase"] == "generating_tests"
    assert response.json()["session"]["id"] == session.id
    assert snapshot(env) == before


def test_pause_resume_cancel(client: TestClient, env: WebEnv) -> None:
    """Pause, resume and cancel work on an agent phase and end in cancelled."""
    session = env.new_session()
    url = f"/api/sessions/{session.id}"
    assert client.post(f"{url}/pause", headers=env.bearer).json()["paused"] is True
    assert client.post(f"{url}/resume", headers=env.bearer).json()["phase"] == "generating_tests"
    assert client.post(f"{url}/cancel", headers=env.bearer).json()["phase"] == "cancelled"
    assert client.post(f"{url}/pause", headers=env.bearer).status_code == 409


def test_decision_on_unknown_session_is_404(client: TestClient, env: WebEnv) -> None:
    """Deciding on a session that doesn't exist is a 404."""
    response = client.post("/api/sessions/abcdef0123/approve", headers=env.bearer, json={})
    assert response.status_code == 404


def test_idempotent_decision_replays(client: TestClient, env: WebEnv) -> None:
    """The same idempotency key twice returns the same result and decides once."""
    session = env.new_session()
    body = {"idempotency_key": "k-1"}
    first = client.post(f"/api/sessions/{session.id}/pause", headers=env.bearer, json=body)
    second = client.post(f"/api/sessions/{session.id}/pause", headers=env.bearer, json=body)
    assert first.status_code == second.status_code == 200
    assert first.json()["version"] == second.json()["version"]
    assert [e["action"] for e in env.orch.timeline(session.id)].count("pause") == 1
