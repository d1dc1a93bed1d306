"""Latency of phasegate's MCP tools over stdio and HTTP, next to an echo tool in the same SDK.

For each transport (a `phasegate mcp` subprocess; `phasegate serve` at /mcp) it
times `get_session_status` and `submit_implementation` (validate, commit to
the session's worktree, one transition) with the official `Client`, and the
same SDK serving a one-line echo tool the same way: the floor. It prints p50,
p99 and the ratio to the floor; `--json` prints one JSON object instead.
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
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
from mcp.client.streamable_http import streamable_http_client

from mcp import Client, StdioServerParameters
from phasegate.config import open_project
from phasegate.orchestrator import Orchestrator

PHASEGATE = str(Path(sys.executable).with_name("phasegate"))
TESTS = "from calc import add\n\n\ndef test_add():\n    assert add(1, 2) == 3\n"
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


def sh(*argv: str, cwd: Path) -> str:
    return subprocess.run(argv, cwd=cwd, check=True, capture_output=True, text=True).stdout


def make_project(root: Path) -> Orchestrator:
    root.mkdir(parents=True)
    (root / "calc.py").write_text("def add(a, b):\n    raise NotImplementedError\n")
    (root / "design.md").write_text("# Calculator\n\n`add(a, b)` returns the sum.\n")
    (root / "pytest.ini").write_text("[pytest]\npythonpath = .\n")
    command = "PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 python -m pytest -q -p no:cacheprovider"
    (root / "phasegate.toml").write_text(f'test_command = "{command}"\n')
    sh("git", "init", "-q", "-b", "main", cwd=root)
    sh("git", "add", ".", cwd=root)
    sh("git", "-c", "user.email=b@x", "-c", "user.name=b", "commit", "-qm", "init", cwd=root)
    sh(PHASEGATE, "init", cwd=root)
    return Orchestrator.open(open_project(root))


def sessions_awaiting_code(orch: Orchestrator, count: int) -> list[str]:
    """Sessions whose tests are approved: each takes one submit_implementation."""
    human = orch.add_principal("human", f"bench-human-{time.monotonic_ns()}")[0]
    agent = orch.add_principal("agent", f"bench-setup-{time.monotonic_ns()}", ["tester"])[0]
    ids = []
    for _ in range(count):
        session = orch.start_session("design.md", human)
        orch.submit(session.id, "tests", agent, [{"path": "tests/test_calc.py", "content": TESTS}])
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


async def timed(n: int, call: Callable[[int], Awaitable[Any]]) -> list[float]:
    await call(0)  # warm-up
    samples = []
    for i in range(n):
        start = time.perf_counter()
        result = await call(i)
        samples.append((time.perf_counter() - start) * 1000)
        if getattr(result, "is_error", False):
            raise SystemExit(f"tool error: {result.content}")
    return samples


def stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {
        "p50_ms": round(statistics.median(ordered), 2),
        "p99_ms": round(p99, 2),
        "n": len(ordered),
    }


async def measure(client: Client, echo: Client, session_ids: list[str], n: int) -> dict[str, Any]:
    status_id = session_ids[0]
    floor = await timed(n, lambda i: echo.call_tool("echo", {"text": "hello"}))
    status = await timed(
        n, lambda i: client.call_tool("get_session_status", {"session_id": status_id})
    )
    todo = iter(session_ids[1:])
    submit = await timed(
        len(session_ids) - 2,
        lambda i: client.call_tool(
            "submit_implementation",
            {
                "session_id": next(todo),
                "files": [{"path": "calc.py", "content": "def add(a, b):\n    return a + b\n"}],
            },
        ),
    )
    figures = {
        "echo": stats(floor),
        "get_session_status": stats(status),
        "submit_implementation": stats(submit),
    }
    for name in ("get_session_status", "submit_implementation"):
        figures[name]["x_floor_p50"] = round(figures[name]["p50_ms"] / figures["echo"]["p50_ms"], 1)
    return figures


async def run(n: int, submits: int, work: Path) -> dict[str, Any]:
    orch = make_project(work / "project")
    root = orch.project.root
    echo_script = work / "echo_server.py"
    echo_script.write_text(ECHO_SERVER)
    results: dict[str, Any] = {}
    env = {**os.environ}
    stdio = StdioServerParameters(
        command=PHASEGATE, args=["mcp", "--project", str(root)], env=env, cwd=str(root)
    )
    echo_stdio = StdioServerParameters(command=sys.executable, args=[str(echo_script)], env=env)
    ids = sessions_awaiting_code(orch, submits + 2)
    async with Client(stdio) as client, Client(echo_stdio) as echo:
        results["stdio"] = await measure(client, echo, ids, n)

    token = json.loads(
        sh(
            PHASEGATE,
            "token",
            "add",
            "--agent",
            "bench",
            "--role",
            "coder",
            "--role",
            "tester",
            "--role",
            "runner",
            "--json",
            cwd=root,
        )
    )["token"]
    port, echo_port = free_port(), free_port()
    procs = [
        subprocess.Popen(
            [PHASEGATE, "serve", "--port", str(port)],
            cwd=root,
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
        ids = sessions_awaiting_code(orch, submits + 2)
        headers = {"Authorization": f"Bearer {token}"}
        async with (
            httpx2.AsyncClient(headers=headers, timeout=60) as http,
            Client(streamable_http_client(url, http_client=http)) as client,  # type: ignore[arg-type]
            Client(echo_url) as echo,
        ):
            results["http"] = await measure(client, echo, ids, n)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)
        orch.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=200, help="calls per read measurement")
    parser.add_argument("--submits", type=int, default=30, help="submit calls per transport")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("PHASEGATE_CONFIG_DIR", str(Path(tmp) / "config"))
        results = anyio.run(run, args.n, args.submits, Path(tmp))
    if args.json:
        print(json.dumps(results))
        return
    print(f"{'transport':<10}{'call':<24}{'p50 ms':>9}{'p99 ms':>9}{'x floor':>9}{'n':>6}")
    for transport, calls in results.items():
        for name, s in calls.items():
            ratio = f"{s['x_floor_p50']:.1f}" if "x_floor_p50" in s else "1.0"
            print(
                f"{transport:<10}{name:<24}{s['p50_ms']:>9.2f}{s['p99_ms']:>9.2f}"
                f"{ratio:>9}{s['n']:>6}"
            )


if __name__ == "__main__":
    main()
