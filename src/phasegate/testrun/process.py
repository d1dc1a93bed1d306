"""Run one shell command with a hard deadline, bounded output and no surviving processes.

The command runs via `/bin/sh -c` in a new session (so its process group can
be signalled as a whole), with stdin at /dev/null and stdout+stderr merged
into one pipe. A reader thread drains the pipe into a head+tail buffer, so a
command that prints gigabytes costs at most a few MiB. When the command ends
(or its deadline passes: SIGTERM, `grace_s`, SIGKILL) every process it left
behind is killed, and the pipe is read for at most `_DRAIN_S` more, so a
leaked writer can never hang the caller. Blocking, but never busy: run it in
a worker thread (e.g. `anyio.to_thread.run_sync`) from async code.
"""

from __future__ import annotations

import contextlib
import fcntl
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from phasegate.testrun._proctree import ProcessTree, ticks_since_boot
from phasegate.testrun.capture import HeadTail, PipeReader
from phasegate.testrun.errors import SpawnError

SCOPE_ENV = "TESTRUN_SCOPE_ID"  # the marker that finds escaped descendants (see _proctree)
_TICK_S = 0.05  # how often the waiting thread wakes: progress callbacks, deadline checks
_SCAN_S = 0.2  # how often the process tree is walked while the command runs
_DRAIN_S = 1.0  # how long to keep reading after everything was killed
_PIPE_BYTES = 1 << 20  # a bigger pipe means fewer wake-ups when a command floods output
_TIMEOUT = "timeout"

_ALWAYS_ENV = ("PATH", "HOME", "LANG", "TMPDIR", "VIRTUAL_ENV", "TZ", "USER", "LOGNAME")
_NEVER_ENV_PREFIX = "PHASEGATE_"  # tokens and database URLs, even if a user allows them


@dataclass(frozen=True)
class ProcessOutcome:
    """What a finished command did; `exit_code` is None after a timeout or a limit.

    A negative `exit_code` is a signal; inside the sandbox a signal shows as 128 + its number.
    """

    exit_code: int | None
    timed_out: bool
    duration_s: float
    output: str
    truncated_bytes: int
    killed_by: str | None = None  # the limit that ended the run, e.g. "memory limit 2 GiB"


def env_for_tests(base: Mapping[str, str], allow: Sequence[str] = ()) -> dict[str, str]:
    """Return the allowlisted subset of `base`; `allow` entries are names or `PREFIX*` patterns."""
    exact = set(_ALWAYS_ENV) | {a for a in allow if not a.endswith("*")}
    prefixes = ("LC_", "PYTHON", *(a[:-1] for a in allow if a.endswith("*")))
    return {
        name: value
        for name, value in base.items()
        if not name.startswith(_NEVER_ENV_PREFIX)
        and name != "PYTHONSTARTUP"  # runs arbitrary code in every interactive interpreter
        and (name in exact or name.startswith(prefixes))
    }


@dataclass(frozen=True)
class Watch:
    """Totals a run may not exceed across all its processes; crossing one kills the run."""

    max_processes: int | None = None
    max_memory_bytes: int | None = None


def run_command(
    command: str | Sequence[str],
    cwd: Path,
    *,
    timeout_s: float,
    grace_s: float = 5,
    env: Mapping[str, str],
    head_bytes: int = 64 * 1024,
    tail_bytes: int = 1024 * 1024,
    on_output: Callable[[int], None] | None = None,
    pass_fds: Sequence[int] = (),
    watch: Watch = Watch(),
) -> ProcessOutcome:
    """Run `command` (argv, or a string for /bin/sh) in `cwd`; `on_output` gets the byte total."""
    argv = ["/bin/sh", "-c", command] if isinstance(command, str) else list(command)
    marker = f"{SCOPE_ENV}={uuid.uuid4().hex}"
    not_before = ticks_since_boot()
    started = time.monotonic()
    proc = _spawn(argv, cwd, {**env, SCOPE_ENV: marker.split("=", 1)[1]}, pass_fds)
    assert proc.stdout is not None  # stdout=PIPE
    buffer = HeadTail(head_bytes, tail_bytes)
    reader = PipeReader(proc.stdout.fileno(), buffer, name="testrun-output")
    reader.start()
    tree = ProcessTree(proc.pid, marker.encode(), not_before)
    progress = _Progress(buffer, on_output)
    ended: str | None = None
    try:
        ended = _wait(proc, tree, started + timeout_s, progress, watch)
        if ended == _TIMEOUT:
            _terminate(proc, tree, grace_s)
    finally:
        # Whatever happened (normal exit, timeout, a limit, a raising callback),
        # leave nothing running: background children would hold the pipe open.
        tree.kill_all()
        proc.wait()
        duration = time.monotonic() - started
        reader.finish(_DRAIN_S)
        proc.stdout.close()
    progress.report()  # the last bytes arrive after the command exits
    output, cut = buffer.render()
    timed_out = ended == _TIMEOUT
    killed_by = ended if ended not in (None, _TIMEOUT) else None
    exit_code = None if ended else proc.returncode
    return ProcessOutcome(exit_code, timed_out, duration, output, cut, killed_by)


def _spawn(
    argv: list[str], cwd: Path, env: Mapping[str, str], pass_fds: Sequence[int]
) -> subprocess.Popen[bytes]:
    try:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # setsid() in the child, no preexec_fn needed
            close_fds=True,
            pass_fds=tuple(pass_fds),
        )
    except OSError as exc:
        raise SpawnError(
            f"could not start the test command in {cwd}: {exc}; "
            f"check that the directory exists and {argv[0]} is installed"
        ) from exc
    assert proc.stdout is not None
    with contextlib.suppress(OSError):  # above pipe-max-size: the default only costs speed
        fcntl.fcntl(proc.stdout.fileno(), fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
    return proc


class _Progress:
    """Tell the caller, from the caller's own thread, how many bytes have arrived so far."""

    def __init__(self, buffer: HeadTail, on_output: Callable[[int], None] | None) -> None:
        self._buffer = buffer
        self._on_output = on_output
        self._reported = 0

    def report(self) -> None:
        total = self._buffer.total
        if self._on_output is not None and total != self._reported:
            self._reported = total
            self._on_output(total)


def _wait(
    proc: subprocess.Popen[bytes],
    tree: ProcessTree,
    deadline: float,
    progress: _Progress,
    watch: Watch,
) -> str | None:
    """Wait for the command to exit; return _TIMEOUT or the limit it crossed, else None."""
    next_scan = 0.0
    while True:
        now = time.monotonic()
        if now >= next_scan:
            tree.refresh()  # remember descendants before they can re-parent away
            if crossed := _limit_crossed(tree, watch):
                return crossed
            next_scan = now + _SCAN_S
        progress.report()
        if now >= deadline:
            return _TIMEOUT
        try:
            proc.wait(timeout=min(_TICK_S, deadline - now))
            return None
        except subprocess.TimeoutExpired:
            continue


def _limit_crossed(tree: ProcessTree, watch: Watch) -> str | None:
    if watch.max_processes is None and watch.max_memory_bytes is None:
        return None
    count, rss = tree.usage()
    if watch.max_processes is not None and count > watch.max_processes:
        return f"process limit {watch.max_processes}"
    if watch.max_memory_bytes is not None and rss > watch.max_memory_bytes:
        return f"memory limit {_size(watch.max_memory_bytes)}"
    return None


def _size(nbytes: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if nbytes >= scale and nbytes % scale == 0:
            return f"{nbytes // scale} {unit}"
    return f"{nbytes} bytes"


def _terminate(proc: subprocess.Popen[bytes], tree: ProcessTree, grace_s: float) -> None:
    """SIGTERM everything, then give it `grace_s` to exit before the caller SIGKILLs."""
    tree.signal(signal.SIGTERM, deep=True)
    grace_ends = time.monotonic() + grace_s
    while time.monotonic() < grace_ends:
        proc.poll()  # reap the shell so it does not count as alive
        if not tree.alive():
            return
        time.sleep(_TICK_S)
