"""PostgreSQL's transition path: three round trips, no ping, and a killed connection survived."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from engine_helpers import event_count, start
from tests.conftest import postgres_database

from phasegate.config import Project, Settings
from phasegate.domain.principal import Principal
from phasegate.orchestrator import Orchestrator
from phasegate.store import database

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_orch(project_root: Path) -> Iterator[Orchestrator]:
    """An orchestrator on a fresh PostgreSQL database (this suite is about PostgreSQL only)."""
    for url in postgres_database():
        orch = Orchestrator.open(Project(project_root, Settings(database_url=url)))
        yield orch
        orch.close()


def terminate_pool(orch: Orchestrator) -> int:
    """pg_terminate_backend the orchestrator's connections, and wait until they are gone."""
    admin = sa.create_engine(orch.db.url, poolclass=sa.pool.NullPool, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        database_name = conn.exec_driver_sql("SELECT current_database()").scalar_one()
        others = "datname = %(db)s AND pid <> pg_backend_pid()"
        killed = conn.exec_driver_sql(
            f"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE {others}",
            {"db": database_name},
        ).scalar_one()
        deadline = time.monotonic() + 10
        while conn.exec_driver_sql(
            f"SELECT count(*) FROM pg_stat_activity WHERE {others}", {"db": database_name}
        ).scalar_one():
            assert time.monotonic() < deadline, "terminated backends did not go away"
            time.sleep(0.05)
    admin.dispose()
    return int(killed)


@pytest.mark.parametrize("seen_at", ["checkout", "first statement"])
def test_a_transition_after_pg_terminate_backend_happens_once(
    pg_orch: Orchestrator, seen_at: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The next transition succeeds, exactly once, whether the dead connection shows at
    checkout (its socket has the server's goodbye) or only at its first statement."""
    human: Principal = pg_orch.add_principal("human", "alice")[0]
    session = start(pg_orch, human)
    pg_orch.decide(session.id, "pause", human)  # the pool now holds a used connection
    events = event_count(pg_orch, session.id)
    assert terminate_pool(pg_orch) >= 1
    if seen_at == "first statement":  # the checkout can't tell: the kernel must run it again
        monkeypatch.setattr(database, "_has_pending_input", lambda _fd: False)

    resumed = pg_orch.decide(session.id, "resume", human)

    assert not resumed.paused and resumed.version == session.version + 2
    assert event_count(pg_orch, session.id) == events + 1
    assert pg_orch.get(session.id).version == resumed.version
    assert all(report.ok for report in pg_orch.verify_audit(session.id))


def round_trips(trace: str) -> int:
    """How many times the client sent and then waited for the server, from a libpq trace."""
    directions = [line[0] for line in trace.splitlines() if line[:2] in ("F\t", "B\t")]
    return sum(1 for pair in itertools.pairwise(directions) if pair == ("F", "B"))


def test_a_transition_takes_three_round_trips(pg_orch: Orchestrator, tmp_path: Path) -> None:
    """BEGIN, the locking read, then the update, the event and the COMMIT in one message."""
    human: Principal = pg_orch.add_principal("human", "alice")[0]
    session = start(pg_orch, human)
    traces: list[Path] = []

    def trace(dbapi_conn: Any, _record: object, _proxy: object) -> None:
        path = tmp_path / f"trace-{len(traces)}.txt"
        traces.append(path)
        handle = path.open("w")
        dbapi_conn.pgconn.trace(handle.fileno())
        dbapi_conn.pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS)
        dbapi_conn.info_trace = handle  # closed at checkin

    def untrace(dbapi_conn: Any, _record: object) -> None:
        dbapi_conn.pgconn.untrace()
        dbapi_conn.info_trace.close()

    sa.event.listen(pg_orch.db.engine, "checkout", trace)
    sa.event.listen(pg_orch.db.engine, "checkin", untrace)
    try:
        pg_orch.decide(session.id, "pause", human)
    finally:
        sa.event.remove(pg_orch.db.engine, "checkout", trace)
        sa.event.remove(pg_orch.db.engine, "checkin", untrace)
    assert len(traces) == 1  # one connection, one transaction
    assert round_trips(traces[0].read_text()) == 3
    assert pg_orch.get(session.id).paused
