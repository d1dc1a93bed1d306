"""Prometheus metrics at /metrics: sessions (by phase, stale), transitions, test runs, gate waits.

Counts by phase and of stale sessions are read from the database at scrape
time (true across every process); transitions, test runs and gate waits are
counted from the event feed by this server since it started.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import anyio.to_thread
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response

from phasegate.feed import EventFeed
from phasegate.orchestrator import Orchestrator
from phasegate.store import queries as q

log = logging.getLogger(__name__)
GATE_WAIT_BUCKETS = (1, 10, 60, 300, 900, 3600, 4 * 3600, 24 * 3600, 7 * 24 * 3600)
TEST_RUN_ACTIONS = {"tests_passed": "passed", "tests_failed": "failed", "tests_flagged": "flagged"}


class SessionsByPhase(Collector):
    """phasegate_sessions{phase}: read at scrape time."""

    def __init__(self, orch: Orchestrator) -> None:
        self.orch = orch

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily("phasegate_sessions", "Sessions in each phase", labels=["phase"])
        with self.orch.db.read() as conn:
            counts = q.count_sessions_by_phase(conn)
        for phase, n in sorted(counts.items()):
            family.add_metric([phase], n)
        yield family


class StaleSessions(Collector):
    """phasegate_sessions_stale: sessions waiting on an agent longer than stale_after_s."""

    def __init__(self, orch: Orchestrator) -> None:
        self.orch = orch

    def collect(self) -> Iterator[Metric]:
        agents = [v for v in self.orch.active_waiting_values() if v.startswith("agent:")]
        stale_after = timedelta(seconds=self.orch.project.settings.stale_after_s)
        with self.orch.db.read() as conn:
            n = q.count_stale_sessions(conn, agents, self.orch.clock() - stale_after)
        yield GaugeMetricFamily(
            "phasegate_sessions_stale",
            "Sessions waiting on an agent longer than stale_after_s",
            value=n,
        )


class DashboardMetrics:
    """The server's own registry (not the global one), so several apps can coexist."""

    def __init__(self, orch: Orchestrator) -> None:
        self.orch = orch
        self.registry = CollectorRegistry()
        self.registry.register(SessionsByPhase(orch))
        self.registry.register(StaleSessions(orch))
        self.transitions = Counter(
            "phasegate_transitions",
            "Transitions seen since start",
            ["action", "to_phase"],
            registry=self.registry,
        )
        self.test_runs = Counter(
            "phasegate_test_runs",
            "Test runs seen since start",
            ["kind", "status"],
            registry=self.registry,
        )
        self.gate_wait = Histogram(
            "phasegate_gate_wait_seconds",
            "Time a session waited at a gate before a human decided",
            ["gate"],
            buckets=GATE_WAIT_BUCKETS,
            registry=self.registry,
        )
        self.decisions = Counter(
            "phasegate_http_decisions",
            "Decisions made through this server",
            ["action"],
            registry=self.registry,
        )
        self.sse_clients = Gauge(
            "phasegate_sse_clients", "Open /api/events streams", registry=self.registry
        )

    def observe_decision(self, action: str) -> None:
        self.decisions.labels(action).inc()

    def observe_event(self, event: dict[str, Any]) -> None:
        action = event["action"]
        self.transitions.labels(action, event["to_phase"]).inc()
        if action in TEST_RUN_ACTIONS:
            self.test_runs.labels("verify", TEST_RUN_ACTIONS[action]).inc()
        red = (event.get("payload") or {}).get("red_run")
        if action == "submit_tests" and isinstance(red, dict):
            self.test_runs.labels("red", str(red.get("status", "unknown"))).inc()

    def gate_entered_at(self, event: dict[str, Any]) -> datetime | None:
        """When the session entered the gate this event leaves (None if it didn't leave one)."""
        gate = event["from_phase"]
        if gate == event["to_phase"]:
            return None
        session = self.orch.get(event["session_id"])
        if gate not in self.orch.workflow_of(session).gates():
            return None
        entered = [
            e
            for e in self.orch.timeline(session.id)
            if e["to_phase"] == gate and e["from_phase"] != gate and e["seq"] < event["seq"]
        ]
        return _parse_time(entered[-1]["created_at"]) if entered else None

    async def follow(self, feed: EventFeed) -> None:
        """Count every event the feed delivers, until cancelled."""
        with feed.subscribe() as stream:
            async for event in stream:
                try:
                    self.observe_event(event)
                    entered = await anyio.to_thread.run_sync(self.gate_entered_at, event)
                    if entered is not None:
                        waited = _parse_time(event["created_at"]) - entered
                        self.gate_wait.labels(event["from_phase"]).observe(waited.total_seconds())
                except Exception:  # metrics must never take the server down
                    log.exception("metrics: could not count event %s", event.get("id"))

    async def endpoint(self, request: Request) -> Response:
        body = await anyio.to_thread.run_sync(generate_latest, self.registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)


def _parse_time(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
