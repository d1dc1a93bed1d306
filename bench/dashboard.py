"""The dashboard under load: list and session pages with 10,000 sessions, and SSE delay.

Runs the real app under uvicorn (in a thread) on a SQLite project with 10,000
sessions inserted directly (a third at gates, a third at agents, a third
finished) plus one real session at the test review gate (tests, red run, diff).
Measures over HTTP with a bearer token:
- list: GET / (three sections, counts, first pages) — p50/p99;
- session: GET /sessions/{id} of the real gate session (highlighted tests, red
  run, git diff, timeline, diagram) — p50/p99;
- sse (same process): a decision made by the server's orchestrator until the
  change reaches an /api/events client — p50/p99;
- sse (other process): the same through a second orchestrator (as the CLI or a
  worker would), delivered by the feed's poll of the events table — p50/p99.
Aim: every p99 under 100 ms. `--json` prints one JSON object instead of the table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.*

from tests.conftest import GOOD_TESTS, make_project_repo
from tests.web.conftest import free_port
from tests.web.sse_client import SseReader

from phasegate.config import Project, Settings
from phasegate.domain.session import Session
from phasegate.entrypoints.web import create_app
from phasegate.entrypoints.web.server import FEED_POLL_INTERVAL_S
from phasegate.feed import EventFeed
from phasegate.orchestrator import Orchestrator
from phasegate.store import queries as q

AIM_MS = 100.0
PHASES = (
    ("awaiting_test_review", "human"),
    ("generating_implementation", "agent:coder"),
    ("completed", None),
)


def percentile(samples: list[float], pct: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def insert_sessions(orch: Orchestrator, count: int) -> None:
    """`count` sessions straight into the table: no worktrees, spread over three phases."""
    task = orch.add_task(orch.project.root / "design.md")
    start = datetime.now(UTC) - timedelta(days=3)
    with orch.db.write() as conn:
        for i in range(count):
            phase, waiting = PHASES[i % 3]
            at = start + timedelta(seconds=i)
            session = Session(
                id=uuid.uuid4().hex,
                task_id=task["id"],
                workflow="tdd",
                phase=phase,
                version=5,
                fix_attempts=0,
                paused=False,
                context={"design": "# bench"},
                results={},
                created_at=at,
                updated_at=at,
                phase_entered_at=at,
                task_name=task["name"],
            )
            q.insert_session(conn, session, waiting)


@contextmanager
def running_server(orch: Orchestrator) -> Iterator[str]:
    app = create_app(orch, EventFeed(orch, poll_interval=FEED_POLL_INTERVAL_S), secret=b"bench")
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=1
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def time_get(client: httpx.Client, url: str, rounds: int) -> list[float]:
    samples = []
    client.get(url).raise_for_status()  # warm up (templates, caches)
    for _ in range(rounds):
        began = time.perf_counter()
        client.get(url).raise_for_status()
        samples.append((time.perf_counter() - began) * 1000)
    return samples


def time_sse(
    url: str, headers: dict[str, str], session_id: str, decide: Callable[[str], None], rounds: int
) -> list[float]:
    """Milliseconds from calling a decision to its arrival on an SSE client."""
    reader = SseReader(f"{url}/api/events?session={session_id}", headers)
    samples = []
    try:
        for i in range(rounds):
            action = "pause" if i % 2 == 0 else "resume"
            called = time.perf_counter()  # includes the commit itself: the honest figure
            decide(action)
            message = reader.next_change(5, action=action)
            samples.append((message.received_at - called) * 1000)
    finally:
        reader.close()
    return samples


def run(sessions: int, rounds: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        root = make_project_repo(Path(tmp) / "project")
        settings = Settings(
            database_url=f"sqlite:///{tmp}/bench.db",
            test_command="python -m pytest -q -p no:cacheprovider",
        )
        orch = Orchestrator.open(Project(root, settings))
        other = Orchestrator.open(Project(root, settings), migrate=False)
        human, token = orch.add_principal("human", "bench")
        agent, _ = orch.add_principal("agent", "bot", ["tester", "coder", "runner"])
        insert_sessions(orch, sessions)
        gate = orch.start_session("design.md", human)
        orch.submit(
            gate.id,
            "tests",
            agent,
            [{"path": "test_calc.py", "content": GOOD_TESTS}],
            note="bench tests",
        )
        toggled = orch.start_session("design.md", human)
        headers = {"Authorization": f"Bearer {token}"}
        with running_server(orch) as url, httpx.Client(base_url=url, headers=headers) as client:
            figures = {
                "list": time_get(client, "/", rounds),
                "session": time_get(client, f"/sessions/{gate.id}", rounds),
                "sse_same_process": time_sse(
                    url,
                    headers,
                    toggled.id,
                    lambda a: orch.decide(toggled.id, a, human) and None,
                    max(20, rounds // 2),
                ),
                "sse_other_process": time_sse(
                    url,
                    headers,
                    toggled.id,
                    lambda a: other.decide(toggled.id, a, human) and None,
                    max(20, rounds // 2),
                ),
            }
        other.close()
        orch.close()
    result: dict[str, Any] = {
        "sessions": sessions + 2,
        "rounds": rounds,
        "feed_poll_interval_ms": FEED_POLL_INTERVAL_S * 1000,
    }
    for name, samples in figures.items():
        result[f"{name}_p50_ms"] = round(statistics.median(samples), 2)
        result[f"{name}_p99_ms"] = round(percentile(samples, 99), 2)
    result["all_p99_under_100ms"] = all(result[f"{n}_p99_ms"] < AIM_MS for n in figures)
    return result


def print_table(result: dict[str, Any]) -> None:
    print(
        f"dashboard with {result['sessions']:,} sessions, {result['rounds']} rounds "
        f"(feed polls every {result['feed_poll_interval_ms']:.0f} ms)"
    )
    print(f"{'measure':<34}{'p50 ms':>10}{'p99 ms':>10}   aim p99 < {AIM_MS:.0f} ms")
    labels = {
        "list": "GET / (sessions list)",
        "session": "GET /sessions/{id} (gate page)",
        "sse_same_process": "transition → SSE (same process)",
        "sse_other_process": "transition → SSE (other process)",
    }
    for key, label in labels.items():
        p99 = result[f"{key}_p99_ms"]
        print(
            f"{label:<34}{result[f'{key}_p50_ms']:>10.1f}{p99:>10.1f}   "
            f"{'ok' if p99 < AIM_MS else 'OVER'}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--sessions", type=int, default=10_000, help="sessions to insert")
    parser.add_argument("--rounds", type=int, default=100, help="requests per measure")
    args = parser.parse_args()
    result = run(args.sessions, args.rounds)
    if args.json:
        print(json.dumps(result))
    else:
        print_table(result)


if __name__ == "__main__":
    main()
