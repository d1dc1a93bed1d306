"""The dashboard's sessions list: needs a human, then agent work, then finished.

Each section is its own indexed, paginated query, so the page costs the same
with ten sessions or ten thousand.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from phasegate.domain.session import Session
from phasegate.domain.workflow import PhaseKind
from phasegate.orchestrator import Orchestrator
from phasegate.store import queries as q

PAGE_SIZE = 25


@dataclass(frozen=True)
class Section:
    key: str
    title: str
    sessions: list[dict[str, Any]]
    total: int
    page: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // PAGE_SIZE))


def final_phases(orch: Orchestrator) -> list[str]:
    return sorted(
        {
            p.name
            for wf in orch.project.workflows.values()
            for p in wf.phases
            if p.kind is PhaseKind.FINAL
        }
    )


def agent_waiting_values(orch: Orchestrator) -> list[str]:
    """The `waiting_on` values of active sessions that no human is needed for."""
    # The orchestrator owns how a phase maps to a waiting_on value; reuse it.
    return [v for v in orch.active_waiting_values() if v != "human"]


def _views(orch: Orchestrator, sessions: list[Session]) -> list[dict[str, Any]]:
    return [orch.view(s) for s in sessions]


def build_sections(orch: Orchestrator, pages: dict[str, int]) -> list[Section]:
    """The three sections of the list, each at its requested page (1-based)."""
    agents = agent_waiting_values(orch)
    finals = final_phases(orch)
    offset = {k: (max(1, pages.get(k, 1)) - 1) * PAGE_SIZE for k in ("human", "agents", "finished")}
    with orch.db.read() as conn:
        human_total = q.count_sessions(conn, ["human"])
        agents_total = q.count_sessions(conn, agents)
        by_phase = q.count_sessions_by_phase(conn)
        finished_total = sum(by_phase.get(p, 0) for p in finals)
        human = q.list_sessions(conn, waiting_on=["human"], limit=PAGE_SIZE, offset=offset["human"])
        working = q.list_sessions(conn, waiting_on=agents, limit=PAGE_SIZE, offset=offset["agents"])
        # Newest finished first: the query sorts oldest first, so read the page from the end.
        end = finished_total - offset["finished"]
        start = max(0, end - PAGE_SIZE)
        finished = (
            q.list_sessions(conn, phases=finals, limit=end - start, offset=start) if end > 0 else []
        )
    return [
        Section(
            "human",
            "Needs a human",
            _views(orch, human),
            human_total,
            offset["human"] // PAGE_SIZE + 1,
        ),
        Section(
            "agents",
            "Agents at work",
            _views(orch, working),
            agents_total,
            offset["agents"] // PAGE_SIZE + 1,
        ),
        Section(
            "finished",
            "Finished",
            _views(orch, finished[::-1]),
            finished_total,
            offset["finished"] // PAGE_SIZE + 1,
        ),
    ]
