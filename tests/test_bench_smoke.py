"""Smoke runs of the benchmarks: each one's `--quick --json` finishes and reports figures.

Speed is judged by reading the benches' output, never here: these tests only
check that each bench runs end to end and prints one JSON object with positive
numbers under the expected keys (PostgreSQL's figures too when it is configured,
null otherwise).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
BENCHES = ("transitions.py", "dashboard.py", "mcp_latency.py", "mcp_load.py", "startup.py")
KINDS = ["sqlite", "postgresql"] if os.environ.get("PHASEGATE_TEST_POSTGRES_URL") else ["sqlite"]
DEMO_PORT = 8765  # `phasegate demo` prefers it, else takes any free port

pytestmark = pytest.mark.slow


@dataclass
class SmokeRun:
    process: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path

    def result(self) -> dict[str, Any]:
        """The bench's JSON object, once it exited 0; PostgreSQL's part is null when unset."""
        code = self.process.wait(timeout=240)
        assert code == 0, self.stdout.read_text() + self.stderr.read_text()
        result: dict[str, Any] = json.loads(self.stdout.read_text())
        if "postgresql" not in KINDS:
            assert result["postgresql"] is None
        return result


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, SmokeRun]]:
    """The smoke runs, started together: much of their time is waiting, not CPU."""
    out = tmp_path_factory.mktemp("bench-smoke")
    started: dict[str, SmokeRun] = {}
    with socket.socket() as held:
        # Held, so the concurrent demos each take a free port instead of racing for it
        # (if it is already taken, the demos skip it anyway).
        with contextlib.suppress(OSError):
            held.bind(("127.0.0.1", DEMO_PORT))
        try:
            for name in BENCHES:
                stdout_path, stderr_path = out / f"{name}.out", out / f"{name}.err"
                with stdout_path.open("wb") as stdout, stderr_path.open("wb") as stderr:
                    process = subprocess.Popen(
                        [sys.executable, str(BENCH / name), "--quick", "--json"],
                        stdout=stdout,
                        stderr=stderr,
                    )
                started[name] = SmokeRun(process, stdout_path, stderr_path)
            yield started
        finally:
            for run in started.values():
                if run.process.poll() is None:
                    run.process.kill()
                    run.process.wait()


def assert_positive(figures: dict[str, Any], *keys: str) -> None:
    for key in keys:
        value = figures[key]
        assert isinstance(value, int | float) and value > 0, f"{key} = {value!r}"


def test_transitions_reports_rates_ratios_footprint_and_list_time(
    runs: dict[str, SmokeRun],
) -> None:
    """bench/transitions.py reports phasegate and floor rates, ratios and footprints per state."""
    result = runs["transitions.py"].result()
    assert result["workload"]["transitions_per_session"] == 10
    assert_positive(result["template"], "session_row_json_bytes")
    for kind in KINDS:
        for state in ("tiny", "real"):
            assert_positive(
                result[kind][state], "phasegate_tps", "floor_tps", "ratio", "footprint_bytes"
            )
        assert_positive(result[kind], "list_waiting_ms", "list_waiting_rows")
    if result["langgraph"] is not None:
        assert_positive(result["langgraph"]["real"], "langgraph_tps", "phasegate_over_langgraph")


def test_dashboard_reports_page_and_sse_percentiles(runs: dict[str, SmokeRun]) -> None:
    """bench/dashboard.py reports p50 and p99 of the list pages, the gate page and SSE delays."""
    result = runs["dashboard.py"].result()
    measures = ("list", "api_list", "session", "sse_same_process", "sse_other_process")
    for kind in KINDS:
        keys = [f"{m}_{p}_ms" for m in measures for p in ("p50", "p99")]
        assert_positive(result[kind], "sessions", *keys)


def test_mcp_latency_reports_tools_next_to_the_echo_floor(runs: dict[str, SmokeRun]) -> None:
    """bench/mcp_latency.py reports p50, p99 and the ratio to the echo floor of each tool."""
    result = runs["mcp_latency.py"].result()
    calls = ("echo", "get_session_status", "list_sessions", "submit_implementation")
    for kind in KINDS:
        for transport in ("stdio", "http"):
            for call in calls:
                assert_positive(result[kind][transport][call], "p50_ms", "p99_ms", "x_floor_p50")


def test_mcp_load_reports_percentiles_and_rates_next_to_the_echo_floor(
    runs: dict[str, SmokeRun],
) -> None:
    """bench/mcp_load.py reports p50, p99 and calls per second of each tool under concurrent
    clients, with their ratios to the echo server's under the same load."""
    result = runs["mcp_load.py"].result()
    assert_positive(result, "clients", "copies")
    for kind in KINDS:
        assert_positive(result[kind], "sessions", "seed_s")
        assert_positive(result[kind]["echo"], "p50_ms", "p99_ms", "calls_per_s")
        for call in ("get_session_status", "list_sessions"):
            assert_positive(
                result[kind][call],
                "p50_ms",
                "p99_ms",
                "calls_per_s",
                "x_echo_p50",
                "echo_calls_per_s_x",
            )


def test_startup_reports_the_handshake_next_to_the_echo_server_and_commands_next_to_python(
    runs: dict[str, SmokeRun],
) -> None:
    """bench/startup.py reports `initialize` and `tools/list` next to the SDK's echo server,
    and each command's time next to `python -c pass`."""
    result = runs["startup.py"].result()
    for kind in KINDS:
        assert_positive(result[kind], "python_pass_ms")
        assert_positive(
            result[kind]["mcp"],
            "echo_initialize_ms",
            "phasegate_initialize_ms",
            "initialize_x_echo",
            "echo_tools_list_ms",
            "phasegate_tools_list_ms",
            "tools_list_x_echo",
        )
        for command in ("version", "help", "ls", "show", "decide"):
            assert_positive(result[kind]["cli"][command], "median_ms", "x_python")
