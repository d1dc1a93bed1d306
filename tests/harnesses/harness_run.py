"""One headless harness run under strace, and the network connections it (or anything it
started) opened that did not go to this machine.

strace follows every child (the harness's helpers, a stdio MCP server, its test runs) and
records only `connect`; a DNS lookup shows up as a connection to the resolver.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

#: `connect(3, {sa_family=AF_INET, sin_port=htons(443), sin_addr=inet_addr("1.2.3.4")}, 16)`,
#: `connect(3, {sa_family=AF_INET6, sin6_port=htons(53), …, inet_pton(AF_INET6, "::1", …`
_INET = re.compile(
    r"connect\(\d+, \{sa_family=AF_INET6?, sin6?_port=htons\((\d+)\), .*?"
    r'(?:inet_addr\(|inet_pton\(AF_INET6, )"([^"]+)"'
)
LOOPBACK = ("127.0.0.1", "::1", "::ffff:127.0.0.1")
DNS = 53


@dataclass(frozen=True)
class Run:
    """What one harness run did."""

    returncode: int | None  # None: killed at the timeout
    seconds: float
    stdout: str
    stderr: str
    trace: Path

    def tail(self, chars: int = 4000) -> str:
        return (
            f"exit {self.returncode} after {self.seconds:.0f} s\n"
            f"--- stdout (tail) ---\n{self.stdout[-chars:]}\n"
            f"--- stderr (tail) ---\n{self.stderr[-chars:]}"
        )

    def connections(self) -> list[tuple[str, int]]:
        """Each internet (address, port) a traced connect() went to."""
        lines = self.trace.read_text(errors="replace").splitlines()
        found = (_INET.search(line) for line in lines)
        return [(m.group(2), int(m.group(1))) for m in found if m]

    def remote_connections(self) -> list[tuple[str, int]]:
        """The connections that left this machine (or tried to: a DNS lookup, even locally)."""
        return [(a, port) for a, port in self.connections() if a not in LOOPBACK or port == DNS]


def strace() -> str:
    path = shutil.which("strace")
    if path is None:
        pytest.skip("strace is not installed: it shows that the harnesses reach only 127.0.0.1")
    return path


def run(argv: list[str], env: dict[str, str], cwd: Path, logs: Path, timeout: float) -> Run:
    """Run `argv` to its end (or kill its whole process group at `timeout` seconds)."""
    logs.mkdir(parents=True, exist_ok=True)
    trace = logs / "connect.strace"
    out, err = logs / "stdout", logs / "stderr"
    traced = [strace(), "-f", "-qq", "-e", "trace=connect", "-e", "signal=none", "-o", str(trace)]
    traced += ["--", *argv]
    started = time.monotonic()
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(
            traced,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )
        try:
            code: int | None = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            code = None
        finally:
            # Whatever it left behind (a stdio MCP server, helpers) goes with it.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return Run(
        code,
        time.monotonic() - started,
        out.read_text(errors="replace"),
        err.read_text(errors="replace"),
        trace,
    )
