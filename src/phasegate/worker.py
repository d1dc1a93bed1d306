"""Push-mode workers: claim a session for a role, run its adapter, submit, heartbeat meanwhile.

Execution model: threads. The orchestrator is synchronous and adapters block
on subprocesses (agent CLIs, test commands), so an event loop would only wrap
every call in `to_thread`; plain threads say the same with less machinery.
Each of the `concurrency` slots loops claim → work → release; each piece of
work has a heartbeat thread renewing its lease.

Supervision: whatever an adapter does (raise, hang past its timeout, get
killed), the slot survives, gives the lease back at once and claims again,
backing off after repeated failures. An agent's failure is counted against
its session, in the database (`agents.failures`): after
`agent_failures_to_human` in a row the session is paused for a human, so a
broken agent is not retried for ever. If the whole worker dies, its leases
expire and other workers take the sessions over; the fencing epoch refuses
anything the dead worker's agents might still try to submit.

SIGTERM (or Ctrl-C) drains: no new claims, in-flight work finishes, for up to
`grace_s`. A second signal, or the end of the grace, cancels in-flight agents
and releases their leases.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from types import FrameType

from phasegate.agents import (
    ADAPTERS,
    CLIS,
    Agent,
    AgentCancelled,
    AgentFailed,
    Endpoint,
    Job,
    build_agent,
    check_cli,
)
from phasegate.agents.failures import record_failure
from phasegate.domain.principal import Principal
from phasegate.domain.session import Session
from phasegate.errors import (
    ConfigError,
    Conflict,
    PhasegateError,
    SubmissionRefused,
    Unauthenticated,
)
from phasegate.leases import run_owner
from phasegate.orchestrator import Orchestrator

log = logging.getLogger("phasegate.worker")
Timing = Callable[[str, float], None]


@dataclass(frozen=True)
class WorkerOptions:
    """How a worker claims: lease length, idle polling, failure back-off, parallel slots."""

    concurrency: int = 1
    lease_ttl_s: float = 30.0
    poll_interval_s: float = 1.0
    max_backoff_s: float = 30.0
    grace_s: float = 20.0  # how long a drain waits for in-flight work before cancelling it


class Worker:
    """Works on sessions for one or more roles, `concurrency` at a time, until stopped."""

    def __init__(
        self,
        orch: Orchestrator,
        principal: Principal,
        agents: Mapping[str, Agent],
        options: WorkerOptions = WorkerOptions(),
        *,
        on_timing: Timing | None = None,
    ) -> None:
        self.orch = orch
        self.principal = principal
        self.agents = dict(agents)
        self.roles = tuple(agents)
        self.options = options
        self._on_timing = on_timing
        self._stopping = threading.Event()
        self._drain_began: float | None = None
        self._aborted = False
        self._active: set[Job] = set()
        # Re-entrant: abort() runs in the main thread, and a signal may interrupt it there.
        self._lock = threading.RLock()
        self.completed = 0  # pieces of work submitted or run, for logs and tests

    def run(self) -> None:
        """Run the slots until `stop()` (or a signal, in the main thread) and they drain."""
        if threading.current_thread() is threading.main_thread():
            self._install_signal_handlers()
        slots = [
            threading.Thread(target=self._slot, args=(i,), name=f"slot-{i}", daemon=True)
            for i in range(self.options.concurrency)
        ]
        for slot in slots:
            slot.start()
        log.info(
            "%s working as %s (%s) with %d slot(s)",
            self.principal.name,
            ",".join(self.roles),
            type(self).__name__,
            len(slots),
        )
        for slot in slots:
            while slot.is_alive():
                slot.join(0.2)  # a timeout, so the main thread keeps handling signals
                if self._grace_is_over():
                    log.warning(
                        "grace of %g s is over: cancelling in-flight work", self.options.grace_s
                    )
                    self.abort()
        log.info("%s stopped after %d piece(s) of work", self.principal.name, self.completed)

    def stop(self) -> None:
        """Drain: claim nothing new; in-flight work finishes (within `grace_s`)."""
        if self._drain_began is None:
            self._drain_began = time.monotonic()
        self._stopping.set()

    def abort(self) -> None:
        """Cancel in-flight agents too; their leases are released."""
        self._aborted = True
        self._stopping.set()
        with self._lock:
            for job in self._active:
                job.cancelled.set()

    def _install_signal_handlers(self) -> None:
        def handle(signum: int, _frame: FrameType | None) -> None:
            if self._stopping.is_set():
                log.warning("second signal: cancelling in-flight work")
                self.abort()
            else:
                log.info(
                    "signal %d: draining; waiting up to %g s for %d piece(s) of work in "
                    "flight; send it again to cancel them",
                    signum,
                    self.options.grace_s,
                    len(self._active),
                )
                self.stop()

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)

    def _grace_is_over(self) -> bool:
        began = self._drain_began
        return (
            not self._aborted
            and began is not None
            and time.monotonic() - began > self.options.grace_s
        )

    # --- one slot -----------------------------------------------------------------

    def _slot(self, index: int) -> None:
        failures, turn = 0, index
        while not self._stopping.is_set():
            claimed = self._claim(turn)
            turn += 1
            if claimed is None:
                self._stopping.wait(self.options.poll_interval_s)
                continue
            failures = 0 if self._work(*claimed) else failures + 1
            if failures:
                self._stopping.wait(min(self.options.max_backoff_s, 0.5 * 2**failures))

    def _claim(self, turn: int) -> tuple[str, Session] | None:
        """Claim for the roles in turn (rotated, so no role starves); None if none has work."""
        ttl = timedelta(seconds=self.options.lease_ttl_s)
        for i in range(len(self.roles)):
            role = self.roles[(turn + i) % len(self.roles)]
            try:
                with self._timed("claim"):
                    session = self.orch.claim_next(self.principal, role, ttl=ttl)
            except Exception:  # a database hiccup must not end the slot
                log.exception("claiming %s work failed; retrying", role)
                return None
            if session is not None:
                return role, session
        return None

    def _work(self, role: str, session: Session) -> bool:
        """Run the adapter on a claimed session; True if its work was submitted or run."""
        agent = self.agents[role]
        job = Job(self.orch, session, self.principal, session.lease_epoch)
        log.info("claimed %s (%s, epoch %d)", session.short_id, session.phase, job.epoch)
        with self._lock:
            self._active.add(job)
        reason = "agent_failed"
        try:
            # The submission happens under the heartbeats too: its red run can take a while.
            beats = self._heartbeats(job, submits_itself=agent.submits_itself)
            with beats if agent.holds_claim else _nothing():
                with self._timed(f"work:{role}"):
                    result = agent.work(job)
                if job.cancelled.is_set():
                    raise AgentCancelled("the lease was lost or the worker is stopping")
                if result is not None:
                    with self._timed("submit"):
                        self.orch.submit(
                            session.id,
                            job.kind,
                            self.principal,
                            result.files,
                            note=result.note,
                            lease_epoch=job.epoch,
                            idempotency_key=f"worker:{session.id}:{job.epoch}",
                        )
            reason = "done"
            self.completed += 1
            log.info("done with %s (%s)", session.short_id, session.phase)
            return True
        except AgentCancelled as exc:
            log.warning("agent stopped on %s (%s): %s", session.short_id, session.phase, exc)
        except AgentFailed as exc:
            log.warning("agent failed on %s (%s): %s", session.short_id, session.phase, exc)
            if not job.cancelled.is_set():  # a stop from outside is not the agent's failure
                self._count_failure(job, exc)  # before the release: no claim comes between
        except PhasegateError as exc:
            reason = "refused"
            log.warning("phasegate refused the work on %s: %s", session.short_id, exc)
            if isinstance(exc, SubmissionRefused) and not job.cancelled.is_set():
                # Work phasegate refuses (a locked test touched, nothing changed) is a failure
                # of the agent's too: a broken agent must not loop for ever.
                now = replace(job, session=self.orch.get(session.id))
                self._count_failure(now, AgentFailed(f"its submission was refused: {exc}"))
        except Exception:
            log.exception("unexpected error on %s; giving it back", session.short_id)
        finally:
            with self._lock:
                self._active.discard(job)
            self._release(job, reason)
        return False

    def _count_failure(self, job: Job, exc: AgentFailed) -> None:
        """Count the failure against the session; at the bound it is paused for a human."""
        try:
            counted = record_failure(job, str(exc), exc.output)
        except Exception:  # the failure stands either way; the session is given back
            log.exception("recording the agent failure on %s failed", job.session.short_id)
            return
        if counted is None:
            return
        short, phase = job.session.short_id, job.session.phase
        if counted.parked:
            log.warning(
                "paused %s (%s) for a human: its agent failed %d times in a row",
                short,
                phase,
                counted.count,
            )
        else:
            log.info("%s: agent failure %d of %d in a row", short, counted.count, counted.limit)

    def _release(self, job: Job, reason: str) -> None:
        """Give the claim back (a no-op if the session moved on), and a run lease we still hold."""
        try:
            epochs = [job.epoch]
            current = self.orch.get(job.session.id)
            mine = (self.principal.name, run_owner(self.principal))
            if current.lease_owner in mine and current.lease_epoch == job.epoch + 1:
                epochs.append(current.lease_epoch)  # the runner's run lease, after a failed run
            for epoch in epochs:
                self.orch.release_lease(job.session.id, epoch, reason)
        except Exception:  # the lease then simply expires
            log.exception("releasing %s failed; its lease will expire", job.session.short_id)

    def _moved_on(self, job: Job) -> bool:
        """Has the session left the claimed phase (its agent's own submission ends the claim)?"""
        try:
            return self.orch.get(job.session.id).phase != job.session.phase
        except PhasegateError:
            return False

    @contextmanager
    def _heartbeats(self, job: Job, *, submits_itself: bool) -> Iterator[None]:
        """Renew the job's lease every third of its TTL; cancel the job if the lease is lost,
        or mark it moved on if its agent submitted (and so ended the claim) itself."""
        done = threading.Event()
        ttl = timedelta(seconds=self.options.lease_ttl_s)

        def beat() -> None:
            while not done.wait(self.options.lease_ttl_s / 3):
                try:
                    self.orch.heartbeat(job.session.id, self.principal, job.epoch, ttl=ttl)
                except Conflict:
                    if submits_itself and self._moved_on(job):
                        log.info("%s moved on: its agent submitted", job.session.short_id)
                        job.moved_on.set()
                    else:
                        log.warning(
                            "lease on %s was lost; stopping its agent", job.session.short_id
                        )
                        job.cancelled.set()
                    return
                except Exception:  # transient: try again next beat, before the TTL ends
                    log.exception("heartbeat for %s failed", job.session.short_id)

        thread = threading.Thread(
            target=beat, name=f"heartbeat-{job.session.short_id}", daemon=True
        )
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()

    @contextmanager
    def _timed(self, what: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            if self._on_timing is not None:
                self._on_timing(what, time.perf_counter() - started)


@contextmanager
def _nothing() -> Iterator[None]:
    yield


# --- what `phasegate worker` needs to start one ---------------------------------------------

AGENT_TOKEN_ENV = "PHASEGATE_AGENT_TOKEN"


def worker_principal(
    orch: Orchestrator, roles: Sequence[str], name: str | None, human: Callable[[], Principal]
) -> Principal:
    """The agent the worker acts as: $PHASEGATE_AGENT_TOKEN, else a new one the human owns.

    Without a token, the human who ran `phasegate init` here may start workers:
    they could mint an agent token anyway, so the worker mints it for them,
    named after the worker so the lease history says which process held what.
    """
    token = os.environ.get(AGENT_TOKEN_ENV)
    if token:
        principal = orch.authenticate(token)
        if principal.is_human:
            raise Unauthenticated(
                f"{AGENT_TOKEN_ENV} holds a human token; workers act as agents "
                "(phasegate token add --agent NAME --role ROLE)"
            )
        return principal
    try:
        human()
    except Unauthenticated:
        raise Unauthenticated(
            f"set {AGENT_TOKEN_ENV} to an agent token with the roles "
            f"{', '.join(roles)}, or run the worker as the project's human "
            "(phasegate init)"
        ) from None
    base = name or f"worker-{'-'.join(roles)}-{socket.gethostname()}-{os.getpid()}"
    return orch.add_principal("agent", orch.unused_principal_name(base), list(roles))[0]


def adapters_by_role(roles: Sequence[str], choices: Sequence[str]) -> dict[str, str]:
    """`--agent claude` for every role, or `--agent tester=claude --agent coder=codex`."""
    default, chosen = "command", {}
    for choice in choices:
        role, sep, kind = choice.rpartition("=")
        if kind not in ADAPTERS:
            raise ConfigError(
                f"unknown agent adapter {kind!r} in --agent {choice}; use one of "
                f"{', '.join(ADAPTERS)}"
            )
        if not sep:
            default = kind
        elif role not in roles:
            raise ConfigError(
                f"--agent {choice} names role {role!r}, which this worker doesn't work as "
                f"(--role {','.join(roles)})"
            )
        else:
            chosen[role] = kind
    return {role: chosen.get(role, default) for role in roles}


def agents_for(
    orch: Orchestrator,
    adapters: Mapping[str, str],
    script_dir: Path | None,
    script_delay_s: float,
    endpoint: Endpoint | None = None,
) -> dict[str, Agent]:
    """One adapter per role (ConfigError early if one can't be built)."""
    return {
        role: build_agent(
            kind,
            role,
            orch.project,
            script_dir=script_dir,
            script_delay_s=script_delay_s,
            endpoint=endpoint,
        )
        for role, kind in adapters.items()
    }


def check_adapters(orch: Orchestrator, adapters: Mapping[str, str]) -> None:
    """ConfigError now, before the worker writes anything (such as its own agent), if an
    adapter can't run here: an agent CLI missing or too old, a role with no command."""
    sandbox_mode = orch.project.settings.sandbox.mode
    for role, kind in adapters.items():
        if kind in CLIS:
            check_cli(kind, sandbox_mode)
        elif kind == "command":
            build_agent(kind, role, orch.project)


def needs_endpoint(adapters: Mapping[str, str]) -> bool:
    """Whether an adapter's agent talks to phasegate over MCP (a harness CLI)."""
    return any(kind in CLIS for kind in adapters.values())


def configure_logging() -> None:
    """One line per event on stderr; the worker's agents never write there."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")


def timing_file(path: Path) -> Timing:
    """Append each timing as a JSON line to `path` (read by bench/workers.py)."""
    lock = threading.Lock()

    def write(what: str, seconds: float) -> None:
        with lock, open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"what": what, "s": seconds}) + "\n")

    return write
