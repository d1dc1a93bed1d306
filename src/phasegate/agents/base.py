"""The adapter protocol: what a push-mode worker asks an agent to do for one claimed session.

An adapter gets a `Job` (the claimed session, the lease's fencing epoch, a
cancel flag) and either returns a `Submission` for the worker to submit under
that epoch, or advances the session itself and returns None (the runner).
Adapters raise `AgentFailed` when the agent crashed, hung or was killed; the
worker then gives the session back and counts the failure against the session
(`agents.failures`). `AgentCancelled` is work stopped from outside (the lease
was lost, the worker is stopping): not the agent's failure, so not counted.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from phasegate.domain.principal import Principal
    from phasegate.domain.session import Session
    from phasegate.orchestrator import Orchestrator


#: The event an adapter records with what its agent CLI did (the timeline's "reasoning").
TRANSCRIPT = "agent_transcript"


def printable(text: str) -> str:
    """An agent's output as a log line may show it: control characters written out, so a
    hostile agent can't clear the operator's terminal or draw fake lines in the worker's log."""
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


class AgentFailed(Exception):
    """The agent did not finish its work (crashed, exited non-zero, timed out)."""

    def __init__(self, message: str, *, output: str = "") -> None:
        super().__init__(message)
        self.output = output  # the end of what the agent printed, for the human who looks


class AgentCancelled(AgentFailed):
    """The work was stopped from outside (the lease was lost, the worker is stopping)."""


@dataclass(eq=False)  # identity, so a worker can keep its jobs in a set
class Job:
    """One claimed session being worked on; `cancelled` is set when the work must stop."""

    orch: Orchestrator
    session: Session
    principal: Principal
    epoch: int
    cancelled: threading.Event = field(default_factory=threading.Event)
    #: Set when the session left the claimed phase by the agent's own submission (an adapter
    #: whose agent submits through MCP): the work is done, not lost.
    moved_on: threading.Event = field(default_factory=threading.Event)

    @property
    def kind(self) -> str:
        """The submission this phase expects: tests, implementation or fix."""
        phase = self.orch.workflow_of(self.session).phase(self.session.phase)
        if phase.submission is None:
            raise AgentFailed(f"phase {self.session.phase} takes no submission")
        return phase.submission


@dataclass(frozen=True)
class Submission:
    """An agent's result: explicit files, or None for the changes left in the worktree."""

    files: list[dict[str, Any]] | None
    note: str = ""


class Agent(Protocol):
    """A push-mode adapter for one role."""

    @property
    def holds_claim(self) -> bool:
        """True if the worker must heartbeat the claim while `work` runs.

        False for adapters whose own call takes and keeps a lease (the runner:
        `run_tests` takes a run lease that outlives the test command).
        """
        ...

    @property
    def submits_itself(self) -> bool:
        """True if the agent submits through phasegate's tools (a harness CLI over MCP)."""
        ...

    def work(self, job: Job) -> Submission | None:
        """Do the phase's work; a Submission, or None if the session was advanced already."""
        ...
