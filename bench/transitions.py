"""Durable transitions per second with the demo session's real state, next to the database's floor.

The state is honest: the bundled demo runs once (`phasegate demo --yes`, a real
session through every phase with real sandboxed pytest runs) and its session's
rows become the template (see bench/realistic.py). Two state sizes:
- real: copies of the demo session's row as stored (its whole context and
  results) with its events;
- tiny: the same rows with the session's JSON state emptied.

The workload (the peers' one): S sessions (200) x 10 durable transitions each,
whole sessions one after the other, through the public `Orchestrator` API. Each
session is a copy placed at the final review gate and goes through a gate's
realistic mix: the agent asks for approval, the human pauses and resumes, the
agent asks again, …, and the human approves (→ completed). Each transition is
one transaction: the session row rewritten and one chained event appended.

The floor, in the same run, interleaved: the same number of durable
transactions in a plain loop, each one UPDATE of a row whose payload is the
session row's size (its JSON text) and one INSERT of an event-sized row, with
the same durability: SQLite WAL + synchronous=FULL; PostgreSQL defaults. Each
figure is the median of 3 interleaved repeats; ratio = phasegate ÷ floor
(aim ≥ 0.5 with real state).

Also per database: the footprint, bytes per session in the database excluding
test runs (session row + its events, `length()` of every column as text; see
bench/realistic.py), aim ≤ 8 KB; and the time to list the sessions waiting for a
human among 100,000 real-sized rows (1 in 100 at a gate; the dashboard's first
page of 100), aim ≤ 10 ms. The 100,000 rows are session rows only (no events).

Optional peer: LangGraph with its SQLite checkpointer (WAL + synchronous=FULL,
durability="sync"), a 10-node linear graph per session with the same state,
on the same workload: phasegate ÷ LangGraph.

SQLite always; PostgreSQL when PHASEGATE_TEST_POSTGRES_URL is set (else null).
`--json` prints one JSON object; `--quick` is a smoke run of a few seconds.
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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.conftest

from realistic import Template, clone_sessions, demo_project, footprint, placement

from phasegate.config import Project, Settings
from phasegate.domain.principal import Principal
from phasegate.orchestrator import Orchestrator

POSTGRES_URL = os.environ.get("PHASEGATE_TEST_POSTGRES_URL", "")
MIX = (
    "request_approval",
    "pause",
    "resume",
    "request_approval",
    "pause",
    "resume",
    "pause",
    "resume",
    "request_approval",
    "approve",
)
GATE = "awaiting_final_review"
AIM_RATIO, AIM_FOOTPRINT, AIM_LIST_MS = 0.5, 8 * 1024, 10.0
LANGGRAPH_HINT = "pip install langgraph langgraph-checkpoint-sqlite"


@contextmanager
def database(kind: str, tmp: Path) -> Iterator[str]:
    """A fresh, empty database of `kind`, removed afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp / 'bench.db'}"
        return
    from tests.conftest import postgres_database

    yield from postgres_database()


def timed(run: Callable[[], int]) -> float:
    """Transitions per second of `run` (which returns how many it made)."""
    started = time.perf_counter()
    done = run()
    return done / (time.perf_counter() - started)


def phasegate_run(
    orch: Orchestrator, ids: list[str], human: Principal, agent: Principal
) -> Callable[[], int]:
    """Whole sessions through the public API: the gate mix of MIX on each session."""

    def run() -> int:
        for sid in ids:
            for action in MIX:
                if action == "request_approval":
                    orch.request_approval(sid, agent, "all approved tests pass; please review")
                else:
                    orch.decide(sid, action, human, comment="bench")
        return len(ids) * len(MIX)

    return run


class Floor:
    """The database's own floor: UPDATE a session-sized row + INSERT an event-sized row."""

    def __init__(self, url: str) -> None:
        self.sqlite = url.startswith("sqlite")
        self.next_id = 0
        if self.sqlite:
            self.conn: Any = sqlite3.connect(
                url.removeprefix("sqlite:///") + ".floor", isolation_level=None
            )
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=FULL")
            serial, self.mark = "INTEGER", "?"
        else:
            import psycopg

            self.conn = psycopg.connect(url.replace("+psycopg", ""), autocommit=True)
            serial, self.mark = "BIGSERIAL", "%s"
        self.conn.execute(
            "CREATE TABLE floor_rows (id INTEGER PRIMARY KEY, version INTEGER NOT NULL, "
            "payload TEXT NOT NULL)"
        )
        self.conn.execute(
            f"CREATE TABLE floor_log (id {serial} PRIMARY KEY, row_id INTEGER NOT NULL, "
            "version INTEGER NOT NULL, payload TEXT NOT NULL)"
        )

    def rows(self, count: int, payload: str) -> list[int]:
        """`count` fresh rows holding `payload` (inserted before the timing)."""
        ids = list(range(self.next_id, self.next_id + count))
        self.next_id += count
        m = self.mark
        self.transaction(
            [(f"INSERT INTO floor_rows VALUES ({m}, 0, {m})", (i, payload)) for i in ids]
        )
        return ids

    def transaction(self, statements: list[tuple[str, tuple[Any, ...]]]) -> None:
        self.conn.execute("BEGIN IMMEDIATE" if self.sqlite else "BEGIN")
        for sql, params in statements:
            self.conn.execute(sql, params)
        self.conn.execute("COMMIT")

    def run(self, ids: list[int], row: str, event: str) -> Callable[[], int]:
        m = self.mark
        update = f"UPDATE floor_rows SET version = version + 1, payload = {m} WHERE id = {m}"
        insert = f"INSERT INTO floor_log (row_id, version, payload) VALUES ({m}, {m}, {m})"

        def run() -> int:
            for i in ids:
                for step in range(len(MIX)):
                    self.transaction([(update, (row, i)), (insert, (i, step, event))])
            return len(ids) * len(MIX)

        return run

    def close(self) -> None:
        self.conn.close()


def langgraph_run(path: Path, template: Template, sessions: int) -> Callable[[], int] | None:
    """LangGraph on the same workload: a 10-node linear graph per session, same state."""
    try:
        # An optional peer, not a dependency: the ignore covers machines without it.
        from langgraph.checkpoint.sqlite import SqliteSaver  # type: ignore[import-not-found,unused-ignore]
        from langgraph.graph import END, START, StateGraph  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    from typing import TypedDict

    class State(TypedDict):
        context: dict[str, Any]
        results: dict[str, Any]
        step: int

    conn = sqlite3.connect(path, check_same_thread=False)
    saver = SqliteSaver(conn)
    saver.setup()  # sets WAL
    conn.execute("PRAGMA synchronous=FULL")
    builder = StateGraph(State)
    names = [f"step_{i}" for i in range(len(MIX))]
    for name in names:
        builder.add_node(name, lambda s: {"step": s["step"] + 1})
    for a, b in zip([START, *names], [*names, END], strict=True):
        builder.add_edge(a, b)
    graph = builder.compile(checkpointer=saver)
    state = State(
        context=template.session.get("context", {}),
        results=template.session.get("results", {}),
        step=0,
    )
    runs = iter(range(10**9))

    def run() -> int:
        batch = next(runs)
        for k in range(sessions):
            thread = f"{batch}-{k}"
            graph.invoke(state, {"configurable": {"thread_id": thread}}, durability="sync")
        return sessions * len(MIX)

    return run


def list_waiting(orch: Orchestrator, template: Template, total: int) -> dict[str, Any]:
    """Median ms to list the sessions waiting for a human (1 in 100) among `total` copies."""
    start = datetime.now(UTC) - timedelta(days=30)
    gate = placement(orch, "awaiting_test_review", start)
    agent = placement(orch, "generating_implementation", start)

    def place(i: int) -> dict[str, Any]:
        return {
            **(gate if i % 100 == 0 else agent),
            "phase_entered_at": start + timedelta(seconds=i),
        }

    began = time.perf_counter()
    clone_sessions(orch, template, total, place, tables=(), batch=1000)
    insert_s = time.perf_counter() - began
    with orch.db.write() as conn:
        conn.exec_driver_sql("ANALYZE sessions" if conn.dialect.name == "postgresql" else "ANALYZE")

    def median_ms(limit: int, rounds: int) -> tuple[float, int]:
        timings, found = [], 0
        for _ in range(rounds + 2):
            began = time.perf_counter()
            found = len(orch.list_sessions(needs_human=True, limit=limit))
            timings.append((time.perf_counter() - began) * 1000)
        return statistics.median(timings[2:]), found

    page_ms, page_rows = median_ms(100, 15)  # the dashboard's first page
    all_ms, all_rows = median_ms(total, 3)  # every waiting session at once
    return {
        "list_waiting_ms": round(page_ms, 2),
        "list_waiting_rows": page_rows,
        "list_all_waiting_ms": round(all_ms, 2),
        "list_all_waiting_rows": all_rows,
        "list_sessions_total": total,
        "list_insert_s": round(insert_s, 1),
    }


def measure_state(
    orch: Orchestrator,
    floor: Floor,
    template: Template,
    sessions: int,
    repeats: int,
    peer: Callable[[], int] | None,
) -> dict[str, Any]:
    """One state size: phasegate, the floor (and the peer), interleaved, medians of `repeats`."""
    human = orch.add_principal("human", orch.unused_principal_name("bench-human"))[0]
    agent = orch.add_principal("agent", orch.unused_principal_name("bench-agent"), ["coder"])[0]
    gate = placement(orch, GATE, datetime.now(UTC))
    sets = [clone_sessions(orch, template, sessions, lambda i: gate) for _ in range(repeats)]
    size = footprint(orch, sets[0])  # as copied: the demo session as it is stored
    row, event = template.session_json(), template.event_json()
    floors = [floor.rows(sessions, row) for _ in range(repeats)]
    warm = clone_sessions(orch, template, 2, lambda i: gate)  # untimed: caches, first pages
    phasegate_run(orch, warm, human, agent)()
    floor.run(floor.rows(2, row), row, event)()
    engine_tps, floor_tps, peer_tps = [], [], []
    for r in range(repeats):  # interleaved: machine noise hits every figure alike
        engine_tps.append(timed(phasegate_run(orch, sets[r], human, agent)))
        floor_tps.append(timed(floor.run(floors[r], row, event)))
        if peer is not None:
            peer_tps.append(timed(peer))
    engine, base = statistics.median(engine_tps), statistics.median(floor_tps)
    out = {
        "phasegate_tps": round(engine, 1),
        "floor_tps": round(base, 1),
        "ratio": round(engine / base, 3),
        "row_payload_bytes": len(row),
        "event_payload_bytes": len(event),
        **size,
    }
    if peer_tps:
        lg = statistics.median(peer_tps)
        out["langgraph"] = {
            "langgraph_tps": round(lg, 1),
            "phasegate_over_langgraph": round(engine / lg, 3),
        }
    return out


def measure(
    kind: str, real: Template, sessions: int, repeats: int, total: int, tmp: Path
) -> dict[str, Any]:
    """One database: both state sizes, then the list among `total` real-sized sessions."""
    (tmp / "project").mkdir(exist_ok=True)
    out: dict[str, Any] = {}
    with database(kind, tmp) as url:
        orch = Orchestrator.open(Project(tmp / "project", Settings(database_url=url)))
        floor = Floor(orch.db.url)
        try:
            for name, template in {"tiny": real.tiny(), "real": real}.items():
                peer = None  # LangGraph's checkpointer here is SQLite's
                if kind == "sqlite":
                    peer = langgraph_run(tmp / f"langgraph-{name}.db", template, sessions)
                out[name] = measure_state(orch, floor, template, sessions, repeats, peer)
                if "langgraph" in out[name]:
                    out.setdefault("langgraph", {})[name] = out[name].pop("langgraph")
            out.update(list_waiting(orch, real, total))
        finally:
            floor.close()
            orch.close()
    return out


def run(sessions: int, repeats: int, total: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="phasegate-bench-") as name:
        tmp = Path(name)
        with demo_project(tmp) as demo:  # the template, cached in tmp for this run only
            result: dict[str, Any] = {
                "workload": {
                    "sessions": sessions,
                    "transitions_per_session": len(MIX),
                    "repeats": repeats,
                    "mix": list(MIX),
                    "start_phase": GATE,
                },
                "template": demo.template.sizes(),
                "aims": {
                    "ratio_real_min": AIM_RATIO,
                    "footprint_max_bytes": AIM_FOOTPRINT,
                    "list_waiting_max_ms": AIM_LIST_MS,
                },
            }
            for kind in ("sqlite", "postgresql"):
                if kind == "postgresql" and not POSTGRES_URL:
                    result[kind] = None
                    continue
                (tmp / kind).mkdir()
                result[kind] = measure(kind, demo.template, sessions, repeats, total, tmp / kind)
    result["langgraph"] = result["sqlite"].pop("langgraph", None)  # SQLite checkpointer only
    return result


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def print_table(result: dict[str, Any]) -> None:
    w, t = result["workload"], result["template"]
    print(
        f"workload: {w['sessions']} sessions x {w['transitions_per_session']} durable transitions "
        f"(from {w['start_phase']}: {', '.join(w['mix'])}); median of {w['repeats']} "
        "interleaved repeats"
    )
    print(
        f"real state: the demo session's row, {t['session_row_json_bytes']:,} B of JSON "
        f"(context {t.get('context_json_bytes', 0):,} B) + {t.get('events_rows', 0)} events; "
        "tiny: the same row with its JSON state emptied"
    )
    print(
        f"{'database':<11}{'state':<6}{'phasegate tr/s':>15}{'floor tr/s':>12}{'ratio':>7}"
        f"{'footprint B':>13}{'row B':>8}{'events B':>10}   aims: ratio >= {AIM_RATIO} (real), "
        f"footprint <= {AIM_FOOTPRINT:,} B"
    )
    for kind in ("sqlite", "postgresql"):
        f = result[kind]
        if f is None:
            print(f"{kind:<11}absent: set PHASEGATE_TEST_POSTGRES_URL to measure PostgreSQL")
            continue
        for state in ("tiny", "real"):
            s = f[state]
            marks = ""
            if state == "real":
                marks = (
                    f"   ratio {verdict(s['ratio'] >= AIM_RATIO)}, "
                    f"footprint {verdict(s['footprint_bytes'] <= AIM_FOOTPRINT)}"
                )
            stored = (
                f" (stored {s['footprint_stored_bytes']:,})"
                if "footprint_stored_bytes" in s
                else ""
            )
            print(
                f"{kind:<11}{state:<6}{s['phasegate_tps']:>15.1f}{s['floor_tps']:>12.1f}"
                f"{s['ratio']:>7.2f}{s['footprint_bytes']:>13,}{s['session_row_bytes']:>8,}"
                f"{s['events_bytes']:>10,}{marks}{stored}"
            )
    if result["langgraph"]:
        for state in ("tiny", "real"):
            s = result["langgraph"][state]
            print(
                f"LangGraph (SqliteSaver, WAL+FULL, durability=sync), {state} state: "
                f"{s['langgraph_tps']:.1f} tr/s; phasegate / LangGraph = "
                f"{s['phasegate_over_langgraph']:.2f}"
            )
    else:
        print(f"LangGraph not measured: not importable here ({LANGGRAPH_HINT} to compare)")
    for kind in ("sqlite", "postgresql"):
        f = result[kind]
        if f is None:
            continue
        print(
            f"{kind}: list waiting among {f['list_sessions_total']:,} real-sized sessions: "
            f"{f['list_waiting_ms']:.2f} ms for the first {f['list_waiting_rows']} "
            f"(aim <= {AIM_LIST_MS:.0f} ms: {verdict(f['list_waiting_ms'] <= AIM_LIST_MS)}); "
            f"all {f['list_all_waiting_rows']}: {f['list_all_waiting_ms']:.1f} ms "
            f"(rows inserted in {f['list_insert_s']:.0f} s)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--quick", action="store_true", help="a smoke run: small counts")
    parser.add_argument("--sessions", type=int, help="sessions per repeat (default 200)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats")
    parser.add_argument("--list-sessions", type=int, help="sessions for the list (100,000)")
    args = parser.parse_args()
    sessions = args.sessions or (10 if args.quick else 200)
    total = args.list_sessions or (1_000 if args.quick else 100_000)
    result = run(sessions, args.repeats, total)
    if args.json:
        print(json.dumps(result))
    else:
        print_table(result)


if __name__ == "__main__":
    main()
