"""The dashboard's sessions list: needs a human, then agent work, then finished.

Each section is its own indexed query that reads no context and pages with
keysets, so the page costs the same with ten sessions or a hundred thousand.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from phasegate.domain.session import SessionHeader
from phasegate.domain.workflow import PhaseKind
from phasegate.orchestrator import Orchestrator
from phasegate.store import queries as q
from phasegate.store.queries import Keyset

PAGE_SIZE = 25
SECTIONS = ("human", "agents", "finished")


@dataclass(frozen=True)
class Page:
    """Where a section's page starts (`after`) or ends (`before`); neither is the first page."""

    after: Keyset | None = None
    before: Keyset | None = None


@dataclass(frozen=True)
class Section:
    key: str
    title: str
    sessions: list[dict[str, Any]]
    total: int
    next: str | None  # the cursor of the following page, if there is one
    previous: str | None  # the cursor of the page before, if this isn't the first
    first: bool


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


def build_sections(orch: Orchestrator, pages: dict[str, Page]) -> list[Section]:
    """The three sections of the list, each at its requested page."""
    filters: dict[str, dict[str, Any]] = {
        "human": {"waiting_on": ["human"]},
        "agents": {"waiting_on": agent_waiting_values(orch)},
        "finished": {"phases": final_phases(orch), "newest_first": True},
    }
    titles = {"human": "Needs a human", "agents": "Agents at work", "finished": "Finished"}
    with orch.db.read() as conn:
        waiting = q.count_sessions_by_waiting(conn)  # a finished session waits on nobody
        totals = {
            "human": waiting.get("human", 0),
            "agents": sum(waiting.get(v, 0) for v in filters["agents"]["waiting_on"]),
            "finished": waiting.get(None, 0),
        }
        sections = []
        for key in SECTIONS:
            page = pages.get(key, Page())
            rows = q.list_sessions(
                conn, **filters[key], limit=PAGE_SIZE + 1, after=page.after, before=page.before
            )
            sections.append(_section(orch, key, titles[key], totals[key], page, rows))
    return sections


def _section(
    orch: Orchestrator, key: str, title: str, total: int, page: Page, rows: list[SessionHeader]
) -> Section:
    """One page of a section, from PAGE_SIZE + 1 rows (the extra one says there is more)."""
    more = len(rows) > PAGE_SIZE
    if page.before is not None:  # read backwards: the extra row is the first one
        shown, has_next, first = rows[-PAGE_SIZE:], True, not more
    else:
        shown, has_next, first = rows[:PAGE_SIZE], more, page.after is None
    return Section(
        key,
        title,
        [orch.view(s) for s in shown],
        total,
        next=Keyset.of(shown[-1]).token if has_next and shown else None,
        previous=Keyset.of(shown[0]).token if not first and shown else None,
        first=first,
    )
