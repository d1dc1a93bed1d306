"""Webhook notifications: a session reached a human gate, escalated, or completed.

Each change this process makes writes its outbox rows (the `notifications`
table, one per change and webhook) in the change's own transaction, so a
process that dies right after a commit has still queued the notification.
Nothing is sent in the transaction: a slow or failing webhook never slows a
transition. Rows are delivered by a thread (`start`) or, in a short-lived
command, once before it exits (`flush`). Each attempt first
claims its row with a conditional UPDATE, so a row is sent once even when
several processes deliver; a failure is retried with exponential backoff, and
every attempt is recorded on its row and logged to "phasegate.notify".

Wiring, in a long-running process (serve, mcp, worker):

    notifier = Notifier(orch)
    notifier.attach()  # queue deliveries with this process's changes
    notifier.start()   # deliver them, and rows other processes queued, on a thread
    ...
    notifier.stop()

A short-lived command calls `attach()` and, before it exits, `flush(3.0)`;
what isn't delivered by then stays in the outbox for the next process. With no
webhooks configured, none of these does anything.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Connection

from phasegate.domain.notice import REQUEST_APPROVAL, build_notice, notice_kind, slack_body
from phasegate.domain.session import Session
from phasegate.domain.workflow import PAUSE, PhaseKind
from phasegate.orchestrator import Change, Orchestrator
from phasegate.store import queries as q

log = logging.getLogger("phasegate.notify")

HTTP_TIMEOUT_S = 5.0
CLAIM_S = 60.0  # longer than any attempt: a claim ends only if its process died
POLL_S = 5.0  # how soon the thread sees rows other processes queued
FIRST_RETRY_S, MAX_RETRY_S, MAX_ATTEMPTS = 1.0, 300.0, 10
RETRYABLE_STATUS = frozenset({408, 425, 429})  # other 4xx answers won't change on a retry
BATCH = 50


class Notifier:
    """Queues webhook deliveries for this process's changes, and delivers the outbox."""

    def __init__(self, orch: Orchestrator) -> None:
        self.orch = orch
        self.settings = orch.project.settings.notify
        self.claimant = uuid.uuid4().hex  # names this notifier's claims on rows
        self._hooks = [("json", url) for url in self.settings.webhooks] + [
            ("slack", url) for url in self.settings.slack
        ]
        self._watched = {
            p.name
            for wf in orch.project.workflows.values()
            for p in wf.phases
            if p.kind in (PhaseKind.HUMAN, PhaseKind.FINAL)
        }
        self._queued: set[int] = set()  # rows this notifier wrote that are still pending
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._detach: list[Callable[[], None]] = []
        # Rows written in this thread's transaction in flight, until its commit is heard.
        self._in_flight = threading.local()

    @property
    def configured(self) -> bool:
        return self.settings.configured

    def attach(self) -> None:
        """Queue deliveries with every matching change this process commits from now on."""
        if self.configured and not self._detach:
            self._detach = [self.orch.enlist(self._queue_with), self.orch.subscribe(self._heard)]

    def start(self) -> None:
        """Deliver pending rows on a daemon thread until `stop`."""
        if not self.configured or self._thread is not None:
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="phasegate-notify", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop listening and delivering; an attempt in flight ends within its HTTP timeout."""
        for detach in self._detach:
            detach()
        self._detach = []
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def flush(self, timeout_s: float = 3.0) -> int:
        """Attempt the deliveries this notifier queued, once each, within `timeout_s`.

        Returns how many arrived. Only this notifier's rows: a command that
        queued nothing returns at once, however long other rows have waited.
        """
        with self._lock:
            mine = sorted(self._queued)
        if not mine:
            return 0
        return self._deliver(mine, deadline=time.monotonic() + timeout_s)

    # --- queueing (in the thread that committed the change) ------------------------

    def _queue_with(self, conn: Connection, session: Session, event: Mapping[str, Any]) -> None:
        """In the change's transaction: its outbox rows, if it is one the humans hear about."""
        self._in_flight.rows = None  # what an earlier transaction that never committed left
        if event["action"] not in (PAUSE, REQUEST_APPROVAL) and session.phase not in self._watched:
            return
        try:
            rows = self._rows(session, event)
        except Exception:  # a bug in building a notice loses it, never the change
            log.exception(
                "could not build the notifications for session %s version %d",
                session.id[:8],
                session.version,
            )
            return
        if rows:
            ids = q.insert_notifications(conn, rows)
            self._in_flight.rows = ((session.id, session.version), ids)

    def _heard(self, change: Change) -> None:
        """After the commit: the rows it queued are due; wake the delivering thread."""
        in_flight = getattr(self._in_flight, "rows", None)
        self._in_flight.rows = None
        if in_flight is None or in_flight[0] != (change.session_id, change.version):
            return
        with self._lock:
            self._queued.update(in_flight[1])
        self._wake.set()

    def _rows(self, session: Session, event: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The outbox rows of a change: one per webhook, or none if it isn't notified."""
        fields = ("action", "from_phase", "to_phase", "actor_id", "payload", "created_at")
        subject = {
            **{k: event[k] for k in fields},
            "workflow": session.workflow,
            "task": session.task_name,
        }
        workflow = self.orch.project.workflow(subject["workflow"])
        kind = notice_kind(workflow, subject["action"], subject["from_phase"], subject["to_phase"])
        if kind is None or kind not in self.settings.events:
            return []
        base_url = self.settings.dashboard_url or self.orch.project.server_url
        notice = build_notice(kind, session.id, session.version, subject, base_url)
        now = self.orch.clock()
        return [
            {
                "session_id": session.id,
                "version": session.version,
                "event": kind,
                "format": fmt,
                "url": url,
                "body": slack_body(notice) if fmt == "slack" else notice,
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
            }
            for fmt, url in self._hooks
        ]

    # --- delivering ---------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()  # before looking: a row queued meanwhile wakes the next wait
            try:
                self._deliver(None, deadline=None)
                pause = self._pause()
            except Exception:  # a database hiccup must not end delivery
                log.exception("delivering notifications failed; trying again in %.0fs", POLL_S)
                pause = POLL_S
            self._wake.wait(pause)

    def _deliver(self, among: Sequence[int] | None, *, deadline: float | None) -> int:
        """Attempt each due row (of `among`) once; the thread's pass ends early on `stop`."""
        tried: set[int] = set()
        delivered = 0
        while not (deadline is None and self._stopping.is_set()):
            with self.orch.db.read() as conn:
                due = q.due_notification_ids(conn, self.orch.clock(), BATCH, among)
            due = [i for i in due if i not in tried]
            if not due:
                break
            for notification_id in due:
                budget = HTTP_TIMEOUT_S
                if deadline is not None:
                    budget = min(budget, deadline - time.monotonic())
                if budget < 0.1:
                    return delivered
                tried.add(notification_id)
                delivered += self._attempt(notification_id, budget)
        return delivered

    def _attempt(self, notification_id: int, timeout_s: float) -> int:
        """Claim a row, POST it, record the outcome; 1 if it arrived, else 0."""
        now = self.orch.clock()
        with self.orch.db.write() as conn:
            row = q.claim_notification(
                conn, notification_id, self.claimant, now, now + timedelta(seconds=CLAIM_S)
            )
        if row is None:
            return 0  # another process holds it, or delivered it meanwhile
        status, error = _post(row["url"], row["body"], timeout_s)
        outcome = _outcome(row["attempts"], status, error, self.orch.clock())
        with self.orch.db.write() as conn:
            kept = q.finish_notification(conn, notification_id, self.claimant, outcome)
        _log_attempt(row, outcome, kept)
        if outcome["status"] != "pending":
            with self._lock:
                self._queued.discard(notification_id)
        return int(outcome["status"] == "delivered")

    def _pause(self) -> float:
        """Seconds until the soonest pending row may be attempted, at most POLL_S."""
        with self.orch.db.read() as conn:
            soonest = q.next_notification_due(conn)
        if soonest is None:
            return POLL_S
        return min(POLL_S, max(0.05, (soonest - self.orch.clock()).total_seconds()))


def _post(url: str, body: Mapping[str, Any], timeout_s: float) -> tuple[int | None, str | None]:
    """POST `body` as JSON: the HTTP status and what went wrong (None if it arrived)."""
    import httpx  # here: a process with no webhook to call never loads it

    try:
        response = httpx.post(
            url,
            json=body,
            timeout=timeout_s,
            follow_redirects=False,  # never to another scheme or host
            headers={"User-Agent": "phasegate"},
        )
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        return None, f"{type(exc).__name__}: {exc}"[:500]
    if response.is_redirect:
        where = response.headers.get("location", "?")[:200]
        return response.status_code, f"redirected to {where}; configure the final URL"
    if not response.is_success:
        answer = " ".join(response.text[:200].split())
        return response.status_code, f"HTTP {response.status_code}: {answer}"
    return response.status_code, None


def _outcome(attempts: int, status: int | None, error: str | None, now: datetime) -> dict[str, Any]:
    """The row after an attempt: delivered, retried after a backoff, or given up."""
    recorded: dict[str, Any] = {"last_status": status, "last_error": error}
    if error is None:
        return {**recorded, "status": "delivered", "delivered_at": now}
    retryable = status is None or status >= 500 or status in RETRYABLE_STATUS
    if retryable and attempts < MAX_ATTEMPTS:
        delay = min(FIRST_RETRY_S * 2 ** (attempts - 1), MAX_RETRY_S)
        return {**recorded, "status": "pending", "next_attempt_at": now + timedelta(seconds=delay)}
    return {**recorded, "status": "failed"}


def _log_attempt(row: Mapping[str, Any], outcome: Mapping[str, Any], kept: bool) -> None:
    what = {
        "delivered": "delivered",
        "pending": f"failed, next attempt at {outcome.get('next_attempt_at')}",
        "failed": "failed, given up",
    }[outcome["status"]]
    log.log(
        logging.INFO if outcome["status"] == "delivered" else logging.WARNING,
        "notification %d (%s of session %s) to %s: attempt %d %s (HTTP %s)%s%s",
        row["id"],
        row["event"],
        row["session_id"][:8],
        _redacted(row["url"]),
        row["attempts"],
        what,
        outcome["last_status"] or "-",
        f": {outcome['last_error']}" if outcome["last_error"] else "",
        "" if kept else "; its claim had run out, so another process retries it",
    )


def _redacted(url: str) -> str:
    """The URL's scheme and host only: webhook paths often hold the secret (Slack's do)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}/…"
