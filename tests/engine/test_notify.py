"""Webhook notifications: gates, escalations and completions reach real HTTP servers, once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from engine_helpers import act, bare_session, drive, make_project_repo, phasegate, run_cli

from phasegate.config import NotifySettings, Project, Settings, load_settings, open_project
from phasegate.domain.principal import Principal
from phasegate.errors import ConfigError
from phasegate.notify import Notifier
from phasegate.orchestrator import Orchestrator
from phasegate.store.schema import notifications

TEST_COMMAND = "python -m pytest -q -p no:cacheprovider"
DASHBOARD = "http://dashboard.example:8765"


class Hooks:
    """Webhook receivers on 127.0.0.1: each POST is recorded; a path may script its answers."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.answers: dict[str, list[int]] = {}  # path -> statuses to answer, then 200
        self.delay_s = 0.0
        self._arrived = threading.Condition()
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                time.sleep(hooks.delay_s)
                status = hooks._answer(self.path, body)
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def _answer(self, path: str, body: dict[str, Any]) -> int:
        with self._arrived:
            self.received.append((path, body))
            self._arrived.notify_all()
            script = self.answers.get(path) or []
            return script.pop(0) if script else 200

    def bodies(self, path: str) -> list[dict[str, Any]]:
        with self._arrived:
            return [body for p, body in self.received if p == path]

    def wait_for(self, path: str, count: int, timeout_s: float = 15) -> list[dict[str, Any]]:
        """The bodies POSTed to `path` once there are `count` of them."""
        with self._arrived:
            self._arrived.wait_for(lambda: len(self.bodies(path)) >= count, timeout_s)
        bodies = self.bodies(path)
        assert len(bodies) >= count, f"{path} got {len(bodies)} of {count} notifications"
        return bodies


@pytest.fixture
def hooks() -> Iterator[Hooks]:
    receiver = Hooks()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


def open_orch(root: Path, db_url: str, notify: NotifySettings) -> Orchestrator:
    settings = Settings(
        database_url=db_url, test_command=TEST_COMMAND, max_fix_attempts=2, notify=notify
    )
    return Orchestrator.open(Project(root, settings))


@pytest.fixture
def orch(project_root: Path, db_url: str, hooks: Hooks) -> Iterator[Orchestrator]:
    """An orchestrator whose webhooks are the local receiver's /json and /slack."""
    notify = NotifySettings(
        webhooks=[hooks.url("/json")], slack=[hooks.url("/slack")], dashboard_url=DASHBOARD
    )
    orchestrator = open_orch(project_root, db_url, notify)
    yield orchestrator
    orchestrator.close()


@pytest.fixture
def notifier(orch: Orchestrator) -> Iterator[Notifier]:
    """A notifier listening to `orch` (not delivering until started or flushed)."""
    attached = Notifier(orch)
    attached.attach()
    yield attached
    attached.stop()


def session_in(orch: Orchestrator, phase: str) -> str:
    """A new session (no worktree) moved to `phase` through the kernel's one write path."""
    session = bare_session(orch)
    act(orch, session.id, "begin")
    act(orch, session.id, "load_design")
    return drive(orch, session.id, phase).id


def outbox(orch: Orchestrator) -> list[dict[str, Any]]:
    with orch.db.read() as conn:
        rows = conn.execute(sa.select(notifications).order_by(notifications.c.id))
        return [dict(r._mapping) for r in rows]


def settled(orch: Orchestrator, timeout_s: float = 10) -> list[dict[str, Any]]:
    """The outbox once no row is pending (the last attempt recorded, not only received)."""
    deadline = time.monotonic() + timeout_s
    while True:
        rows = outbox(orch)
        if all(r["status"] != "pending" for r in rows):
            return rows
        assert time.monotonic() < deadline, rows
        time.sleep(0.05)


def test_a_gate_is_posted_as_json_and_as_slack_text(
    orch: Orchestrator, notifier: Notifier, hooks: Hooks, agent: Principal
) -> None:
    """Reaching the test review gate POSTs the JSON payload and Slack's {"text"} to each hook;
    an agent's request_approval message is sent too, as the why."""
    notifier.start()
    sid = session_in(orch, "awaiting_test_review")
    task = orch.get(sid).task_name
    [payload] = hooks.wait_for("/json", 1)
    assert {k: payload[k] for k in ("event", "session_id", "task", "phase", "from_phase")} == {
        "event": "gate",
        "session_id": sid,
        "task": task,
        "phase": "awaiting_test_review",
        "from_phase": "generating_tests",
    }
    assert payload["action"] == "submit_tests" and payload["at"]
    assert payload["url"] == f"{DASHBOARD}/sessions/{sid}"
    [slack] = hooks.wait_for("/slack", 1)
    assert slack == {
        "text": f"phasegate: session {sid[:8]} ({task}) waits for your review of its tests "
        f"— <{DASHBOARD}/sessions/{sid}>"
    }

    orch.request_approval(sid, agent, "Two tests for add;\nboth fail now.")
    asked = hooks.wait_for("/json", 2)[1]
    assert (asked["event"], asked["action"]) == ("gate", "request_approval")
    assert asked["why"] == "Two tests for add;\nboth fail now."
    slack_ask = hooks.wait_for("/slack", 2)[1]["text"]
    assert "asks for your decision at awaiting_test_review: Two tests for add; both" in slack_ask
    assert [(r["status"], r["attempts"], r["last_status"]) for r in settled(orch)] == [
        ("delivered", 1, 200)
    ] * 4


def test_escalations_and_completions_are_sent_and_agent_phases_are_not(
    orch: Orchestrator, notifier: Notifier, hooks: Hooks
) -> None:
    """The fix loop running out escalates, a final approval completes, a pause escalates;
    phases where agents or phasegate work send nothing."""
    stuck = session_in(orch, "awaiting_human_intervention")
    done = session_in(orch, "completed")
    paused = session_in(orch, "generating_implementation")
    act(orch, paused, "pause")
    assert notifier.flush(10) == 2 * 7
    sent = [(b["session_id"], b["event"], b["phase"]) for b in hooks.bodies("/json")]
    assert sent == [
        (stuck, "gate", "awaiting_test_review"),
        (stuck, "escalation", "awaiting_human_intervention"),
        (done, "gate", "awaiting_test_review"),
        (done, "gate", "awaiting_final_review"),
        (done, "completion", "completed"),
        (paused, "gate", "awaiting_test_review"),
        (paused, "escalation", "generating_implementation"),
    ]
    texts = [b["text"] for b in hooks.bodies("/slack")]
    assert "needs a human to step in" in texts[1] and texts[4].endswith(
        f"completed — <{DASHBOARD}/sessions/{done}>"
    )
    assert "was paused in generating_implementation" in texts[6]


def test_a_failed_delivery_is_retried_with_backoff_and_recorded(
    project_root: Path, db_url: str, hooks: Hooks
) -> None:
    """A hook answering 500 then 200 gets the notification twice; the row says delivered
    after 2 attempts, and the first attempt's error was kept until then."""
    hooks.answers["/flaky"] = [500]
    orch = open_orch(project_root, db_url, NotifySettings(webhooks=[hooks.url("/flaky")]))
    notifier = Notifier(orch)
    notifier.attach()
    try:
        sid = session_in(orch, "awaiting_test_review")
        assert notifier.flush(5) == 0
        [row] = outbox(orch)
        assert (row["status"], row["attempts"], row["last_status"]) == ("pending", 1, 500)
        assert row["next_attempt_at"] > row["created_at"]
        notifier.start()
        bodies = hooks.wait_for("/flaky", 2)
        assert [b["session_id"] for b in bodies] == [sid, sid]
        [row] = settled(orch)
        assert (row["status"], row["attempts"], row["last_status"]) == ("delivered", 2, 200)
        assert row["last_error"] is None and row["delivered_at"] is not None
    finally:
        notifier.stop()
        orch.close()


def test_two_delivering_processes_send_each_notification_once(
    project_root: Path, db_url: str, hooks: Hooks
) -> None:
    """Two notifiers on two orchestrators (two processes' worth) race over the same outbox:
    every row reaches the hook exactly once."""
    hooks.delay_s = 0.05  # each POST takes a while, so the two overlap
    notify = NotifySettings(webhooks=[hooks.url("/race")])
    first, second = (open_orch(project_root, db_url, notify) for _ in range(2))
    queuing = Notifier(first)
    queuing.attach()
    racers = [queuing, Notifier(second)]
    try:
        ids = [session_in(first, "awaiting_test_review") for _ in range(8)]
        for racer in racers:
            racer.start()
        hooks.wait_for("/race", len(ids))
        rows = settled(first)
        time.sleep(0.5)  # room for a duplicate to arrive
        assert sorted(b["session_id"] for b in hooks.bodies("/race")) == sorted(ids)
        assert {(r["status"], r["attempts"]) for r in rows} == {("delivered", 1)}
    finally:
        for racer in racers:
            racer.stop()
        first.close()
        second.close()


def test_without_webhooks_nothing_is_queued_and_no_thread_runs(
    project_root: Path, db_url: str
) -> None:
    """No [notify] webhooks: a gate writes no outbox row and the notifier starts no thread."""
    orch = open_orch(project_root, db_url, NotifySettings())
    notifier = Notifier(orch)
    notifier.attach()
    notifier.start()
    try:
        session_in(orch, "completed")
        assert outbox(orch) == []
        assert not [t for t in threading.enumerate() if t.name == "phasegate-notify"]
        assert notifier.flush(1) == 0
    finally:
        notifier.stop()
        orch.close()


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ('webhooks = ["ftp://example.com/hook"]', "notify.webhooks"),
        ('slack = ["hooks.slack.com/services/T0/B0/x"]', "notify.slack"),
        ('webhooks = ["http://example.com:99999/"]', "notify.webhooks"),
        ('dashboard_url = "javascript:alert(1)"', "notify.dashboard_url"),
    ],
)
def test_a_webhook_that_is_not_an_http_url_is_refused_in_one_line(
    tmp_path: Path, table: str, key: str
) -> None:
    """load_settings refuses a malformed or non-http(s) URL with one line naming the key."""
    (tmp_path / "phasegate.toml").write_text(f"[notify]\n{table}\n")
    with pytest.raises(ConfigError) as refused:
        load_settings(tmp_path)
    message = str(refused.value)
    assert "\n" not in message and key in message and "http:// or https://" in message


def test_cli_approve_notifies_before_it_exits(
    tmp_path: Path, db_url: str, hooks: Hooks, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`phasegate approve` at the final review, with no server running, has POSTed the
    completion to the hook by the time the process has exited."""
    root = make_project_repo(tmp_path / "repo")
    monkeypatch.chdir(root)
    monkeypatch.setenv("PHASEGATE_DATABASE_URL", db_url)
    assert phasegate("init")[0] == 0
    with (root / "phasegate.toml").open("a") as toml:
        toml.write(f'\n[notify]\nwebhooks = ["{hooks.url("/cli")}"]\n')
    orch = Orchestrator.open(open_project(root))  # no notifier: the driving is silent
    try:
        sid = session_in(orch, "awaiting_final_review")
    finally:
        orch.close()
    done = run_cli(root, "approve", sid, "-m", "ship it", db_url=db_url)
    assert done.returncode == 0, done.stderr
    [sent] = hooks.bodies("/cli")
    assert (sent["session_id"], sent["event"], sent["why"]) == (sid, "completion", "ship it")
    assert sent["url"] is None and sent["path"] == f"/sessions/{sid}"


DIES_AFTER_THE_COMMIT = """
import os, sys
from engine_helpers import act
from phasegate.config import NotifySettings, Project, Settings
from phasegate.notify import Notifier
from phasegate.orchestrator import Orchestrator

root, db_url, hook, sid = sys.argv[1:]
notify = NotifySettings(webhooks=[hook])
orch = Orchestrator.open(Project(root, Settings(database_url=db_url, notify=notify)))
orch.subscribe(lambda change: os._exit(7))  # dies first thing after the commit
Notifier(orch).attach()
act(orch, sid, "submit_tests")
"""


def test_a_process_that_dies_right_after_a_gate_commits_has_queued_its_notification(
    project_root: Path, db_url: str, hooks: Hooks
) -> None:
    """The outbox row commits with the change itself: a process killed the instant after its
    commit, before any listener ran, leaves the gate notification queued, and the next
    process's notifier delivers it, once."""
    orch = open_orch(project_root, db_url, NotifySettings(webhooks=[hooks.url("/died")]))
    try:
        sid = session_in(orch, "generating_tests")
        engine = Path(__file__).parent
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                DIES_AFTER_THE_COMMIT,
                str(project_root),
                db_url,
                hooks.url("/died"),
                sid,
            ],
            env={
                **os.environ,
                "PYTHONPATH": os.pathsep.join([str(engine), str(engine.parents[1])]),
            },
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 7, done.stderr  # it died after the commit, as planned
        session = orch.get(sid)
        assert session.phase == "awaiting_test_review"
        assert [(r["session_id"], r["version"], r["status"]) for r in outbox(orch)] == [
            (sid, session.version, "pending")
        ]
        assert hooks.bodies("/died") == []
        later = Notifier(orch)
        later.start()
        try:
            [sent] = hooks.wait_for("/died", 1)
            assert (sent["session_id"], sent["event"]) == (sid, "gate")
            assert [r["status"] for r in settled(orch)] == ["delivered"]
        finally:
            later.stop()
    finally:
        orch.close()


def test_a_change_that_fails_to_commit_leaves_no_notification(
    orch: Orchestrator, notifier: Notifier, hooks: Hooks
) -> None:
    """The outbox rows and the change commit together or not at all: a change that fails after
    its rows were written (here, a later writer in the same transaction) leaves the session as
    it was and the outbox empty."""
    sid = session_in(orch, "generating_tests")
    before = orch.get(sid)

    def fails(*_args: object) -> None:
        raise RuntimeError("the transaction fails after the outbox rows")

    remove = orch.enlist(fails)
    try:
        with pytest.raises(RuntimeError):
            act(orch, sid, "submit_tests")
    finally:
        remove()
    assert outbox(orch) == []
    after = orch.get(sid)
    assert (after.phase, after.version) == (before.phase, before.version)
    act(orch, sid, "submit_tests")  # the same change, now committed, with its rows
    assert [(r["version"], r["format"]) for r in outbox(orch)] == [
        (before.version + 1, "json"),
        (before.version + 1, "slack"),
    ]


def test_a_notice_that_cannot_be_built_loses_the_notification_not_the_change(
    orch: Orchestrator,
    notifier: Notifier,
    hooks: Hooks,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A bug in building a notice (here, build_notice raising) is logged; the gate is reached
    all the same, with nothing queued for it."""

    def broken(*_args: object, **_kwargs: object) -> dict[str, Any]:
        raise KeyError("a field the notice needs")

    monkeypatch.setattr("phasegate.notify.build_notice", broken)
    sid = session_in(orch, "generating_tests")
    with caplog.at_level("ERROR", logger="phasegate.notify"):
        after = act(orch, sid, "submit_tests")
    assert after.phase == "awaiting_test_review"
    assert outbox(orch) == []
    assert "could not build the notifications for session" in caplog.text


def test_a_listener_that_fails_neither_stops_the_others_nor_fails_the_change(
    orch: Orchestrator, notifier: Notifier, hooks: Hooks, caplog: pytest.LogCaptureFixture
) -> None:
    """After the commit every listener hears the change: one that raises is logged, the next
    still runs (here the notifier, whose rows are then due), and the caller gets its session."""

    def fails(_change: object) -> None:
        raise RuntimeError("a broken listener")

    heard: list[int] = []
    orch.subscribe(fails)
    orch.subscribe(lambda change: heard.append(change.version))
    sid = session_in(orch, "generating_tests")
    with caplog.at_level("ERROR", logger="phasegate.kernel"):
        after = act(orch, sid, "submit_tests")
    assert after.phase == "awaiting_test_review" and heard[-1] == after.version
    assert "a listener failed on session" in caplog.text
    assert notifier.flush(10) == 2  # the notifier heard its rows were committed, and sent them
    assert len(hooks.bodies("/json")) == len(hooks.bodies("/slack")) == 1
