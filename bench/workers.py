"""Sessions per minute through the whole workflow with 1, 2 and 4 worker processes.

For each database (SQLite; PostgreSQL if PHASEGATE_TEST_POSTGRES_URL is set)
and each worker count W: a fresh project and database, N sessions started,
W `phasegate worker` processes (all roles, script adapter, no thinking time)
and a human-approval loop in this process, until every session waits at the
final gate. The test command is a grep (as cheap as `true`, but it fails
once so every session also goes through the fix loop: 8 transitions each).

Figures: sessions per minute, the scaling ratio against one worker, and the
p99 of phasegate's own time per operation (claim, submit with its git commit
and red run, test run, human decision), measured in the workers and the loop.
`--json` prints one JSON object instead of the table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.workers.fleet

from tests.workers.fleet import (
    Fleet,
    make_fast_project,
    make_script_dir,
    start_sessions,
)

from phasegate.orchestrator import Orchestrator

TRANSITION_OPS = ("submit", "work:runner", "decide")


@contextmanager
def database(kind: str, tmp: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{tmp / 'phasegate.db'}"
        return
    from tests.conftest import postgres_database

    yield from postgres_database()


def run_once(kind: str, workers: int, sessions: int) -> dict[str, Any]:
    """One measured run; returns its rate and timings."""
    with tempfile.TemporaryDirectory(prefix="phasegate-bench-") as tmp_name:
        tmp = Path(tmp_name)
        with database(kind, tmp) as url:
            orch = Orchestrator.open(make_fast_project(tmp / "project", url))
            try:
                return _measure(orch, tmp, workers, sessions)
            finally:
                orch.close()


def _measure(orch: Orchestrator, tmp: Path, workers: int, sessions: int) -> dict[str, Any]:
    (tmp / "logs").mkdir()
    fleet = Fleet(
        orch,
        make_script_dir(tmp / "script"),
        tmp / "logs",
        lease_ttl=30,
        script_delay=0,
        metrics_file=tmp / "metrics.jsonl",
    )
    human = orch.add_principal("human", "bench")[0]
    ids = set(start_sessions(orch, human, sessions))
    decide_times: list[float] = []
    started = time.monotonic()
    try:
        for i in range(workers):
            fleet.start(f"worker-{i + 1}", "tester,coder,runner")
        elapsed = _approve_until_done(orch, human, ids, decide_times, started)
    finally:
        for worker in fleet.workers:
            worker.terminate()
    timings = _read_timings(tmp / "metrics.jsonl")
    timings["decide"] = decide_times
    return {
        "sessions": sessions,
        "seconds": elapsed,
        "per_minute": sessions / elapsed * 60,
        "p99_ms": {op: _p99(v) for op, v in sorted(timings.items())},
        "transition_p99_ms": _p99([t for op in TRANSITION_OPS for t in timings.get(op, [])]),
    }


def _approve_until_done(
    orch: Orchestrator, human: Any, ids: set[str], decide_times: list[float], started: float
) -> float:
    while True:
        for session in orch.list_sessions(phase="awaiting_test_review", limit=1000):
            t0 = time.perf_counter()
            orch.decide(session.id, "approve", human)
            decide_times.append(time.perf_counter() - t0)
        done = {s.id for s in orch.list_sessions(phase="awaiting_final_review", limit=1000)}
        if ids <= done:
            return time.monotonic() - started
        if time.monotonic() - started > 600:
            raise SystemExit("bench: sessions did not reach the final gate within 10 minutes")
        time.sleep(0.05)


def _read_timings(path: Path) -> dict[str, list[float]]:
    timings: dict[str, list[float]] = defaultdict(list)
    if path.exists():
        for line in path.read_text().splitlines():
            row = json.loads(line)
            timings[row["what"]].append(row["s"])
    return timings


def _p99(values: list[float]) -> float:
    if not values:
        return 0.0
    if len(values) < 2:
        return values[0] * 1000
    return statistics.quantiles(values, n=100, method="inclusive")[98] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=int(os.environ.get("BENCH_SESSIONS", 30)))
    parser.add_argument("--workers", default="1,2,4", help="worker counts, comma-separated")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    kinds = ["sqlite"] + (["postgres"] if os.environ.get("PHASEGATE_TEST_POSTGRES_URL") else [])
    counts = [int(w) for w in args.workers.split(",")]
    results: dict[str, Any] = {"sessions": args.sessions, "cores": os.cpu_count(), "runs": {}}
    for kind in kinds:
        runs = {w: run_once(kind, w, args.sessions) for w in counts}
        base = runs[counts[0]]["per_minute"]
        for run in runs.values():
            run["scaling"] = run["per_minute"] / base
        results["runs"][kind] = {str(w): r for w, r in runs.items()}
    print(json.dumps(results, indent=2) if args.json else _table(results))


def _table(results: dict[str, Any]) -> str:
    lines = [
        f"{results['sessions']} sessions per run, {results['cores']} cores; "
        "p99 of phasegate time per operation in ms",
        f"{'db':<9}{'workers':>8}{'sess/min':>10}{'scaling':>9}{'trans p99':>11}"
        f"{'claim':>8}{'submit':>8}{'run':>8}{'decide':>8}",
    ]
    for kind, runs in results["runs"].items():
        for w, r in runs.items():
            p = r["p99_ms"]
            lines.append(
                f"{kind:<9}{w:>8}{r['per_minute']:>10.1f}{r['scaling']:>8.2f}x"
                f"{r['transition_p99_ms']:>11.1f}{p.get('claim', 0):>8.1f}"
                f"{p.get('submit', 0):>8.1f}{p.get('work:runner', 0):>8.1f}"
                f"{p.get('decide', 0):>8.1f}"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
