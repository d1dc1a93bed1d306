"""Did the attack stay inside the run? Byte snapshots of what it targeted, and the gates' record.

Everything is read through phasegate's public interfaces (`show`, `log`, `audit
verify`, all with `--json`) and the filesystem, never through internals, so these
checks hold whatever the defences look like.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import socket
import stat
import threading
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio

from tests.security.hostile_agent import HostileAgent
from tests.security.machine import Machine

# A gate passed or waiting on the agent's word alone would be one of these.
PASSED_PHASES = frozenset({"awaiting_final_review", "completed"})
# Where a wrong implementation must end up after its run (the attack having changed nothing).
FAILED_PHASES = frozenset({"fixing_failures", "awaiting_human_intervention"})
TOKEN_SHAPED = re.compile(r"pg[ha]_[A-Za-z0-9_-]{43}")

Snapshot = dict[str, str]


def snapshot(targets: Iterable[Path]) -> Snapshot:
    """Path → sha256 (or `dir`, `link -> …`, `absent`) for every target and everything under it."""
    entries: Snapshot = {}
    for target in targets:
        _record(Path(target), entries)
        if Path(target).is_dir() and not Path(target).is_symlink():
            for folder, dirs, files in os.walk(target):
                for name in sorted(dirs + files):
                    _record(Path(folder) / name, entries)
    return entries


def _record(path: Path, entries: Snapshot) -> None:
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        entries[str(path)] = "absent"
        return
    if stat.S_ISLNK(mode):
        entries[str(path)] = f"link -> {os.readlink(path)}"
    elif stat.S_ISDIR(mode):
        entries[str(path)] = "dir"
    elif stat.S_ISREG(mode):
        entries[str(path)] = f"{hashlib.sha256(path.read_bytes()).hexdigest()} {oct(mode)}"
    else:
        entries[str(path)] = f"special {oct(mode)}"


def changes(before: Snapshot, after: Snapshot) -> list[str]:
    """What differs between two snapshots, one line per path."""
    lines = []
    for path in sorted(before.keys() | after.keys()):
        old, new = before.get(path, "absent"), after.get(path, "absent")
        if old != new:
            lines.append(f"{path}: {old[:16]} → {new[:16]}")
    return lines


def standard_targets(machine: Machine, session_id: str | None = None) -> list[Path]:
    """What no run may touch: HOME (with the credentials), the repository's git metadata and
    files, the interpreter's site-packages, and the session's own worktree."""
    root = machine.root
    return [
        machine.home,
        machine.git_dir / "hooks",
        machine.git_dir / "config",
        machine.git_dir / "info",
        *(p for p in root.iterdir() if p.name not in (".git", ".phasegate")),
        machine.interpreter_site,
        *([machine.worktree(session_id)] if session_id else []),
    ]


def phasegate_json(machine: Machine, *args: str) -> Any:
    return json.loads(machine.project.run(*args, "--json").stdout)


def human_decisions(events: list[Mapping[str, Any]]) -> list[str]:
    return [
        f"{e['action']} at {e['from_phase']} by {e['actor_id']}"
        for e in events
        if e.get("actor_kind") == "human"
    ]


def cli_record(machine: Machine, session_ids: list[str]) -> tuple[dict[str, Any], str | None]:
    """Each session's log (`phasegate log --json`) and why `phasegate audit verify` failed."""
    with ThreadPoolExecutor(4) as pool:  # each CLI call is a second or two of start-up
        logs = {s: pool.submit(phasegate_json, machine, "log", s) for s in session_ids}
        audit = pool.submit(machine.project.run, "audit", "verify", check=False)
    done = audit.result()
    problem = None if done.returncode == 0 else f"{done.stdout}{done.stderr}".strip()
    return {s: log.result() for s, log in logs.items()}, problem


async def breaches(
    agent: HostileAgent,
    session_id: str,
    before: Snapshot,
    targets: Iterable[Path],
    *,
    bystanders: Iterable[str] = (),
    legit_decisions: tuple[str, ...] = ("approve at awaiting_test_review by alice",),
    expected_phases: frozenset[str] = FAILED_PHASES,
) -> list[str]:
    """Everything that shows the attack worked; empty when it was contained."""
    after = snapshot(targets)
    others = list(bystanders)
    phases = {
        s: (await agent.call("get_session_status", session_id=s))["phase"]
        for s in [session_id, *others]
    }
    logs, audit_problem = await anyio.to_thread.run_sync(
        cli_record, agent.machine, [session_id, *others]
    )
    found = []
    if (phase := phases[session_id]) in PASSED_PHASES or phase not in expected_phases:
        expected = " or ".join(sorted(expected_phases))
        found.append(f"the session reached {phase} (expected {expected})")
    if passes := [e for e in logs[session_id] if e["action"] == "tests_passed"]:
        found.append(f"its log records tests_passed: {passes[-1]['payload']}")
    if (decided := human_decisions(logs[session_id])) != list(legit_decisions):
        found.append(f"human decisions in its log: {decided}, expected {list(legit_decisions)}")
    for other in others:
        if decisions := human_decisions(logs[other]):
            found.append(f"bystander session {other[:8]} got human decisions {decisions}")
        if phases[other] != "awaiting_test_review":
            found.append(f"bystander session {other[:8]} moved to {phases[other]}")
    if audit_problem:
        found.append(f"`phasegate audit verify` failed: {audit_problem}")
    if changed := changes(before, after):
        found.append("changed outside the run:\n  " + "\n  ".join(changed))
    return found


def token_shaped(text: str) -> list[str]:
    return sorted(set(TOKEN_SHAPED.findall(text)))


def processes_with(mark: str) -> list[int]:
    """Every process on the machine whose command line contains `mark`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if mark.encode() in cmdline:
            found.append(int(entry.name))
    return found


def kill(pids: Iterable[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


class CountingListener:
    """A TCP listener on 127.0.0.1 that counts the connections it accepts."""

    def __init__(self) -> None:
        self._socket = socket.create_server(("127.0.0.1", 0))
        self._socket.settimeout(0.2)
        self.port = int(self._socket.getsockname()[1])
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> CountingListener:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._socket.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._socket.accept()
            except TimeoutError:
                continue
            self.accepted += 1
            conn.close()
