"""phasegate's MCP server over HTTP under N concurrent agents, next to an echo server's floor.

Per database (SQLite; PostgreSQL when PHASEGATE_TEST_POSTGRES_URL is set, else
null in the JSON): the bundled demo runs once (`phasegate demo --yes`) and its
real session is copied 1,000 times with SQLAlchemy Core (bench/realistic.py),
spread over three phases, one copy in fixing_failures. Then `phasegate serve`
runs on it, and N clients (default 50; each the official SDK `Client` over
streamable HTTP with its own connection pool) call one tool back to back, all
at once, for a window of seconds:
- echo: the same SDK serving a one-line echo tool, stateless HTTP, as phasegate
  serves /mcp (the floor: what the SDK, HTTP and this client cost under this load);
- get_session_status on a random copy;
- list_sessions with its defaults.
The windows are interleaved (echo, status, list; `--rounds` times), so load from
elsewhere on the machine hits the floor and the tools alike. It prints, per
call, p50 and p99 latency, calls per second, and their ratios to the floor;
`--json` prints one JSON object; `--quick` is a smoke run.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx2
from mcp.client.streamable_http import streamable_http_client
from mcp_latency import ECHO_SERVER, free_port, wait_http
from realistic import PHASEGATE, Demo, clone_sessions, demo_project, open_demo, per_database
from realistic import placement as placed

from mcp import Client

PHASES = ("awaiting_test_review", "generating_implementation", "completed")
CALLS = ("echo", "get_session_status", "list_sessions")
Call = Callable[[Client, random.Random], Coroutine[Any, Any, Any]]


def seed(demo: Demo, copies: int) -> tuple[list[str], str, float]:
    """`copies` copies of the demo session and one in fixing_failures; ids, a token, seconds."""
    orch = open_demo(demo.root, demo.database_url)
    try:
        began = time.perf_counter()
        start = datetime.now(UTC) - timedelta(days=3)
        places = {p: placed(orch, p, start) for p in PHASES}

        def place(i: int) -> dict[str, Any]:
            at = start + timedelta(seconds=i)
            return {**places[PHASES[i % 3]], "phase_entered_at": at, "updated_at": at}

        tables = list(demo.template.children)  # events, test runs, leases
        ids = clone_sessions(orch, demo.template, copies, place, tables=tables)
        fixing = placed(orch, "fixing_failures", datetime.now(UTC))
        ids += clone_sessions(orch, demo.template, 1, lambda i: fixing, tables=tables)
        seconds = time.perf_counter() - began
        roles = ["tester", "coder", "runner"]
        _, token = orch.add_principal("agent", f"load-{time.monotonic_ns()}", roles)
    finally:
        orch.close()
    return ids, token, seconds


async def window(clients: list[Client], call: Call, seconds: float) -> tuple[list[float], float]:
    """Every client calls back to back for `seconds`; the latencies (ms) and the elapsed time."""
    samples: list[float] = []
    end = time.perf_counter() + seconds

    async def one(client: Client, rng: random.Random) -> None:
        while time.perf_counter() < end:
            began = time.perf_counter()
            result = await call(client, rng)
            samples.append((time.perf_counter() - began) * 1000)
            if getattr(result, "is_error", False):
                raise SystemExit(f"tool error under load: {result.content}")

    began = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for i, client in enumerate(clients):
            tg.start_soon(one, client, random.Random(i))
    return samples, time.perf_counter() - began


async def warm(clients: list[Client], call: Call) -> None:
    """Every client calls once, all at once (connections opened, caches filled)."""
    async with anyio.create_task_group() as tg:
        for i, client in enumerate(clients):
            tg.start_soon(call, client, random.Random(i))


async def connect(stack: AsyncExitStack, url: str, token: str | None, n: int) -> list[Client]:
    """`n` SDK clients, each with its own HTTP connection pool, tools listed once."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    clients = []
    for _ in range(n):
        http = await stack.enter_async_context(httpx2.AsyncClient(headers=headers, timeout=120))
        client = await stack.enter_async_context(
            Client(streamable_http_client(url, http_client=http))
        )
        await client.list_tools()  # the SDK validates results against it: ask once, up front
        clients.append(client)
    return clients


def figures(samples: list[float], elapsed: float) -> dict[str, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {
        "p50_ms": round(statistics.median(ordered), 2),
        "p99_ms": round(p99, 2),
        "calls_per_s": round(len(ordered) / elapsed, 1),
        "n": len(ordered),
    }


async def measure(
    url: str, echo_url: str, token: str, ids: list[str], n: int, seconds: float, rounds: int
) -> dict[str, Any]:
    calls: dict[str, Call] = {
        "echo": lambda c, rng: c.call_tool("echo", {"text": "hello"}),
        "get_session_status": lambda c, rng: c.call_tool(
            "get_session_status", {"session_id": rng.choice(ids)}
        ),
        "list_sessions": lambda c, rng: c.call_tool("list_sessions", {}),
    }
    async with AsyncExitStack() as stack:
        agents = await connect(stack, url, token, n)
        echoes = await connect(stack, echo_url, None, n)
        samples: dict[str, list[float]] = {name: [] for name in calls}
        elapsed = dict.fromkeys(calls, 0.0)
        for name, call in calls.items():  # warm-up: every client once
            await warm(echoes if name == "echo" else agents, call)
        for _ in range(rounds):
            for name, call in calls.items():
                got, took = await window(echoes if name == "echo" else agents, call, seconds)
                samples[name] += got
                elapsed[name] += took
    result = {name: figures(samples[name], elapsed[name]) for name in calls}
    floor = result["echo"]
    for name in CALLS[1:]:
        result[name]["x_echo_p50"] = round(result[name]["p50_ms"] / floor["p50_ms"], 2)
        result[name]["echo_calls_per_s_x"] = round(
            floor["calls_per_s"] / result[name]["calls_per_s"], 2
        )
    return result


def run_kind(
    demo: Demo, work: Path, copies: int, n: int, seconds: float, rounds: int
) -> dict[str, Any]:
    ids, token, seed_s = seed(demo, copies)
    echo_script = work / "echo_server.py"
    echo_script.write_text(ECHO_SERVER)
    port, echo_port = free_port(), free_port()
    procs = [
        subprocess.Popen(
            [PHASEGATE, "serve", "--port", str(port)],
            cwd=demo.root,
            env=demo.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
        subprocess.Popen(
            [sys.executable, str(echo_script), str(echo_port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
    ]
    try:
        url, echo_url = f"http://127.0.0.1:{port}/mcp", f"http://127.0.0.1:{echo_port}/mcp"
        wait_http(url)
        wait_http(echo_url)
        result = anyio.run(measure, url, echo_url, token, ids, n, seconds, rounds)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(30)
    return {"sessions": len(ids), "seed_s": round(seed_s, 2), **result}


def run(copies: int, n: int, seconds: float, rounds: int) -> dict[str, Any]:
    result: dict[str, Any] = {
        "clients": n,
        "copies": copies,
        "window_s": seconds,
        "rounds": rounds,
    }

    def on(_kind: str, work: Path, url: str | None) -> dict[str, Any]:
        with demo_project(work, url) as demo:
            return run_kind(demo, work, copies, n, seconds, rounds)

    return {**result, **per_database(on)}


def print_table(result: dict[str, Any]) -> None:
    print(
        f"MCP over HTTP under load: {result['clients']} concurrent SDK clients, "
        f"{result['copies']:,} copies of the demo session; {result['rounds']} round(s) of "
        f"{result['window_s']:g} s per call; the floor is the SDK's echo server under the same load"
    )
    print(
        f"{'database':<11}{'call':<21}{'p50 ms':>9}{'p99 ms':>9}{'calls/s':>9}"
        f"{'p50 x echo':>12}{'echo/s x':>10}{'n':>8}"
    )
    for kind in ("sqlite", "postgresql"):
        f = result[kind]
        if f is None:
            print(f"{kind:<11}absent: set PHASEGATE_TEST_POSTGRES_URL to measure PostgreSQL")
            continue
        for name in CALLS:
            s = f[name]
            label = "echo (floor)" if name == "echo" else name
            print(
                f"{kind:<11}{label:<21}{s['p50_ms']:>9.1f}{s['p99_ms']:>9.1f}"
                f"{s['calls_per_s']:>9.1f}{s.get('x_echo_p50', 1.0):>12.2f}"
                f"{s.get('echo_calls_per_s_x', 1.0):>10.2f}{s['n']:>8}"
            )
        print(f"{kind:<11}({f['sessions']:,} sessions, seeded in {f['seed_s']:.1f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, help="concurrent MCP clients (50)")
    parser.add_argument("--sessions", type=int, help="copies of the demo session (1,000)")
    parser.add_argument("--seconds", type=float, help="length of each call's window (5)")
    parser.add_argument("--rounds", type=int, help="interleaved windows per call (3)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: small counts")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    clients = args.clients or (4 if args.quick else 50)
    copies = args.sessions or (30 if args.quick else 1_000)
    seconds = args.seconds or (0.5 if args.quick else 5.0)
    rounds = args.rounds or (1 if args.quick else 3)
    result = run(copies, clients, seconds, rounds)
    if args.json:
        print(json.dumps(result))
    else:
        print_table(result)


if __name__ == "__main__":
    main()
