"""Find and kill every process a test command started, including ones that left its group.

A process group catches ordinary children, but a child that calls `setsid`
leaves the group and, once its parent exits, is re-parented to init, where a
ppid walk can no longer reach it. So three nets are combined, all read from
`/proc` (Linux only):

1. the process group and session of the command (they equal its pid);
2. a ppid walk refreshed while the command runs, remembering every
   descendant by (pid, start time) so a reused pid is never mistaken for ours;
3. a per-run marker in the environment: a descendant that re-parented before
   the walk saw it still carries the marker in `/proc/<pid>/environ`.

Only a process that both escaped early *and* scrubbed its environment gets
past all three; a cgroup or pid namespace is the complete answer.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

_PROC = "/proc"
_DEAD_STATES = frozenset("ZXx")  # zombie or dead: nothing left to kill
_KILL_ROUNDS = 50  # a fork bomb outside the group may need several sweeps
_PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class _Stat:
    ppid: int
    pgrp: int
    session: int
    start: int  # clock ticks since boot; (pid, start) identifies a process
    state: str


def _read_stat(pid: int) -> _Stat | None:
    try:
        with open(f"{_PROC}/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    # comm is in parentheses and may itself contain spaces or ')'.
    fields = raw[raw.rfind(b")") + 2 :].split()
    try:
        return _Stat(
            ppid=int(fields[1]),
            pgrp=int(fields[2]),
            session=int(fields[3]),
            start=int(fields[19]),
            state=fields[0].decode(),
        )
    except (IndexError, ValueError):
        return None


def _snapshot() -> dict[int, _Stat]:
    table: dict[int, _Stat] = {}
    for name in os.listdir(_PROC):
        if name.isdigit() and (stat := _read_stat(int(name))) is not None:
            table[int(name)] = stat
    return table


def ticks_since_boot() -> int:
    """Return the current time in the clock ticks `/proc/<pid>/stat` uses for start times."""
    with open(f"{_PROC}/uptime") as f:
        uptime = float(f.read().split()[0])
    return int(uptime * os.sysconf("SC_CLK_TCK")) - 1


class ProcessTree:
    """The processes belonging to one test command run, for the purpose of killing them all."""

    def __init__(self, root_pid: int, marker: bytes, not_before: int) -> None:
        self._root = root_pid  # also the pgid and sid, thanks to start_new_session
        self._marker = marker
        self._not_before = not_before
        self._seen: dict[int, int] = {}
        self._table: dict[int, _Stat] = {}
        stat = _read_stat(root_pid)
        if stat is not None:
            self._seen[root_pid] = stat.start

    def refresh(self) -> dict[int, _Stat]:
        """Record every current descendant, group member and session member; return the table."""
        table = self._table = _snapshot()
        grew = True
        while grew:  # a fixpoint, because /proc lists parents and children in any order
            grew = False
            for pid, stat in table.items():
                if self._seen.get(pid) == stat.start or not self._ours(stat, table):
                    continue
                self._seen[pid] = stat.start
                grew = True
        return table

    def _ours(self, stat: _Stat, table: dict[int, _Stat]) -> bool:
        if self._root in (stat.pgrp, stat.session):
            return True
        parent = table.get(stat.ppid)
        return parent is not None and self._seen.get(stat.ppid) == parent.start

    def _scan_marker(self, table: dict[int, _Stat]) -> None:
        for pid, stat in table.items():
            if stat.start < self._not_before or self._seen.get(pid) == stat.start:
                continue
            try:
                with open(f"{_PROC}/{pid}/environ", "rb") as f:
                    environ = f.read()
            except OSError:
                continue  # gone, or another user's process: not ours either way
            if self._marker in environ.split(b"\0"):
                self._seen[pid] = stat.start

    def alive(self, *, deep: bool = False) -> list[int]:
        """Return the pids of our processes that are still running (zombies excluded)."""
        table = self.refresh()
        if deep:
            self._scan_marker(table)
        return [
            pid
            for pid, stat in table.items()
            if self._seen.get(pid) == stat.start and stat.state not in _DEAD_STATES
        ]

    def usage(self) -> tuple[int, int]:
        """Return how many of our processes are alive and their total resident memory in bytes.

        Uses the table of the last `refresh`; a process gone since counts nothing.
        """
        count = rss_pages = 0
        for pid, stat in self._table.items():
            if self._seen.get(pid) != stat.start or stat.state in _DEAD_STATES:
                continue
            try:
                with open(f"{_PROC}/{pid}/statm", "rb") as f:
                    pages = int(f.read().split()[1])
            except (OSError, ValueError, IndexError):
                continue
            count += 1
            rss_pages += pages
        return count, rss_pages * _PAGE

    def signal(self, sig: int, *, deep: bool = False) -> list[int]:
        """Send `sig` to the whole group and every known escapee; return the pids signalled."""
        _quietly(os.killpg, self._root, sig)
        pids = self.alive(deep=deep)
        for pid in pids:
            _quietly(os.kill, pid, sig)
        return pids

    def kill_all(self) -> bool:
        """SIGKILL everything until nothing of ours is left; return False if something survived."""
        for _ in range(_KILL_ROUNDS):
            if not self.signal(signal.SIGKILL, deep=True):
                return True
            time.sleep(0.01)
        return not self.alive(deep=True)


def _quietly(kill: Callable[[int, int], None], pid: int, sig: int) -> None:
    # The target may already be gone (ProcessLookupError) or, after pid reuse,
    # belong to another user (PermissionError); neither is ours to worry about.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        kill(pid, sig)
