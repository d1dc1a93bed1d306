"""Measure what running tests through phasegate costs, with and without the sandbox.

Generates a git project with 200 small pytest tests and runs, interleaved N
times each: `python -m pytest -q` directly; `run_tests` with `sandbox="none"`
(export of the commit, phasegate's pytest bootstrap and evidence stream, JUnit
report, verdict); and `run_tests` in the bubblewrap sandbox. The sandbox's own
cost is the difference of the last two medians (aim: at most 50 ms per run).
Prints a table, or one JSON object with `--json`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from phasegate.testrun import Sandbox, run_tests

TESTS = 200
# Plugin autoloading is disabled on both sides: it costs the same either way
# and only adds noise (this environment autoloads hypothesis, schemathesis…).
COMMAND = f"{sys.executable} -m pytest -q -p no:cacheprovider"
ENV = {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}


def make_project(root: Path) -> str:
    """Write a 200-test project into `root`, commit it, and return the commit id."""
    (root / "tests").mkdir(parents=True)
    (root / "pyproject.toml").write_text('[tool.pytest.ini_options]\ntestpaths = ["tests"]\n')
    (root / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    for module in range(10):
        body = "from calc import add\n" + "".join(
            f"\n\ndef test_add_{i}():\n    assert add({i}, 1) == {i + 1}\n"
            for i in range(TESTS // 10)
        )
        (root / "tests" / f"test_calc_{module}.py").write_text(body)
    git = ["git", "-C", str(root), "-c", "user.name=b", "-c", "user.email=b@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "bench"], check=True)
    return subprocess.run(
        [*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()


def time_direct(root: Path) -> float:
    started = time.perf_counter()
    subprocess.run(
        COMMAND.split(), cwd=root, env={**os.environ, **ENV}, check=True, capture_output=True
    )
    return time.perf_counter() - started


def time_phasegate(root: Path, sha: str, sandbox: Sandbox) -> float:
    started = time.perf_counter()
    evidence = run_tests(root, sha, COMMAND, env_allow=tuple(ENV), sandbox=sandbox)
    elapsed = time.perf_counter() - started
    if evidence.status != "passed" or evidence.counts["total"] != TESTS:
        raise SystemExit(f"benchmark run did not pass: {evidence.reason}\n{evidence.output_tail}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--runs", type=int, default=5, help="runs of each kind (default 5)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    os.environ.update(ENV)  # run_tests takes the allowlisted variables from our environment
    with tempfile.TemporaryDirectory(prefix="phasegate-bench-") as tmp:
        root = Path(tmp)
        sha = make_project(root)
        time_direct(root)  # warm the page cache and __pycache__ of the interpreter
        time_phasegate(root, sha, Sandbox())  # find and probe bwrap and the interpreter once
        direct, bare, boxed = [], [], []
        for _ in range(args.runs):  # interleaved, so load changes hit every kind alike
            direct.append(time_direct(root))
            bare.append(time_phasegate(root, sha, Sandbox(mode="none")))
            boxed.append(time_phasegate(root, sha, Sandbox()))
    direct_p50, bare_p50, boxed_p50 = (
        statistics.median(times) * 1000 for times in (direct, bare, boxed)
    )
    figures = {
        "tests": TESTS,
        "runs": args.runs,
        "direct_p50_ms": round(direct_p50, 1),
        "unsandboxed_p50_ms": round(bare_p50, 1),
        "sandboxed_p50_ms": round(boxed_p50, 1),
        "overhead_ms": round(boxed_p50 - direct_p50, 1),
        "sandbox_overhead_ms": round(boxed_p50 - bare_p50, 1),
        "ratio": round(boxed_p50 / direct_p50, 3),
        "sandbox_target_met": boxed_p50 - bare_p50 <= 50,
    }
    if args.json:
        print(json.dumps(figures))
        return
    print(f"{TESTS} pytest tests, {args.runs} runs each (median)")
    for label, key, unit in (
        ("direct pytest", "direct_p50_ms", "ms"),
        ("run_tests, sandbox none", "unsandboxed_p50_ms", "ms"),
        ("run_tests, bubblewrap", "sandboxed_p50_ms", "ms"),
        ("overhead over direct", "overhead_ms", "ms"),
        ("the sandbox's own cost", "sandbox_overhead_ms", "ms"),
        ("ratio to direct", "ratio", "x"),
        ("sandbox aim (<= 50 ms) met", "sandbox_target_met", ""),
    ):
        print(f"  {label:<28} {figures[key]!s:>10} {unit}")


if __name__ == "__main__":
    main()
