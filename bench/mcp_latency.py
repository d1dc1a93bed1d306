"""Latency of phasegate's MCP tools with 10,000 real-sized sessions, next to an echo tool.

Per database (SQLite; PostgreSQL when PHASEGATE_TEST_POSTGRES_URL is set, else
null in the JSON): the bundled demo runs on it once (`phasegate demo --yes`),
its project is the bench's project, and its session's rows are copied 10,000
times with new ids (a third at the test review gate, a third at the coder, a
third completed; see bench/realistic.py), plus one copy in fixing_failures:
the session whose status is asked (what a coder reads while fixing: design,
approved tests read from git, failures, feedback).

For each transport (a `phasegate mcp` subprocess on stdio; `phasegate serve` at
/mcp over HTTP) it times, interleaved call by call with the official `Client`:
- echo: the same SDK serving a one-line echo tool the same way (the floor);
- get_session_status on the fixing copy (aim: p50 <= 2 x the echo floor);
- list_sessions with its defaults (aim: p50 <= 30 ms);
then submit_implementation (validate, commit to the session's worktree, one
transition) on real sessions whose demo tests were submitted and approved.
It prints p50, p99 and the ratio to the floor; `--json` prints one JSON object;
`--quick` is a smoke run with few sessions and calls.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
from mcp.client.streamable_http import streamable_http_client
from realistic import (
    PHASEGATE,
    Demo,
    clone_sessions,
    demo_database,
    demo_project,
    open_demo,
    placement,
)

from mcp import Client, StdioServerParameters
from phasegate.demo.agent import TEST_FILE
from phasegate.demo.project import agent_file
from phasegate.orchestrator import Orchestrator

POSTGRES_URL = os.environ.get("PHASEGATE_TEST_POSTGRES_URL", "")
AIM_LIST_MS, AIM_STATUS_X_FLOOR = 30.0, 2.0
PHASES = ("awaiting_test_review", "generating_implementation", "completed")
ECHO_SERVER = """\
import sys
from mcp.server import MCPServer
mcp = MCPServer("echo")

@mcp.tool()
def echo(text: str) -> str:
    return text

if len(sys.argv) > 1:
    mcp.run("streamable-http", host="127.0.0.1", port=int(sys.argv[1]), stateless_http=True)
else:
    mcp.run()
"""


def sh(*argv: str, cwd: Path, env: dict[str, str]) -> str:
    return subprocess.run(argv, cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


def insert_copies(orch: Orchestrator, demo: Demo, count: int) -> str:
    """`count` copies spread over three phases, and one in fixing_failures (returned)."""
    start = datetime.now(UTC) - timedelta(days=3)
    places = {p: placement(orch, p, start) for p in PHASES}

    def place(i: int) -> dict[str, Any]:
        at = start + timedelta(seconds=i)
        return {**places[PHASES[i % 3]], "phase_entered_at": at, "updated_at": at}

    tables = list(demo.template.children)  # events, test runs, leases
    clone_sessions(orch, demo.template, count, place, tables=tables)
    fixing = placement(orch, "fixing_failures", datetime.now(UTC))
    [status_id] = clone_sessions(orch, demo.template, 1, lambda i: fixing, tables=tables)
    return status_id


def sessions_awaiting_code(orch: Orchestrator, task_id: str, count: int) -> list[str]:
    """Real sessions of the demo task whose demo tests are approved (a real red run each)."""
    human = orch.add_principal("human", f"bench-human-{time.monotonic_ns()}")[0]
    agent = orch.add_principal("agent", f"bench-setup-{time.monotonic_ns()}", ["tester"])[0]
    tests = [{"path": TEST_FILE, "content": agent_file("test_ttl_cache.py")}]
    ids = []
    for _ in range(count):
        session = orch.start_session(task_id, human, again=True)
        orch.submit(session.id, "tests", agent, tests)
        ids.append(orch.decide(session.id, "approve", human).id)
    return ids


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str) -> None:
    for _ in range(300):
        try:
            httpx.post(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not come up")


def stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {
        "p50_ms": round(statistics.median(ordered), 2),
        "p99_ms": round(p99, 2),
        "n": len(ordered),
    }


async def timed_call(call: Callable[[], Awaitable[Any]]) -> float:
    start = time.perf_counter()
    result = await call()
    elapsed = (time.perf_counter() - start) * 1000
    if getattr(result, "is_error", False):
        raise SystemExit(f"tool error: {result.content}")
    return elapsed


async def measure(
    client: Client, echo: Client, status_id: str, submit_ids: list[str], n: int
) -> dict[str, Any]:
    calls: dict[str, Callable[[], Awaitable[Any]]] = {
        "echo": lambda: echo.call_tool("echo", {"text": "hello"}),
        "get_session_status": lambda: client.call_tool(
            "get_session_status", {"session_id": status_id}
        ),
        "list_sessions": lambda: client.call_tool("list_sessions", {}),
    }
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for call in calls.values():
        await timed_call(call)  # warm-up
    for _ in range(n):  # interleaved: noise hits the floor and the tools alike
        for name, call in calls.items():
            samples[name].append(await timed_call(call))
    implementation = [{"path": "ttl_cache.py", "content": agent_file("ttl_cache_fixed.py")}]

    def submit(session_id: str) -> Callable[[], Awaitable[Any]]:
        args = {"session_id": session_id, "files": implementation}
        return lambda: client.call_tool("submit_implementation", args)

    if len(submit_ids) > 1:
        await timed_call(submit(submit_ids[0]))  # warm-up
        submit_ids = submit_ids[1:]
    samples["submit_implementation"] = [await timed_call(submit(sid)) for sid in submit_ids]
    figures = {name: stats(s) for name, s in samples.items()}
    floor = figures["echo"]["p50_ms"]
    for figure in figures.values():
        figure["x_floor_p50"] = round(figure["p50_ms"] / floor, 2)
    return figures


async def run_kind(demo: Demo, n: int, submits: int, copies: int, work: Path) -> dict[str, Any]:
    orch = open_demo(demo.root, demo.database_url)
    root, env = demo.root, demo.env
    task_id = str(demo.template.task["id"])
    echo_script = work / "echo_server.py"
    echo_script.write_text(ECHO_SERVER)
    try:
        began = time.perf_counter()
        status_id = insert_copies(orch, demo, copies)
        insert_s = time.perf_counter() - began
        prepared = submits + 1 if submits > 1 else 1  # one more for a warm-up, if several
        stdio_ids = sessions_awaiting_code(orch, task_id, prepared)
        http_ids = sessions_awaiting_code(orch, task_id, prepared)
    finally:
        orch.close()
    results: dict[str, Any] = {"sessions": copies + 1 + 2 * prepared + 1}
    results["insert_s"] = round(insert_s, 1)
    stdio = StdioServerParameters(
        command=PHASEGATE, args=["mcp", "--project", str(root)], env=env, cwd=str(root)
    )
    echo_stdio = StdioServerParameters(command=sys.executable, args=[str(echo_script)], env=env)
    async with Client(stdio) as client, Client(echo_stdio) as echo:
        results["stdio"] = await measure(client, echo, status_id, stdio_ids, n)

    roles = ("--role", "coder", "--role", "tester", "--role", "runner")
    added = sh(PHASEGATE, "token", "add", "--agent", "bench", *roles, "--json", cwd=root, env=env)
    token = json.loads(added)["token"]
    port, echo_port = free_port(), free_port()
    procs = [
        subprocess.Popen(
            [PHASEGATE, "serve", "--port", str(port)],
            cwd=root,
            env=env,
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
        # The trailing slash avoids the host's 307 from /mcp to /mcp/ (see issue 4 notes).
        url, echo_url = f"http://127.0.0.1:{port}/mcp/", f"http://127.0.0.1:{echo_port}/mcp"
        wait_http(url)
        wait_http(echo_url)
        headers = {"Authorization": f"Bearer {token}"}
        async with (
            httpx2.AsyncClient(headers=headers, timeout=60) as http,
            Client(streamable_http_client(url, http_client=http)) as client,
            Client(echo_url) as echo,
        ):
            results["http"] = await measure(client, echo, status_id, http_ids, n)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)
    return results


def run(n: int, submits: int, copies: int) -> dict[str, Any]:
    result: dict[str, Any] = {
        "calls": n,
        "submits": submits,
        "copies": copies,
        "aims": {"list_sessions_p50_max_ms": AIM_LIST_MS, "status_max_x_floor": AIM_STATUS_X_FLOOR},
    }
    with tempfile.TemporaryDirectory(prefix="phasegate-bench-") as tmp:
        for kind in ("sqlite", "postgresql"):
            if kind == "postgresql" and not POSTGRES_URL:
                result[kind] = None
                continue
            work = Path(tmp) / kind
            work.mkdir()
            with demo_database(kind) as url, demo_project(work, url) as demo:
                result[kind] = anyio.run(run_kind, demo, n, submits, copies, work)
    return result


def verdict(name: str, figure: dict[str, float]) -> str:
    if name == "list_sessions":
        return "ok" if figure["p50_ms"] <= AIM_LIST_MS else "MISSED"
    if name == "get_session_status":
        return "ok" if figure["x_floor_p50"] <= AIM_STATUS_X_FLOOR else "MISSED"
    return ""


def print_table(result: dict[str, Any]) -> None:
    print(
        f"MCP with {result['copies']:,} copies of the demo session; {result['calls']} interleaved "
        f"calls, {result['submits']} submits per transport; aims: list_sessions p50 <= "
        f"{AIM_LIST_MS:.0f} ms, get_session_status p50 <= {AIM_STATUS_X_FLOOR:.0f} x echo"
    )
    print(
        f"{'database':<11}{'transport':<10}{'call':<24}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'x floor':>9}{'n':>6}   verdict"
    )
    for kind in ("sqlite", "postgresql"):
        f = result[kind]
        if f is None:
            print(f"{kind:<11}absent: set PHASEGATE_TEST_POSTGRES_URL to measure PostgreSQL")
            continue
        for transport in ("stdio", "http"):
            for name, s in f[transport].items():
                print(
                    f"{kind:<11}{transport:<10}{name:<24}{s['p50_ms']:>9.2f}{s['p99_ms']:>9.2f}"
                    f"{s['x_floor_p50']:>9.2f}{s['n']:>6}   {verdict(name, s)}"
                )
        print(f"{kind:<11}({f['sessions']:,} sessions; copies inserted in {f['insert_s']:.0f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, help="interleaved calls per read measurement (200)")
    parser.add_argument("--submits", type=int, help="submit calls per transport (20)")
    parser.add_argument("--sessions", type=int, help="copies of the demo session (10,000)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: small counts")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    n = args.n or (5 if args.quick else 200)
    submits = args.submits or (1 if args.quick else 20)
    copies = args.sessions or (150 if args.quick else 10_000)
    result = run(n, submits, copies)
    if args.json:
        print(json.dumps(result))
    else:
        print_table(result)


if __name__ == "__main__":
    main()
