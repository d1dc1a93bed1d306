"""A session's history as review rounds: what agents submitted, what ran, what a human decided.

A round runs from the first submission after a human decision to the next
human decision at a gate (approve, reject, retry…), which closes it. The
reviewer compares rounds ("what changed since my last review") instead of
reading one long list where runs of a rejected round mix with current ones.
Pure: it reads the events and runs it is given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from phasegate.domain.workflow import PhaseKind, Workflow

REFUSED = "submission_refused"


@dataclass(frozen=True)
class GateDecision:
    """A human's decision at a gate, as the audit trail recorded it."""

    action: str
    phase: str  # the gate it was taken at
    by: str
    at: str
    comment: str
    seq: int


@dataclass(frozen=True)
class Attempt:
    """One agent submission and the runs of its commit."""

    action: str  # submit_tests, submit_implementation, fix_failures…
    submission: str  # what the phase accepts: tests, implementation, fix
    seq: int
    by: str
    at: str
    commit: str
    paths: tuple[str, ...]
    note: str
    runs: tuple[Mapping[str, Any], ...]  # oldest first

    @property
    def run(self) -> Mapping[str, Any] | None:
        """The newest run of this attempt's commit, if any."""
        return self.runs[-1] if self.runs else None


@dataclass(frozen=True)
class Round:
    number: int
    attempts: tuple[Attempt, ...]
    refused: int  # submissions refused during the round
    decision: GateDecision | None  # None: the round is still open

    @property
    def current(self) -> bool:
        return self.decision is None


def actor_name(event: Mapping[str, Any]) -> str:
    """`alice`, `bot (coder)`, or `phasegate` for the system."""
    if event["actor_kind"] == "system":
        return "phasegate"
    role = event.get("actor_role")
    return f"{event['actor_id']} ({role})" if role else str(event["actor_id"])


def when(value: Any) -> str:
    """An event's time as `2026-12-02 10:28:21` (UTC)."""
    text = value.isoformat() if hasattr(value, "isoformat") else str(value)
    return text[:19].replace("T", " ")


def decision_actions(workflow: Workflow) -> frozenset[str]:
    """The actions a human takes at a gate (approve, reject, retry…), from the workflow table."""
    return frozenset(
        t.action for t in workflow.transitions if workflow.phase(t.source).kind is PhaseKind.HUMAN
    )


def decision_of(event: Mapping[str, Any]) -> GateDecision:
    payload = event.get("payload") or {}
    return GateDecision(
        action=event["action"],
        phase=event["from_phase"],
        by=actor_name(event),
        at=when(event["created_at"]),
        comment=str(payload.get("comment") or ""),
        seq=int(event["seq"]),
    )


def review_rounds(
    workflow: Workflow, events: Sequence[Mapping[str, Any]], runs: Sequence[Mapping[str, Any]]
) -> list[Round]:
    """The session's rounds, oldest first; the last one is open unless a decision closed it."""
    decisions = decision_actions(workflow)
    rounds: list[Round] = []
    attempts: list[Attempt] = []
    refused = 0
    for event in events:
        if event["action"] == REFUSED:
            refused += 1
        elif event["actor_kind"] == "human" and event["action"] in decisions:
            rounds.append(Round(len(rounds) + 1, tuple(attempts), refused, decision_of(event)))
            attempts, refused = [], 0
        else:
            attempt = _attempt(workflow, event, runs)
            if attempt is not None:
                attempts.append(attempt)
    if attempts or refused or not rounds:
        rounds.append(Round(len(rounds) + 1, tuple(attempts), refused, None))
    return rounds


def _attempt(
    workflow: Workflow, event: Mapping[str, Any], runs: Sequence[Mapping[str, Any]]
) -> Attempt | None:
    """The submission an agent's event made, with the runs of its commit; None if not one."""
    if event["actor_kind"] != "agent" or not event.get("commit"):
        return None
    if event["from_phase"] == event["to_phase"]:
        return None  # request_approval and the like: no new code
    submission = workflow.phase(event["from_phase"]).submission
    if submission is None:
        return None
    payload = event.get("payload") or {}
    commit = str(event["commit"])
    return Attempt(
        action=event["action"],
        submission=submission,
        seq=int(event["seq"]),
        by=actor_name(event),
        at=when(event["created_at"]),
        commit=commit,
        paths=tuple(str(p) for p in payload.get("paths") or ()),
        note=str(payload.get("note") or ""),
        runs=tuple(r for r in runs if r.get("commit") == commit),
    )


def last_decision_at(
    rounds: Sequence[Round], gate: str
) -> tuple[GateDecision, list[Attempt]] | None:
    """The newest decision taken at `gate`, and every attempt made since it; None if none."""
    for index in range(len(rounds) - 1, -1, -1):
        decision = rounds[index].decision
        if decision is not None and decision.phase == gate:
            since = [a for r in rounds[index + 1 :] for a in r.attempts]
            return decision, since
    return None
