"""Worker processes under faults: PostgreSQL connections killed again and again, and shutdowns.

A fleet of `phasegate worker` processes (script adapter) drives many sessions
while every other backend of the database is terminated every few hundred
milliseconds; each session must still reach the final gate with exactly the
scripted history, every audit chain must verify, and no lease may overlap.
A worker told to stop drains for at most its grace, then cancels what is in
flight and gives its sessions back.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa

from phasegate.domain.principal import Principal
from phasegate.orchestrator import Orchestrator
from tests.workers.fleet import (
    SCRIPTED_ACTIONS,
    Fleet,
    WorkerProcess,
    lease_overlaps,
    start_sessions,
    wait_for,
)

SESSIONS = int(os.environ.get("PHASEGATE_FLEET_SESSIONS", "30"))
KILL_EVERY_S = 0.4
TERMINATE_OTHERS = (
    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
)


@contextmanager
def terminating_backends(database_url: str) -> Iterator[list[int]]:
    """Terminate every other connection to the database every KILL_EVERY_S, in a thread;
    the list holds how many each round killed."""
    engine = sa.create_engine(
        database_url.replace("postgresql://", "postgresql+psycopg://", 1),
        isolation_level="AUTOCOMMIT",
        poolclass=sa.pool.NullPool,
    )
    killed: list[int] = []
    done = threading.Event()

    def loop() -> None:
        while not done.wait(KILL_EVERY_S):
            with engine.connect() as conn:
                killed.append(int(conn.exec_driver_sql(TERMINATE_OTHERS).scalar_one()))

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield killed
    finally:
        done.set()
        thread.join(10)
        engine.dispose()


def approve_until_final(
    orch: Orchestrator, human: Principal, ids: list[str], timeout_s: float
) -> int:
    """Approve tests as a human until every session waits at the final gate, riding out the
    killed connections (this test's own calls fail too); how many calls failed."""
    wanted, failed = set(ids), 0
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            for session in orch.list_sessions(phase="awaiting_test_review", limit=1000):
                orch.decide(session.id, "approve", human, expected_version=session.version)
            done = {s.id for s in orch.list_sessions(phase="awaiting_final_review", limit=1000)}
        except Exception:  # a killed connection (or a stale version after one): again
            failed += 1
            time.sleep(0.1)
            continue
        if wanted <= done:
            return failed
        time.sleep(0.1)
    stuck = {s.id[:8]: s.phase for s in orch.list_sessions(limit=1000) if s.id in wanted}
    raise AssertionError(f"sessions did not all reach the final gate: {stuck}")


@pytest.mark.postgres
@pytest.mark.timeout(400)
def test_a_fleet_survives_postgres_backends_terminated_again_and_again(
    postgres_orch: Orchestrator, fleet_factory: Callable[[Orchestrator], Fleet]
) -> None:
    """With every other PostgreSQL backend terminated every 0.4 s, six workers still bring
    every session to the final gate: none lost, no transition applied twice, every audit
    chain intact, no overlapping lease, and every worker alive and stopping cleanly."""
    orch, fleet = postgres_orch, fleet_factory(postgres_orch)
    human = orch.add_principal("human", "reviewer")[0]
    ids = start_sessions(orch, human, SESSIONS)
    workers = [
        fleet.start(f"{role}-{n}", role, "--concurrency", "2")
        for role in ("tester", "coder", "runner")
        for n in (1, 2)
    ]
    # Up and claiming first: a start-up that can't reach the database exits with one line.
    wait_for(lambda: all("working as" in w.log.read_text() for w in workers), timeout_s=60)
    with terminating_backends(orch.project.database_url) as killed:
        approve_until_final(orch, human, ids, timeout_s=300)
    assert sum(killed) > 20, killed  # the faults really happened, many times over
    for worker in workers:
        assert worker.proc.poll() is None, worker.log.read_text()[-3000:]
    for session_id in ids:
        actions = [e["action"] for e in orch.timeline(session_id)]
        assert actions == SCRIPTED_ACTIONS, f"{session_id[:8]}: {actions}"
    assert lease_overlaps(orch) == []
    reports = orch.verify_audit()
    assert len(reports) >= SESSIONS and all(r.ok for r in reports)
    for worker in workers:
        assert worker.terminate() == 0, worker.log.read_text()[-3000:]


def _claimed(orch: Orchestrator, session_id: str) -> Callable[[], bool]:
    return lambda: orch.get(session_id).lease_owner is not None


def _slow_tester(fleet: Fleet, grace_s: str) -> WorkerProcess:
    fleet.script_delay = 60.0  # the agent "thinks" far longer than any grace
    return fleet.start("slow-tester", "tester", "--grace-s", grace_s)


@pytest.mark.timeout(60)
def test_a_drain_past_its_grace_cancels_the_work_and_gives_the_session_back(
    fast_orch: Orchestrator, fleet_factory: Callable[[Orchestrator], Fleet]
) -> None:
    """A worker whose agent is still busy when its grace ends cancels it, releases the
    session's lease at once (no waiting for it to expire) and exits 0."""
    orch, fleet = fast_orch, fleet_factory(fast_orch)
    human = orch.add_principal("human", "reviewer")[0]
    [session_id] = start_sessions(orch, human, 1)
    worker = _slow_tester(fleet, "1")
    wait_for(_claimed(orch, session_id))
    began = time.monotonic()
    assert worker.terminate() == 0
    assert time.monotonic() - began < 15
    session = orch.get(session_id)
    assert (session.phase, session.lease_owner) == ("generating_tests", None)
    log = worker.log.read_text()
    assert "waiting up to 1 s for 1 piece(s) of work in flight" in log
    assert "grace of 1 s is over" in log


@pytest.mark.timeout(60)
def test_a_second_signal_cancels_the_work_at_once_and_gives_the_session_back(
    sqlite_orch: Orchestrator, fleet_factory: Callable[[Orchestrator], Fleet]
) -> None:
    """A second SIGTERM during a long drain cancels the agent and releases the lease without
    waiting for the grace to end."""
    orch, fleet = sqlite_orch, fleet_factory(sqlite_orch)
    human = orch.add_principal("human", "reviewer")[0]
    [session_id] = start_sessions(orch, human, 1)
    worker = _slow_tester(fleet, "300")
    wait_for(_claimed(orch, session_id))
    worker.proc.terminate()
    wait_for(lambda: "draining" in worker.log.read_text())
    began = time.monotonic()
    assert worker.terminate() == 0
    assert time.monotonic() - began < 15
    assert orch.get(session_id).lease_owner is None
    assert "second signal: cancelling in-flight work" in worker.log.read_text()
