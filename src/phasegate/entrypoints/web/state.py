"""What every request handler needs, built once per app."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from starlette.requests import HTTPConnection

from phasegate.entrypoints.draining import Draining
from phasegate.entrypoints.web.auth import Authenticator, Signer
from phasegate.feed import EventFeed
from phasegate.orchestrator import Orchestrator

if TYPE_CHECKING:
    from phasegate.entrypoints.web.metrics import DashboardMetrics
    from phasegate.entrypoints.web.pages import Pages


@dataclass
class WebState:
    orch: Orchestrator
    feed: EventFeed
    signer: Signer
    auth: Authenticator
    metrics: DashboardMetrics
    pages: Pages
    mcp_mounted: bool = False
    draining: Draining = field(default_factory=Draining)  # set when `serve` shuts down
    _phases: list[str] = field(default_factory=list)

    def known_phases(self) -> list[str]:
        """Every phase name of every workflow the project knows."""
        if not self._phases:
            names = {p.name for wf in self.orch.project.workflows.values() for p in wf.phases}
            self._phases = sorted(names)
        return self._phases


def web_state(conn: HTTPConnection) -> WebState:
    state: WebState = conn.app.state.web
    return state
