"""Start-up: `phasegate mcp` answering `initialize` next to the SDK's echo server; CLI commands.

Every figure is wall-clock time from starting a process, as a user (or an agent
harness) starts it: the console script `phasegate`, next to `python -c pass`.

- mcp: `phasegate mcp` and a one-tool echo server written with the same
  official SDK (`python echo_server.py`) are each started with stdin/stdout
  pipes; the client writes `initialize` at once (as Claude Code, Codex and
  Gemini CLI do) and the clock stops when the answer arrives; then
  `notifications/initialized` and `tools/list`, the clock stopping at its
  answer too (harnesses show the tools only then). Aim: phasegate's
  `initialize` <= 1.2 x the echo server's.
- cli: `--version` and `--help` (aim <= 300 ms); `ls`, `show SESSION` and a
  human decision (`pause`, then `resume`, alternately; the path `approve` takes)
  on a project set up with `phasegate init` (aim <= 500 ms).

Each round starts every process once, in turn, so load hits all of them alike;
figures are medians over the rounds and ratios are taken within the same run.
SQLite always; PostgreSQL too when PHASEGATE_TEST_POSTGRES_URL is set (else
null in the JSON). `--json` prints one JSON object; `--quick` is a smoke run.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mcp_latency import ECHO_SERVER  # the SDK's echo server, the floor every MCP bench uses
from realistic import per_database

PHASEGATE = str(Path(sys.executable).with_name("phasegate"))
AIM_MCP_X_ECHO, AIM_INFO_MS, AIM_COMMAND_MS = 1.2, 300.0, 500.0
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "bench-startup", "version": "0"},
    },
}
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}
TOOLS_LIST = {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}}
CALC = "def add(a: int, b: int) -> int:\n    return a + b\n"
DESIGN = "# Calculator\n\n`add(a, b)` returns the sum of two integers.\n"


def git(cwd: Path, *args: str) -> None:
    identity = ["-c", "user.email=bench@example.com", "-c", "user.name=bench"]
    subprocess.run(["git", *identity, *args], cwd=cwd, check=True, capture_output=True)


@contextmanager
def project(work: Path, database_url: str | None) -> Iterator[tuple[Path, dict[str, str], str]]:
    """A git project set up with `phasegate init`, one session started: (root, env, session)."""
    root = work / "project"
    root.mkdir()
    (root / "calc.py").write_text(CALC)
    (root / "design.md").write_text(DESIGN)
    (root / "phasegate.toml").write_text('test_command = "python -m pytest -q"\n')
    git(root, "init", "-q", "-b", "main")
    git(root, "add", ".")
    git(root, "commit", "-qm", "initial")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHASEGATE_")}
    env["PHASEGATE_CONFIG_DIR"] = str(work / "config")
    if database_url:
        env["PHASEGATE_DATABASE_URL"] = database_url
    run_cli(root, env, "init", "--name", "bench")
    started = json.loads(run_cli(root, env, "start", "design.md", "--json"))
    yield root, env, str(started["id"])


def run_cli(root: Path, env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [PHASEGATE, *args], cwd=root, env=env, capture_output=True, text=True, timeout=120
    )
    if done.returncode != 0:
        raise SystemExit(f"phasegate {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def timed(argv: list[str], root: Path, env: dict[str, str]) -> float:
    """Milliseconds from start to exit of one command, which must succeed."""
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=root, env=env, capture_output=True, timeout=120)
    elapsed = (time.perf_counter() - start) * 1000
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{done.stderr.decode()}")
    return elapsed


def timed_mcp(argv: list[str], root: Path, env: dict[str, str]) -> tuple[float, float]:
    """Milliseconds from start to the `initialize` answer, and to the `tools/list` answer."""

    def send(message: dict[str, Any]) -> None:
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(message).encode() + b"\n")
        proc.stdin.flush()

    def answer(request_id: int) -> dict[str, Any]:
        assert proc.stdout is not None
        for line in proc.stdout:
            message: dict[str, Any] = json.loads(line)
            if message.get("id") == request_id:
                if "result" not in message:
                    raise SystemExit(f"{' '.join(argv)} answered {message}")
                return message
        raise SystemExit(f"{' '.join(argv)} exited before answering; see its stderr")

    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=root, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        send(INITIALIZE)
        answer(1)
        initialized = (time.perf_counter() - start) * 1000
        send(INITIALIZED)
        send(TOOLS_LIST)
        if not answer(2)["result"]["tools"]:
            raise SystemExit(f"{' '.join(argv)} listed no tools")
        listed = (time.perf_counter() - start) * 1000
    finally:
        assert proc.stdin is not None
        proc.stdin.close()  # the client hangs up: the server exits
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return initialized, listed


def measure(root: Path, env: dict[str, str], session: str, rounds: int) -> dict[str, Any]:
    """Median milliseconds of each start-up over `rounds` interleaved rounds, and ratios."""
    echo = root.parent / "echo_server.py"
    echo.write_text(ECHO_SERVER)
    decisions = itertools.cycle(["pause", "resume"])
    cli: dict[str, Callable[[], float]] = {
        "python_pass": lambda: timed([sys.executable, "-c", "pass"], root, env),
        "version": lambda: timed([PHASEGATE, "--version"], root, env),
        "help": lambda: timed([PHASEGATE, "--help"], root, env),
        "ls": lambda: timed([PHASEGATE, "ls"], root, env),
        "show": lambda: timed([PHASEGATE, "show", session], root, env),
        "decide": lambda: timed([PHASEGATE, next(decisions), session], root, env),
    }
    samples: dict[str, list[float]] = {name: [] for name in cli}
    servers = {"echo": [sys.executable, str(echo)], "phasegate": [PHASEGATE, "mcp"]}
    mcp: dict[str, dict[str, list[float]]] = {n: {"init": [], "tools": []} for n in servers}
    for _ in range(rounds):
        for name, argv in servers.items():
            initialized, listed = timed_mcp(argv, root, env)
            mcp[name]["init"].append(initialized)
            mcp[name]["tools"].append(listed)
        for name, command in cli.items():
            samples[name].append(command())
    if rounds % 2:  # the last decision was a pause: resume, so the session is as it was
        run_cli(root, env, "resume", session)

    def median(values: list[float]) -> float:
        return round(statistics.median(values), 1)

    floor = median(samples["python_pass"])
    echo_init, echo_tools = median(mcp["echo"]["init"]), median(mcp["echo"]["tools"])
    figures: dict[str, Any] = {
        "python_pass_ms": floor,
        "mcp": {
            "echo_initialize_ms": echo_init,
            "phasegate_initialize_ms": median(mcp["phasegate"]["init"]),
            "initialize_x_echo": round(median(mcp["phasegate"]["init"]) / echo_init, 2),
            "echo_tools_list_ms": echo_tools,
            "phasegate_tools_list_ms": median(mcp["phasegate"]["tools"]),
            "tools_list_x_echo": round(median(mcp["phasegate"]["tools"]) / echo_tools, 2),
        },
        "cli": {
            name: {"median_ms": median(s), "x_python": round(median(s) / floor, 1)}
            for name, s in samples.items()
            if name != "python_pass"
        },
    }
    return figures


def run(rounds: int) -> dict[str, Any]:
    result: dict[str, Any] = {
        "rounds": rounds,
        "aims": {
            "initialize_max_x_echo": AIM_MCP_X_ECHO,
            "version_help_max_ms": AIM_INFO_MS,
            "commands_max_ms": AIM_COMMAND_MS,
        },
    }

    def on(_kind: str, work: Path, url: str | None) -> dict[str, Any]:
        with project(work, url) as (root, env, session):
            return measure(root, env, session, rounds)

    return {**result, **per_database(on)}


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def print_table(result: dict[str, Any]) -> None:
    print(
        f"start-up, medians of {result['rounds']} interleaved rounds; aims: initialize <= "
        f"{AIM_MCP_X_ECHO} x echo, --version/--help <= {AIM_INFO_MS:.0f} ms, "
        f"commands <= {AIM_COMMAND_MS:.0f} ms"
    )
    print(f"{'database':<11}{'what':<34}{'median ms':>10}{'ratio':>14}   verdict")
    for kind in ("sqlite", "postgresql"):
        f = result[kind]
        if f is None:
            print(f"{kind:<11}absent: set PHASEGATE_TEST_POSTGRES_URL to measure PostgreSQL")
            continue
        m = f["mcp"]
        print(f"{kind:<11}{'python -c pass':<34}{f['python_pass_ms']:>10.1f}")
        rows = (
            ("echo server: initialize", m["echo_initialize_ms"], "", ""),
            (
                "phasegate mcp: initialize",
                m["phasegate_initialize_ms"],
                f"{m['initialize_x_echo']:.2f} x echo",
                verdict(m["initialize_x_echo"] <= AIM_MCP_X_ECHO),
            ),
            ("echo server: tools/list", m["echo_tools_list_ms"], "", ""),
            (
                "phasegate mcp: tools/list",
                m["phasegate_tools_list_ms"],
                f"{m['tools_list_x_echo']:.2f} x echo",
                "",
            ),
        )
        for what, ms, ratio, word in rows:
            print(f"{kind:<11}{what:<34}{ms:>10.1f}{ratio:>14}   {word}")
        for name, c in f["cli"].items():
            aim = AIM_INFO_MS if name in ("version", "help") else AIM_COMMAND_MS
            label = {"version": "--version", "help": "--help", "decide": "pause/resume"}
            what = f"phasegate {label.get(name, name)}"
            ratio = f"{c['x_python']:.1f} x python"
            print(
                f"{kind:<11}{what:<34}{c['median_ms']:>10.1f}{ratio:>14}   "
                f"{verdict(c['median_ms'] <= aim)}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, help="rounds (each starts every process once; 15)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: two rounds")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    result = run(args.n or (2 if args.quick else 15))
    if args.json:
        print(json.dumps(result))
    else:
        print_table(result)


if __name__ == "__main__":
    main()
