"""Durable transitions per second: the engine next to the database's own floor.

For SQLite (WAL, synchronous=FULL) and PostgreSQL (default settings; when
PHASEGATE_TEST_POSTGRES_URL is set), in the same run on the same machine:
- engine: `Orchestrator.decide` pause/resume toggles over a few sessions, each
  one transaction that locks the session, checks its version, stores it and
  appends one chained event (the same path every transition takes);
- floor: a plain loop of one UPDATE + one INSERT per transaction, nothing else;
- the ratio engine/floor (aim: at least 0.5);
- the time to list the sessions waiting for a human among 100,000 sessions
  (`list_sessions(needs_human=True)`, the dashboard's first page of 100; aim: < 20 ms).
`--json` prints one JSON object instead of the table.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.conftest

from phasegate.config import Project, Settings
from phasegate.domain.session import Session
from phasegate.orchestrator import Orchestrator
from phasegate.store import queries as q
from phasegate.store.schema import sessions as sessions_table
from phasegate.store.schema import tasks as tasks_table

POSTGRES_URL = os.environ.get("PHASEGATE_TEST_POSTGRES_URL", "")
FLOOR_DDL = (
    "CREATE TABLE floor_rows (id INTEGER PRIMARY KEY, version INTEGER NOT NULL)",
    "CREATE TABLE floor_log (id {serial} PRIMARY KEY, row_id INTEGER NOT NULL, "
    "version INTEGER NOT NULL, payload TEXT NOT NULL)",
)


@contextmanager
def database(kind: str, tmp: Path) -> Iterator[str]:
    """A fresh, empty database of `kind`, removed afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp / 'bench.db'}"
        return
    from tests.conftest import postgres_database

    yield from postgres_database()


def timed_rate(n: int, step: Callable[[int], None]) -> float:
    """Operations per second of `step` over `n` calls (after a short warm-up)."""
    for i in range(min(10, n)):
        step(i)
    started = time.perf_counter()
    for i in range(n):
        step(i)
    return n / (time.perf_counter() - started)


def engine_step(orch: Orchestrator) -> Callable[[int], None]:
    """One transition through the orchestrator's public API: pause/resume toggles."""
    human = orch.add_principal("human", "bench")[0]
    ids = [insert_sessions(orch, 1, human_every=0)[0] for _ in range(4)]
    paused = dict.fromkeys(ids, False)

    def step(i: int) -> None:
        sid = ids[i % len(ids)]
        orch.decide(sid, "resume" if paused[sid] else "pause", human)
        paused[sid] = not paused[sid]

    return step


@contextmanager
def floor_step(url: str) -> Iterator[Callable[[int], None]]:
    """One UPDATE + one INSERT per transaction with the engine's durability settings."""
    if url.startswith("sqlite"):
        with sqlite_floor(url.removeprefix("sqlite:///") + ".floor") as step:
            yield step
        return
    import psycopg

    with psycopg.connect(url) as conn:
        conn.execute(FLOOR_DDL[0])
        conn.execute(FLOOR_DDL[1].format(serial="BIGSERIAL"))
        conn.execute("INSERT INTO floor_rows VALUES (1, 0)")
        conn.commit()

        def step(i: int) -> None:
            with conn.transaction():
                conn.execute("UPDATE floor_rows SET version = version + 1 WHERE id = 1")
                conn.execute(
                    "INSERT INTO floor_log (row_id, version, payload) VALUES (1, %s, %s)",
                    (i, '{"action": "pause"}'),
                )

        yield step


@contextmanager
def sqlite_floor(path: str) -> Iterator[Callable[[int], None]]:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute(FLOOR_DDL[0])
    conn.execute(FLOOR_DDL[1].format(serial="INTEGER"))
    conn.execute("INSERT INTO floor_rows VALUES (1, 0)")

    def step(i: int) -> None:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("UPDATE floor_rows SET version = version + 1 WHERE id = 1")
        conn.execute(
            "INSERT INTO floor_log (row_id, version, payload) VALUES (1, ?, ?)",
            (i, '{"action": "pause"}'),
        )
        conn.execute("COMMIT")

    try:
        yield step
    finally:
        conn.close()


def insert_sessions(orch: Orchestrator, count: int, *, human_every: int) -> list[str]:
    """Bulk-insert `count` sessions; every `human_every`-th waits at a gate (0: none do)."""
    now = datetime.now(UTC)
    task_id = uuid.uuid4().hex
    with orch.db.write() as conn:
        conn.execute(
            sa.insert(tasks_table).values(
                id=task_id, name=f"bench-{task_id[:8]}", design_path="design.md", created_at=now
            )
        )
    ids, batch = [], []
    for i in range(count):
        gate = human_every and i % human_every == 0
        phase = "awaiting_test_review" if gate else "generating_implementation"
        session = Session(
            id=uuid.uuid4().hex,
            task_id=task_id,
            workflow="tdd",
            phase=phase,
            version=0,  # as if no event yet: the tip of a chain has seq == version
            fix_attempts=0,
            paused=False,
            context={"design": "# bench"},
            results={},
            created_at=now,
            updated_at=now,
            phase_entered_at=now - timedelta(seconds=i),
        )
        batch.append(q.session_to_row(session, "human" if gate else "agent:coder"))
        ids.append(session.id)
        if len(batch) == 5000 or i == count - 1:
            with orch.db.write() as conn:
                conn.execute(sa.insert(sessions_table), batch)
            batch = []
    return ids


def list_waiting_ms(orch: Orchestrator, total: int) -> dict[str, float | int]:
    """Median milliseconds to list the sessions waiting for a human (1 in 100), among `total`."""
    insert_sessions(orch, total, human_every=100)
    with orch.db.write() as conn:
        conn.exec_driver_sql("ANALYZE sessions" if conn.dialect.name == "postgresql" else "ANALYZE")

    def median_ms(limit: int) -> tuple[float, int]:
        timings, found = [], 0
        for _ in range(12):
            started = time.perf_counter()
            found = len(orch.list_sessions(needs_human=True, limit=limit))
            timings.append((time.perf_counter() - started) * 1000)
        return statistics.median(timings[2:]), found

    page_ms, page_rows = median_ms(100)  # the dashboard's first page
    all_ms, all_rows = median_ms(total)  # every waiting session at once
    return {
        "list_waiting_ms": round(page_ms, 2),
        "list_waiting_rows": page_rows,
        "list_all_waiting_ms": round(all_ms, 2),
        "list_all_waiting_rows": all_rows,
    }


def interleaved_rates(orch: Orchestrator, n: int, rounds: int = 5) -> tuple[float, float]:
    """Median engine and floor rates over alternating rounds, so machine noise hits both."""
    engine_rates, floor_rates = [], []
    step = engine_step(orch)
    with floor_step(orch.db.url.replace("+psycopg", "")) as floor:
        for _ in range(rounds):
            engine_rates.append(timed_rate(n // rounds, step))
            floor_rates.append(timed_rate(n // rounds, floor))
    return statistics.median(engine_rates), statistics.median(floor_rates)


def measure(kind: str, n: int, total: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="phasegate-bench-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "project").mkdir()
        with database(kind, tmp) as url:
            orch = Orchestrator.open(Project(tmp / "project", Settings(database_url=url)))
            try:
                engine, floor = interleaved_rates(orch, n)
                listing = list_waiting_ms(orch, total)
            finally:
                orch.close()
    return {
        "engine_tps": round(engine, 1),
        "floor_tps": round(floor, 1),
        "ratio": round(engine / floor, 3),
        **listing,
        "sessions": total,
        "transitions": n,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--transitions", type=int, default=400, help="transitions per figure")
    parser.add_argument("--sessions", type=int, default=100_000, help="sessions for the list")
    args = parser.parse_args()
    kinds = ["sqlite", "postgresql"] if POSTGRES_URL else ["sqlite"]
    figures: dict[str, Any] = {k: measure(k, args.transitions, args.sessions) for k in kinds}
    if not POSTGRES_URL:
        figures["postgresql"] = None
    if args.json:
        print(json.dumps(figures))
        return
    print(
        f"{'database':<11}{'engine tr/s':>12}{'floor tr/s':>12}{'ratio':>8}"
        f"{'list waiting (ms)':>19}  (aims: ratio >= 0.5, list < 20 ms)"
    )
    for kind, f in figures.items():
        if f is None:
            print(f"{kind:<11}  skipped: set PHASEGATE_TEST_POSTGRES_URL")
            continue
        print(
            f"{kind:<11}{f['engine_tps']:>12.1f}{f['floor_tps']:>12.1f}{f['ratio']:>8.2f}"
            f"{f['list_waiting_ms']:>19.2f}  (first {f['list_waiting_rows']} of "
            f"{f['list_all_waiting_rows']} waiting among {f['sessions']:,}; "
            f"all of them: {f['list_all_waiting_ms']:.1f} ms)"
        )


if __name__ == "__main__":
    main()
