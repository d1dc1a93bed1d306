"""Failing agents are bounded: after `agent_failures_to_human` failures in a row, a human.

Each failure of a claimed session's agent (it crashed, exited non-zero, timed
out) is one `agent_failed` event in the session's audit chain, with the
agent's last output, and a count in the session's context
(`agent_failures`). The count lives in the database, so it is the session's:
it survives worker restarts and adds up across workers. When it reaches the
project's `agent_failures_to_human`, phasegate pauses the session with the
reason: it waits on a human ("needs a human" in `ls` and the dashboard, an
escalation webhook), who fixes the agent and resumes it. Failures use no fix
attempt.

"In a row" means nothing else happened to the session in between: a human's
resume, a retry, a submission or any other event starts the count again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from phasegate.agents.base import TRANSCRIPT, Job
from phasegate.domain.session import SYSTEM, Command, Session
from phasegate.domain.workflow import PAUSE
from phasegate.errors import Conflict, PhasegateError
from phasegate.store import queries as q

log = logging.getLogger(__name__)
REFUSED = "submission_refused"

FAILED_ACTION = "agent_failed"
REASON_CHARS = 1000  # of the adapter's reason, in the event
OUTPUT_CHARS = 2000  # of the end of the agent's output, in the event and the context


@dataclass(frozen=True)
class FailureCount:
    """Where a session stands after one more failure of its agent."""

    count: int
    limit: int
    parked: bool


def record_failure(job: Job, reason: str, output: str) -> FailureCount | None:
    """Put one failure of the job's agent on the session's record; pause it at the bound.

    None if the session changed since it was claimed (a human paused or
    cancelled it, the lease went to another worker): then this failure is
    not the session's to count.
    """
    kernel, claimed = job.orch.kernel, job.session
    limit = kernel.project.settings.agent_failures_to_human
    before = claimed.context.get("agent_failures") or {}
    in_a_row = _nothing_but_refusals_since(job, before.get("version"))
    count = (int(before.get("count", 0)) if in_a_row else 0) + 1
    entry = {
        "phase": claimed.phase,
        "by": job.principal.name,
        "epoch": job.epoch,
        "reason": reason[:REASON_CHARS],
        "output": output[-OUTPUT_CHARS:],
        "count": count,
        "limit": limit,
    }

    def as_claimed(current: Session) -> None:
        if (current.version, current.lease_epoch) != (claimed.version, job.epoch):
            raise Conflict(f"session {current.short_id} changed while its agent worked")

    try:
        failed = kernel.record(
            claimed.id,
            FAILED_ACTION,
            job.principal,
            entry,
            context_patch={"agent_failures": {**entry, "version": claimed.version + 1}},
            check=as_claimed,
        )
    except Conflict:
        return None
    if count < limit:
        return FailureCount(count, limit, parked=False)
    return FailureCount(count, limit, parked=_park(job, failed, entry))


def _park(job: Job, failed: Session, entry: dict[str, Any]) -> bool:
    """Pause the session for a human, unless something happened to it meanwhile."""
    role = job.orch.workflow_of(failed).phase(failed.phase).role or "agent"
    reason = (
        f"the {role} agent failed {entry['count']} times in a row "
        f"(agent_failures_to_human = {entry['limit']}); the last time: {entry['reason']}. "
        f"Fix the agent or its configuration, then resume the session "
        f"(phasegate resume {failed.short_id})"
    )
    payload = {"reason": reason, "agent_failures": entry["count"], "output": entry["output"]}
    try:
        job.orch.kernel.transition(
            failed.id,
            lambda _current: Command(PAUSE, SYSTEM, payload=payload),
            expected_version=failed.version,
        )
    except PhasegateError as exc:  # a human paused, resumed or cancelled it first
        log.info("not parking %s: %s", failed.short_id, exc)
        return False
    return True


def _nothing_but_refusals_since(job: Job, version: int | None) -> bool:
    """Whether the session saw no work and no human since the last failure (at `version`).

    Its agent's own refused submissions don't break the run of failures: a
    refused submission is one more failure, not progress; nor do the transcripts
    of its failed attempts.
    """
    claimed = job.session
    if version is None or version > claimed.version:
        return False
    if version == claimed.version:
        return True
    with job.orch.db.read() as conn:
        return set(q.actions_since(conn, claimed.id, version)) <= {REFUSED, TRANSCRIPT}
