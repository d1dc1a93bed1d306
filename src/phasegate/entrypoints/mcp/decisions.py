"""`wait_for_decision`: block (boundedly) until a human decides the gate, then say how.

Decisions are made in other processes (the CLI, the dashboard), so this reads
the database: it waits on the change feed when the host process has one and
otherwise checks every half second, which costs one indexed read. When the
server starts shutting down the wait ends at once with the usual "call again"
answer, so a restart never holds (or cuts) a waiting agent's call.
"""

from __future__ import annotations

import time
from typing import Any

import anyio

from phasegate.domain.session import Session
from phasegate.domain.workflow import ActorKind, PhaseKind
from phasegate.entrypoints.mcp.calls import Deps
from phasegate.entrypoints.mcp.results import DecisionResult, session_fields
from phasegate.entrypoints.mcp.runs import PROGRESS_EVERY_S, Report

POLL_S = 0.5


async def wait(deps: Deps, session_id: str, timeout_s: float, report: Report) -> DecisionResult:
    orch = deps.orch
    session = await deps.call(orch.get, session_id, session_ref=session_id)
    wf = orch.workflow_of(session)
    if not (session.paused or wf.phase(session.phase).kind is PhaseKind.HUMAN):
        return await deps.call(_outcome, deps, session, False)
    start_phase, start_paused = session.phase, session.paused
    deadline = time.monotonic() + timeout_s
    last_report, step = time.monotonic(), 0
    while time.monotonic() < deadline and not deps.draining.is_set():
        await _pause(deps, session, min(POLL_S, max(0.0, deadline - time.monotonic())))
        session = await deps.call(orch.get, session.id, session_ref=session.id)
        if session.phase != start_phase or session.paused != start_paused:
            return await deps.call(_outcome, deps, session, True)
        if time.monotonic() - last_report >= PROGRESS_EVERY_S:
            last_report, step = time.monotonic(), step + 1
            await report(step, f"waiting for a human decision at {session.phase}")
    # The wait is over: answer from the session as it is now, not as last seen.
    session = await deps.call(orch.get, session.id, session_ref=session.id)
    if session.phase != start_phase or session.paused != start_paused:
        return await deps.call(_outcome, deps, session, True)
    still = f"session {session.short_id} still waits at {session.phase}" + (
        " (paused)" if session.paused else ""
    )
    if deps.draining.is_set():
        message = f"No decision yet; {still}. The phasegate server is restarting."
        again = "Call wait_for_decision(session_id) again in a few seconds (after the restart); "
    else:
        message = f"No decision yet after {timeout_s:.0f} s; {still}."
        again = "Call wait_for_decision(session_id) again; "
    fields = session_fields(orch, session, message)
    fields["next_action"] = again + "a human decides in the dashboard or with the phasegate CLI."
    return DecisionResult(**fields, decided=False)


async def _pause(deps: Deps, session: Session, seconds: float) -> None:
    with anyio.move_on_after(seconds) as scope, deps.draining.cutting(scope):
        if deps.feed is not None:
            await deps.feed.wait_for_change(session.id, session.version, seconds)
        else:
            await anyio.sleep(seconds)


def _outcome(deps: Deps, session: Session, waited: bool) -> DecisionResult:
    """The latest human decision that moved the session, if that is what happened last."""
    orch = deps.orch
    decision = _last_decision(orch.timeline(session.id))
    wf = orch.workflow_of(session)
    at_gate = session.paused or wf.phase(session.phase).kind is PhaseKind.HUMAN
    if decision is None or (at_gate and not waited):
        message = (
            f"No decision is pending: session {session.short_id} is in {session.phase}, "
            "not at a human gate."
            if not at_gate
            else f"Session {session.short_id} waits at {session.phase}."
        )
        return DecisionResult(**session_fields(orch, session, message), decided=False)
    action, by = str(decision["action"]), str(decision["actor_id"])
    comment = str(decision["payload"].get("comment") or "") or None
    said = f" with the comment: {comment}" if comment else ""
    message = (
        f"{by} decided {action} at {decision['from_phase']}{said}. Session "
        f"{session.short_id} is now in {session.phase}."
    )
    return DecisionResult(
        **session_fields(orch, session, message),
        decided=True,
        decision=action,
        decided_by=by,
        comment=comment,
    )


def _last_decision(events: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The last event, if a human made it and it changed the phase or the pause state."""
    for event in reversed(events):
        if event["action"] in ("request_approval", "test_run_error"):
            continue  # annotations: they change no phase
        if event["actor_kind"] == ActorKind.HUMAN.value:
            return dict(event)
        return None
    return None
