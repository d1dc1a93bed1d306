"""Concurrent decisions on one gate from separate processes: exactly one wins."""

from __future__ import annotations

import multiprocessing
import subprocess
from multiprocessing.synchronize import Barrier

import pytest
import sqlalchemy as sa
from engine_helpers import PHASEGATE, cli_env, drive, phasegate, start

from phasegate.config import Project
from phasegate.domain.principal import Principal
from phasegate.errors import Conflict
from phasegate.orchestrator import Orchestrator

RACERS = 20


def _approve_in_child(
    project: Project,
    session_id: str,
    version: int,
    human: Principal,
    barrier: Barrier,
    results: multiprocessing.Queue[str],
) -> None:
    orch = Orchestrator.open(project, migrate=False)
    barrier.wait()
    try:
        orch.decide(session_id, "approve", human, expected_version=version)
        results.put("won")
    except Conflict as exc:
        results.put(f"conflict: {exc.message}")
    except Exception as exc:
        results.put(f"error: {type(exc).__name__}: {exc}")
    finally:
        orch.close()


def _decision_events(orch: Orchestrator, session_id: str) -> int:
    with orch.db.read() as conn:
        return int(
            conn.execute(
                sa.text("SELECT count(*) FROM events WHERE session_id = :s AND action = 'approve'"),
                {"s": session_id},
            ).scalar_one()
        )


def test_twenty_processes_approving_one_gate_yield_one_decision(
    orch: Orchestrator, human: Principal
) -> None:
    """Of 20 processes approving the same gate version, one wins and 19 get a conflict."""
    session = drive(orch, start(orch, human).id, "awaiting_test_review")
    orch.db.engine.dispose()  # children must not share the parent's pooled connections
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(RACERS), ctx.Queue()
    procs = [
        ctx.Process(
            target=_approve_in_child,
            args=(orch.project, session.id, session.version, human, barrier, results),
        )
        for _ in range(RACERS)
    ]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    assert outcomes.count("won") == 1, outcomes
    losers = [o for o in outcomes if o != "won"]
    assert all(o.startswith("conflict: ") for o in losers), losers
    assert all(session.id[:8] in o for o in losers), losers
    final = orch.get(session.id)
    assert (final.phase, final.version) == ("generating_implementation", session.version + 1)
    assert _decision_events(orch, session.id) == 1
    assert all(r.ok for r in orch.verify_audit(session.id))


def test_concurrent_cli_approvals_exit_one_with_a_clear_conflict(
    orch: Orchestrator, human: Principal, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Several `phasegate approve` processes at once: one exits 0, the rest exit 1 with one line."""
    root = orch.project.root
    monkeypatch.setenv("PHASEGATE_DATABASE_URL", db_url)
    assert phasegate("--project", str(root), "init")[0] == 0
    session = drive(orch, start(orch, human).id, "awaiting_test_review")
    procs = [
        subprocess.Popen(
            [PHASEGATE, "--project", str(root), "approve", session.id[:8]],
            env=cli_env(db_url),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    done = [(p.wait(timeout=60), *p.communicate()) for p in procs]
    codes = sorted(code for code, _, _ in done)
    assert codes == [0, 1, 1, 1], done
    for code, _, err in done:
        if code == 1:
            assert len(err.strip().splitlines()) == 1, err
            assert "can't approve" in err or "changed since you looked" in err, err
            assert session.id[:8] in err
    assert _decision_events(orch, session.id) == 1


def _toggle_in_child(
    project: Project,
    session_id: str,
    human: Principal,
    barrier: Barrier,
    results: multiprocessing.Queue[str],
) -> None:
    orch = Orchestrator.open(project, migrate=False)
    barrier.wait()
    outcome = "ok"
    for _ in range(15):
        try:
            action = "resume" if orch.get(session_id).paused else "pause"
            orch.decide(session_id, action, human)
        except Conflict:
            pass  # lost a race: the session moved on first, which is the promised answer
        except Exception as exc:
            outcome = f"error: {type(exc).__name__}: {exc}"
            break
    results.put(outcome)
    orch.close()


def test_unversioned_concurrent_writers_keep_one_unbroken_chain(
    orch: Orchestrator, human: Principal
) -> None:
    """Writers racing without an expected version either win or get a conflict; the chain holds."""
    session = start(orch, human)
    orch.db.engine.dispose()
    ctx = multiprocessing.get_context("fork")
    writers = 6
    barrier, results = ctx.Barrier(writers), ctx.Queue()
    procs = [
        ctx.Process(
            target=_toggle_in_child, args=(orch.project, session.id, human, barrier, results)
        )
        for _ in range(writers)
    ]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    assert outcomes == ["ok"] * writers, outcomes
    events = orch.timeline(session.id)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert orch.get(session.id).version == events[-1]["version"]
    assert all(r.ok for r in orch.verify_audit(session.id))
