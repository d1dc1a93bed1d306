"""phasegate runs what it owns: the pending test runs, in whichever phasegate process is up.

`serve`, `mcp` and `worker` each start an `AutoRunner`. It wakes at once on
this process's own changes and polls the database for other processes'
(another agent's submission, a human's `retry`). Several processes may see
the same session: the runner lease, taken only at the version each one saw,
lets exactly one of them run the submission; the others move on.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable

from phasegate.domain.principal import Principal, PrincipalKind
from phasegate.errors import Conflict, InvalidTransition, NotFound
from phasegate.orchestrator import Change, Orchestrator

log = logging.getLogger("phasegate.autorun")

POLL_S = 2.0  # how soon another process's submission is picked up
RETRY_AFTER_S = 30.0  # a session whose run broke unexpectedly is tried again after this


class AutoRunner:
    """Runs the tests of sessions waiting on phasegate, one at a time, until stopped."""

    def __init__(self, orch: Orchestrator, *, poll_s: float = POLL_S) -> None:
        self.orch = orch
        self.poll_s = poll_s
        # Unique per process: the lease tells runners apart by name.
        self.principal = Principal(
            id="",
            name=f"phasegate@{socket.gethostname()}:{os.getpid()}",
            kind=PrincipalKind.AGENT,
            roles=("runner",),
        )
        self.runs = 0  # runs this process made, for logs and tests
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._broken: dict[str, float] = {}  # session id → when to try it again
        self._thread: threading.Thread | None = None
        self._unsubscribe: Callable[[], None] = _nothing

    def start(self) -> AutoRunner:
        self._unsubscribe = self.orch.subscribe(self._heard)
        self._thread = threading.Thread(target=self._loop, name="phasegate-autorun", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Take nothing new; a run in progress ends or is abandoned with its lease."""
        self._unsubscribe()
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def run_pending(self) -> int:
        """Run every session waiting for a run now; how many this process ran."""
        ran = 0
        for session_id in self.orch.pending_runs(limit=10):
            if self._stopping.is_set():
                break
            if self._broken.get(session_id, 0.0) > time.monotonic():
                continue
            ran += self._run(session_id)
        return ran

    def _heard(self, change: Change) -> None:
        if change.phase in self.orch.run_phases():
            self._wake.set()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                ran = self.run_pending()
            except Exception:  # the database is away: try again at the next poll
                log.exception("looking for pending test runs failed")
                ran = 0
            if not ran:
                self._wake.wait(self.poll_s)

    def _run(self, session_id: str) -> int:
        try:
            session, run = self.orch.run_tests(
                session_id, self.principal, progress=self._progress(session_id), wait=False
            )
        except (Conflict, InvalidTransition, NotFound):
            return 0  # another process has it, or it moved on: nothing to do here
        except Exception:
            log.exception("the test run of session %s failed", session_id[:8])
            self._broken[session_id] = time.monotonic() + RETRY_AFTER_S
            return 0
        self.runs += 1
        log.info(
            "ran the tests of session %s: %s (%s); now in %s",
            session_id[:8],
            run.get("status"),
            run.get("reason"),
            session.phase,
        )
        return 1

    @staticmethod
    def _progress(session_id: str) -> Callable[[str], None]:
        return lambda line: log.debug("session %s: %s", session_id[:8], line)


def _nothing() -> None:
    return None
