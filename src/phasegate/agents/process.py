"""Run one agent CLI: own process group, prompt on stdin, output to a capped log, hard deadline.

The worker's own stdout/stderr are never inherited. If the worker dies, the
kernel kills the agent too (Linux `PR_SET_PDEATHSIG`), so an orphan can't keep
editing a worktree that another worker has claimed by then. The command line
is usually a sandbox around `/bin/sh -c <command>` (see `agents.sandbox`);
killing its process group kills bubblewrap, and with it every process inside.

The output goes through a pipe, not straight into the log file: an agent
looping on errors can print without end, so the log keeps its first
`LOG_HEAD_BYTES` (written as they come) and its last `LOG_TAIL_BYTES`, with
a line saying how many bytes were cut between them, as test output is kept.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from phasegate.testrun.capture import HeadTail, PipeReader

GRACE_S = 3.0  # between SIGTERM and SIGKILL of the agent's process group
LOG_HEAD_BYTES = 256 * 1024  # of one attempt's output, the log keeps the start…
LOG_TAIL_BYTES = 1024 * 1024  # …and the end; the middle is cut, with a marker
_TICK_S = 0.05
_DRAIN_S = 1.0  # how long to keep reading once the agent is gone (a leaked writer)


@dataclass(frozen=True)
class AgentRun:
    """How an agent process ended; `exit_code` is None after a timeout or cancel."""

    exit_code: int | None
    timed_out: bool
    cancelled: bool
    duration_s: float
    output_tail: str
    log_cut_bytes: int = 0  # output left out of the log, between its head and its tail


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec function that asks Linux to SIGKILL the child when its parent thread dies."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    prctl = libc.prctl  # resolved here: the child must not import or allocate after fork
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, signal.SIGKILL)

    return preexec


_PREEXEC = _die_with_parent()


def run_agent_process(
    argv: Sequence[str],
    cwd: Path,
    *,
    stdin_path: Path,
    env: Mapping[str, str],
    log_path: Path,
    timeout_s: float,
    cancelled: threading.Event,
    tail_chars: int = 4000,
) -> AgentRun:
    """Run `argv` in `cwd` until it exits, times out or is cancelled."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with open(stdin_path, "rb") as stdin, open(log_path, "wb", buffering=0) as log:
        proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=dict(env),
            start_new_session=True,
            preexec_fn=_PREEXEC,
        )
        assert proc.stdout is not None  # stdout=PIPE
        buffer = HeadTail(LOG_HEAD_BYTES, LOG_TAIL_BYTES, head_sink=log.write)
        reader = PipeReader(proc.stdout.fileno(), buffer, name="agent-output")
        reader.start()
        timed_out = was_cancelled = False
        deadline = started + timeout_s
        try:
            while proc.poll() is None:
                if cancelled.is_set() or time.monotonic() > deadline:
                    was_cancelled, timed_out = cancelled.is_set(), not cancelled.is_set()
                    _kill_group(proc)
                    break
                time.sleep(_TICK_S)
        finally:
            code = proc.wait()
            # Whatever the agent left running in its group would hold the pipe open.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            reader.finish(_DRAIN_S)
            proc.stdout.close()
            cut = _write_tail(log, buffer)
    return AgentRun(
        exit_code=None if timed_out or was_cancelled else code,
        timed_out=timed_out,
        cancelled=was_cancelled,
        duration_s=time.monotonic() - started,
        output_tail=_tail(log_path, tail_chars),
        log_cut_bytes=cut,
    )


def _write_tail(log: BinaryIO, buffer: HeadTail) -> int:
    """End the log with the cut marker and the kept tail; the bytes cut."""
    cut = buffer.cut
    with contextlib.suppress(OSError):  # a full disk: the head is there, the rest is lost
        if cut:
            log.write(
                f"\n… [{cut} bytes cut: the log keeps the first {buffer.head_max} and the "
                f"last {buffer.tail_max} bytes of the agent's output] …\n".encode()
            )
        log.write(buffer.tail())
    return cut


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the whole process group, then SIGKILL whatever is left after the grace period."""
    for sig, wait_s in ((signal.SIGTERM, GRACE_S), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            continue
        if sig == signal.SIGTERM:
            # The leader is gone; its children may not be. One SIGKILL to the group clears them.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        return


def _tail(path: Path, chars: int) -> str:
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - chars * 4))
        return handle.read().decode("utf-8", "replace")[-chars:]
