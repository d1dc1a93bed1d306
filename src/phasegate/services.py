"""What every long-running phasegate process does besides its own job.

`serve`, `mcp` and `worker` run the pending test runs (unless `auto_run =
false`) and deliver notifications: whichever of them is up, the session
moves and the humans hear about it.
"""

from __future__ import annotations

from phasegate.autorun import AutoRunner
from phasegate.notify import Notifier
from phasegate.orchestrator import Orchestrator


class Background:
    """The automatic test runner and the notifier of one process, started and stopped together."""

    def __init__(self, orch: Orchestrator) -> None:
        self.runner = AutoRunner(orch) if orch.project.settings.auto_run else None
        self.notifier = Notifier(orch)

    def start(self) -> Background:
        if self.runner is not None:
            self.runner.start()
        self.notifier.attach()
        self.notifier.start()
        return self

    def stop(self) -> None:
        if self.runner is not None:
            self.runner.stop()
        self.notifier.stop()
