"""A writer killed with SIGKILL at random points loses no acknowledged transition."""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import time

import sqlalchemy as sa
from engine_helpers import start

from phasegate.config import Project
from phasegate.domain.principal import Principal
from phasegate.orchestrator import Orchestrator

KILLS = 22
SESSIONS = 3


def _toggle_forever(
    project: Project, session_ids: list[str], human: Principal, fd: int, seed: int
) -> None:
    """Pause/resume random sessions; after each commit, acknowledge `id version` on `fd`."""
    orch = Orchestrator.open(project, migrate=False)
    rng = random.Random(seed)
    while True:
        sid = rng.choice(session_ids)
        action = "resume" if orch.get(sid).paused else "pause"
        new = orch.decide(sid, action, human)
        os.write(fd, f"{sid} {new.version}\n".encode())


def _run_and_kill(
    orch: Orchestrator, ids: list[str], human: Principal, rng: random.Random
) -> list[tuple[str, int]]:
    """Start a writer, SIGKILL it after a random number of acks; return every ack it sent."""
    orch.db.engine.dispose()  # the child opens its own connections
    read_fd, write_fd = os.pipe()
    ctx = multiprocessing.get_context("fork")
    proc = ctx.Process(
        target=_toggle_forever, args=(orch.project, ids, human, write_fd, rng.randrange(1 << 30))
    )
    proc.start()
    os.close(write_fd)
    wanted, data = rng.randint(1, 12), b""
    with os.fdopen(read_fd, "rb") as pipe:
        while data.count(b"\n") < wanted:
            chunk = pipe.read1(4096)
            assert chunk, f"the writer died on its own (exit code {proc.exitcode})"
            data += chunk
        time.sleep(rng.random() * 0.01)  # land the kill anywhere in the next transaction
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(timeout=10)
        data += pipe.read()  # acks written before the kill count too
    lines = data.decode().split("\n")[:-1]  # a last line without newline was never acked
    return [(line.split()[0], int(line.split()[1])) for line in lines]


def _check_store(orch: Orchestrator, acked: list[tuple[str, int]]) -> None:
    with orch.db.read() as conn:
        rows = conn.execute(sa.text("SELECT session_id, version FROM events")).all()
        if conn.dialect.name == "sqlite":
            assert conn.execute(sa.text("PRAGMA integrity_check")).scalar_one() == "ok"
    stored = [(r[0], int(r[1])) for r in rows]
    assert len(stored) == len(set(stored)), "an event version was written twice"
    assert set(acked) <= set(stored), "an acknowledged transition was lost"
    for sid in {s for s, _ in stored}:
        versions = sorted(v for s, v in stored if s == sid)
        assert versions == list(range(1, len(versions) + 1))
        assert orch.get(sid).version == versions[-1], "state and log disagree"
    assert all(report.ok for report in orch.verify_audit())


def test_sigkilled_writers_lose_nothing_they_acknowledged(
    orch: Orchestrator, human: Principal
) -> None:
    """Over 22 SIGKILLs, every acknowledged transition survives exactly once, chains intact."""
    ids = [start(orch, human).id for _ in range(SESSIONS)]
    rng, acked = random.Random(20261124), []
    for _ in range(KILLS):
        acked += _run_and_kill(orch, ids, human, rng)
        _check_store(orch, acked)
    assert len(acked) >= KILLS
