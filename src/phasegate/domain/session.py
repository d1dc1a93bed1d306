"""The session value and `apply`: one action in, a new session and one event out.

Pure: no I/O and no clock reads. The orchestrator loads a session, calls
`apply`, and stores the result and the event in one transaction.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from phasegate.domain.workflow import (
    CANCEL,
    CANCELLED,
    FAIL,
    FAILED,
    PAUSE,
    RESUME,
    UNIVERSAL_ACTIONS,
    ActorKind,
    PhaseKind,
    Workflow,
)
from phasegate.errors import InvalidTransition, PermissionDenied


@dataclass(frozen=True)
class Actor:
    """Who acts: a human, an agent in one role, or phasegate itself."""

    kind: ActorKind
    id: str
    role: str | None = None

    def describe(self) -> str:
        if self.kind is ActorKind.AGENT:
            return f"agent {self.id} ({self.role})"
        return "phasegate" if self.kind is ActorKind.SYSTEM else f"human {self.id}"


SYSTEM = Actor(ActorKind.SYSTEM, "phasegate")


@dataclass(frozen=True, kw_only=True)
class SessionHeader:
    """What lists show of a session: everything but its context and results."""

    id: str
    task_id: str
    workflow: str
    phase: str
    version: int
    fix_attempts: int
    paused: bool
    created_at: datetime
    updated_at: datetime
    phase_entered_at: datetime
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None
    lease_epoch: int = 0
    base_commit: str | None = None
    branch: str | None = None
    task_name: str = ""
    max_fix_attempts: int | None = None  # the kept configuration's budget; None: the workflow's

    @property
    def short_id(self) -> str:
        return self.id[:8]


@dataclass(frozen=True, kw_only=True)
class Session(SessionHeader):
    """A whole session: the header, the context the phases build up, and the results."""

    context: Mapping[str, Any]
    results: Mapping[str, Any]


@dataclass(frozen=True)
class Command:
    """An action on a session, with what it adds to the context and results."""

    action: str
    actor: Actor
    comment: str = ""
    context_patch: Mapping[str, Any] = field(default_factory=dict)
    results_patch: Mapping[str, Any] = field(default_factory=dict)
    payload: Mapping[str, Any] = field(default_factory=dict)
    commit: str | None = None
    max_fix_attempts: int | None = None  # a new fix budget from here on (a kept configuration)


@dataclass(frozen=True)
class EventDraft:
    """An audit event before it gets its sequence number, time and hash."""

    session_id: str
    action: str
    from_phase: str
    to_phase: str
    actor: Actor
    payload: Mapping[str, Any]
    commit: str | None
    version: int


def waiting_on(workflow: Workflow, session: SessionHeader) -> str | None:
    """Who must act next: 'agent:<role>', 'human' or 'phasegate'; None when final."""
    phase = workflow.phase(session.phase)
    if phase.kind is PhaseKind.FINAL:
        return None
    if session.paused:
        return "human"
    if phase.kind is PhaseKind.AGENT:
        return f"agent:{phase.role}"
    return "human" if phase.kind is PhaseKind.HUMAN else "phasegate"


def phase_claim_key(workflow: Workflow, phase_name: str) -> str:
    """Who can move a session out of this phase, as stored for claims and lists.

    Like `waiting_on`, but a system phase worked by a role (running_tests, by
    `runner`) says so: `phasegate:runner`, so runners can claim it.
    """
    phase = workflow.phase(phase_name)
    if phase.kind is PhaseKind.SYSTEM and phase.role:
        return f"phasegate:{phase.role}"
    if phase.kind is PhaseKind.AGENT:
        return f"agent:{phase.role}"
    return "human" if phase.kind is PhaseKind.HUMAN else "phasegate"


def claim_key(workflow: Workflow, session: SessionHeader) -> str | None:
    """The stored `waiting_on` column of a session; None once it is final."""
    if workflow.is_final(session.phase):
        return None
    return "human" if session.paused else phase_claim_key(workflow, session.phase)


def describe_wait(workflow: Workflow, session: SessionHeader) -> str:
    """A sentence saying what the session is waiting for."""
    phase = workflow.phase(session.phase)
    if phase.kind is PhaseKind.FINAL:
        return f"{session.phase}; nothing more to do"
    if session.paused:
        return f"paused in {session.phase}, waiting for a human to resume it"
    if phase.kind is PhaseKind.AGENT:
        work = f"submit {phase.submission}" if phase.submission else "act"
        return f"waiting for an agent ({phase.role}) to {work}"
    if phase.kind is PhaseKind.HUMAN:
        return "waiting for a human decision"
    return f"waiting for phasegate to {phase.automation or 'act'}"


def apply(
    workflow: Workflow, session: Session, command: Command, now: datetime
) -> tuple[Session, EventDraft]:
    """Apply `command` to `session`; raise if the workflow or the actor forbids it."""
    action, actor = command.action, command.actor
    target, attempts = _target(workflow, session, command)
    context = {**session.context, **command.context_patch}
    results = {**session.results, **command.results_patch}
    paused = {PAUSE: True, RESUME: False}.get(action, session.paused)
    if target != session.phase:
        paused = False
    new = replace(
        session,
        phase=target,
        version=session.version + 1,
        fix_attempts=attempts,
        paused=paused,
        context=context,
        results=results,
        updated_at=now,
        phase_entered_at=now if target != session.phase else session.phase_entered_at,
        max_fix_attempts=command.max_fix_attempts or session.max_fix_attempts,
    )
    if target != session.phase:
        # A lease is for working in one phase; whoever works in the next one claims anew.
        new = replace(new, lease_owner=None, lease_expires_at=None)
    payload = dict(command.payload)
    if command.max_fix_attempts:
        payload["max_fix_attempts"] = command.max_fix_attempts  # replay counts by it from here
    if command.comment:
        payload["comment"] = command.comment
    event = EventDraft(
        session_id=session.id,
        action=action,
        from_phase=session.phase,
        to_phase=target,
        actor=actor,
        payload=payload,
        commit=command.commit,
        version=new.version,
    )
    return new, event


def _target(workflow: Workflow, session: Session, command: Command) -> tuple[str, int]:
    """The phase the action leads to and the new fix-attempt count."""
    action, actor = command.action, command.actor
    if workflow.is_final(session.phase):
        raise InvalidTransition(
            f"can't {action}: session {session.short_id} is {session.phase}, which is final",
            phase=session.phase,
        )
    if action in UNIVERSAL_ACTIONS:
        return _universal_target(workflow, session, command), session.fix_attempts
    if session.paused:
        raise InvalidTransition(
            f"can't {action}: session {session.short_id} is paused in {session.phase}; "
            "a human must resume it first",
            phase=session.phase,
            allowed_actions=workflow.allowed_actions(session.phase, paused=True),
        )
    transition = workflow.transition(action, session.phase)
    if transition is None:
        raise InvalidTransition(
            f"can't {action}: session {session.short_id} is in {session.phase}, "
            f"{describe_wait(workflow, session)}. Allowed now: "
            + ", ".join(workflow.allowed_actions(session.phase, paused=False)),
            phase=session.phase,
            allowed_actions=workflow.allowed_actions(session.phase, paused=False),
        )
    _check_actor(workflow, session, action, transition.actor, actor)
    if transition.requires_comment and not command.comment.strip():
        raise InvalidTransition(
            f"can't {action} session {session.short_id} without a comment; "
            "say what should change (-m/--message)",
            phase=session.phase,
        )
    attempts = 0 if transition.resets_attempts else session.fix_attempts
    if transition.counts_attempt:
        attempts += 1
        if transition.on_limit and attempts >= workflow.max_fix_attempts:
            return transition.on_limit, attempts
    return transition.target, attempts


def _universal_target(workflow: Workflow, session: Session, command: Command) -> str:
    action = command.action
    required = UNIVERSAL_ACTIONS[action]
    if action == PAUSE and command.actor.kind is ActorKind.SYSTEM:
        required = ActorKind.SYSTEM  # phasegate parks a session whose agent keeps failing
    _check_actor(workflow, session, action, required, command.actor)
    if action == PAUSE and session.paused:
        raise InvalidTransition(
            f"can't pause: session {session.short_id} is already paused in {session.phase}",
            phase=session.phase,
            allowed_actions=workflow.allowed_actions(session.phase, paused=True),
        )
    if action == RESUME and not session.paused:
        raise InvalidTransition(
            f"can't resume: session {session.short_id} is not paused (it is in {session.phase})",
            phase=session.phase,
            allowed_actions=workflow.allowed_actions(session.phase, paused=False),
        )
    return {CANCEL: CANCELLED, FAIL: FAILED}.get(action, session.phase)


def _check_actor(
    workflow: Workflow, session: Session, action: str, required: ActorKind, actor: Actor
) -> None:
    if actor.kind is required:
        phase = workflow.phase(session.phase)
        if required is ActorKind.AGENT and phase.role and actor.role != phase.role:
            raise PermissionDenied(
                f"can't {action}: session {session.short_id} is in {session.phase}, which needs "
                f"an agent with role {phase.role!r}; {actor.describe()} has role {actor.role!r}",
                phase=session.phase,
            )
        return
    who = {ActorKind.HUMAN: "a human", ActorKind.AGENT: "an agent", ActorKind.SYSTEM: "phasegate"}
    raise PermissionDenied(
        f"can't {action}: only {who[required]} may {action} session {session.short_id} "
        f"in {session.phase}, and {actor.describe()} is not one",
        phase=session.phase,
    )
