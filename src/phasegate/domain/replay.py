"""Replaying a session's events by its workflow's rules, to check the stored session row.

The chain proves the events are phasegate's; replaying them says what the
session row must hold. A row edited behind phasegate's back (a phase moved on,
fix attempts reset, the version bumped) disagrees with its own events.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from phasegate.domain.session import Actor, Command, Session, apply
from phasegate.domain.workflow import UNIVERSAL_ACTIONS, ActorKind, Workflow
from phasegate.errors import PhasegateError

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Replayed:
    """What a session's events say its row holds."""

    phase: str
    version: int
    fix_attempts: int | None  # None: the workflow is unknown, so attempts can't be counted
    paused: bool | None
    max_fix_attempts: int | None = None  # the budget the events set last (None: none set)


def replay(
    workflow: Workflow | None, events: Sequence[Mapping[str, Any]], *, initial: str
) -> Replayed | str:
    """The state the events lead to, or why they can't follow each other.

    Phases come from the events themselves (each must start where the last one
    ended); fix attempts and pausing are recomputed with `apply`, the same rules
    that wrote them. Events that are no transition of the workflow (a message
    for the reviewer, a test-run error) keep the phase and the counts.
    """
    state = _start(workflow.name if workflow else "", initial)
    budget: int | None = None
    for event in events:
        seq, source, target = int(event["seq"]), event["from_phase"], event["to_phase"]
        if source != state.phase:
            before = f"event {seq - 1} ended in" if seq > 1 else "the session starts in"
            return f"event {seq} starts in {source} but {before} {state.phase}"
        if workflow is not None and _is_transition(workflow, event):
            try:  # the very rules that counted the attempts when the event was written
                state, _ = apply(workflow, state, _command(event), _EPOCH)
            except (PhasegateError, ValueError) as exc:
                return f"event {seq} ({event['action']}) breaks workflow {workflow.name}: {exc}"
        state = replace(state, phase=target, version=seq)
        if (limit := _budget(event)) is not None:
            budget = limit
            if workflow is not None:  # counts from the next event on
                workflow = replace(workflow, max_fix_attempts=limit)
    known = workflow is not None
    return Replayed(
        state.phase,
        state.version,
        state.fix_attempts if known else None,
        state.paused if known else None,
        budget,
    )


def row_disagreement(
    row: Session, workflow: Workflow | None, events: Sequence[Mapping[str, Any]]
) -> str:
    """One line naming the first field of `row` its replayed events contradict ("" if none)."""
    initial = workflow.initial if workflow else (events[0]["from_phase"] if events else row.phase)
    result = replay(workflow, events, initial=initial)
    if isinstance(result, str):
        return result
    if row.phase != result.phase:
        return f"session row says phase {row.phase} but its events end in {result.phase}"
    if row.version != result.version:
        return f"session row says version {row.version} but it has {result.version} events"
    if row.max_fix_attempts != result.max_fix_attempts:
        return (
            f"session row says max_fix_attempts {row.max_fix_attempts} "
            f"but its events set {result.max_fix_attempts}"
        )
    if result.fix_attempts is not None and row.fix_attempts != result.fix_attempts:
        return (
            f"session row says fix_attempts {row.fix_attempts} "
            f"but its events count {result.fix_attempts}"
        )
    if result.paused is not None and row.paused != result.paused:
        said, done = str(row.paused).lower(), str(result.paused).lower()
        return f"session row says paused {said} but its events end with paused {done}"
    return ""


def _is_transition(workflow: Workflow, event: Mapping[str, Any]) -> bool:
    action = str(event["action"])
    return (
        action in UNIVERSAL_ACTIONS or workflow.transition(action, event["from_phase"]) is not None
    )


def _budget(event: Mapping[str, Any]) -> int | None:
    """The fix budget an event set (a session keeping its configuration), if any."""
    payload = event.get("payload") or {}
    limit = payload.get("max_fix_attempts") if isinstance(payload, Mapping) else None
    return limit if isinstance(limit, int) and limit >= 1 else None


def _command(event: Mapping[str, Any]) -> Command:
    actor = Actor(ActorKind(event["actor_kind"]), str(event["actor_id"]), event["actor_role"])
    comment = (event.get("payload") or {}).get("comment", "")
    return Command(str(event["action"]), actor, comment=str(comment))


def _start(workflow: str, initial: str) -> Session:
    return Session(
        id="replay",
        task_id="",
        workflow=workflow,
        phase=initial,
        version=0,
        fix_attempts=0,
        paused=False,
        context={},
        results={},
        created_at=_EPOCH,
        updated_at=_EPOCH,
        phase_entered_at=_EPOCH,
    )
