"""Leases: who works on a session until when, with a fencing epoch.

Claiming bumps the epoch; a heartbeat extends the lease only under the same
epoch; a result recorded under an old epoch is refused. Leases are not
transitions, so they never change a session's version.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from phasegate.domain.principal import Principal
from phasegate.domain.session import Session, phase_claim_key
from phasegate.domain.workflow import PhaseKind
from phasegate.errors import Conflict, InvalidInput
from phasegate.kernel import Kernel
from phasegate.store import queries as q

DEFAULT_TTL = timedelta(seconds=30)
log = logging.getLogger(__name__)
RUNNER_ROLE = "runner"


def claim_keys_for_role(kernel: Kernel, role: str) -> list[str]:
    """The `waiting_on` values of every phase, in any workflow, that `role` works in."""
    return sorted(
        {
            phase_claim_key(wf, phase.name)
            for wf in kernel.project.workflows.values()
            for phase in wf.phases
            if phase.role == role and phase.kind in (PhaseKind.AGENT, PhaseKind.SYSTEM)
        }
    )


def claim_next(
    kernel: Kernel, principal: Principal, role: str, *, ttl: timedelta = DEFAULT_TTL
) -> Session | None:
    """Lease the session that has waited longest for `role`; None if there is none."""
    if not principal.is_human and role not in principal.roles:
        raise InvalidInput(
            f"{principal.name} has roles {', '.join(principal.roles) or 'none'}, not {role!r}; "
            "claim with one of your roles"
        )
    # Every clock read happens after the locks are taken, so lease spans recorded by
    # concurrent transactions never appear to overlap.
    with kernel.db.write() as conn:
        candidates = q.claimable_session_ids(
            conn, claim_keys_for_role(kernel, role), kernel.clock(), limit=5
        )
        for session_id in candidates:
            session = q.load_session(conn, session_id, for_update=True)
            now = kernel.clock()
            if session is None:
                continue
            if session.lease_owner:
                q.close_lease(conn, session_id, session.lease_epoch, now, "expired")
            epoch = session.lease_epoch + 1
            if q.set_lease(
                conn,
                session_id,
                owner=principal.name,
                expires_at=now + ttl,
                epoch=epoch,
                expected_epoch=session.lease_epoch,
            ):
                q.open_lease(conn, session_id, principal.name, epoch, now)
                claimed = q.load_session(conn, session_id)
                return claimed
    return None


def run_owner(principal: Principal) -> str:
    """The name a test run's lease goes by: the principal's, marked as a run.

    A principal may turn its own claim into a run, but never take over a run
    it already has going (from another process, say): that would run one
    submission twice and keep only the result it liked.
    """
    return f"{principal.name}#run"


def heartbeat(
    kernel: Kernel,
    session_id: str,
    principal: Principal,
    epoch: int,
    *,
    ttl: timedelta = DEFAULT_TTL,
) -> None:
    """Extend a lease this principal holds under `epoch`; Conflict if it was lost."""
    _renew(kernel, session_id, principal.name, epoch, ttl)


def _renew(kernel: Kernel, session_id: str, owner: str, epoch: int, ttl: timedelta) -> None:
    with kernel.db.write() as conn:
        session = q.load_session(conn, session_id, for_update=True)
        now = kernel.clock()
        if session is None or session.lease_owner != owner or session.lease_epoch != epoch:
            raise Conflict(
                f"lease on session {session_id[:8]} (epoch {epoch}) is no longer yours; "
                "stop working on it and claim again"
            )
        q.set_lease(
            conn, session_id, owner=owner, expires_at=now + ttl, epoch=epoch, expected_epoch=epoch
        )


def release(kernel: Kernel, session_id: str, epoch: int, reason: str) -> None:
    """End the lease of `epoch` if it is still the current one."""
    with kernel.db.write() as conn:
        session = q.load_session(conn, session_id, for_update=True)
        now = kernel.clock()
        if session is None or session.lease_epoch != epoch:
            return
        q.close_lease(conn, session_id, epoch, now, reason)
        if session.lease_owner is not None:
            q.set_lease(
                conn, session_id, owner=None, expires_at=None, epoch=epoch, expected_epoch=epoch
            )


def acquire_for_run(
    kernel: Kernel, session: Session, principal: Principal, *, ttl: timedelta = DEFAULT_TTL
) -> int:
    """Take the runner lease for a test run; Conflict if someone else is running it.

    Only at the version the caller saw: a run that finished meanwhile is not
    made again (exactly one run per submission across processes).

    The lease is short and kept alive by `keep_lease` during the run, so a
    runner that dies frees the session within one TTL.
    """
    with kernel.db.write() as conn:
        current = q.load_session(conn, session.id, for_update=True)
        now = kernel.clock()
        if current is None:
            raise Conflict(f"session {session.short_id} disappeared")
        if current.version != session.version:  # the run was made (or the work moved) meanwhile
            raise Conflict(
                f"session {session.short_id} moved on (version {current.version}, "
                f"{current.phase}) while its run was being started; look at it again",
                phase=current.phase,
            )
        live = current.lease_owner and current.lease_expires_at and current.lease_expires_at > now
        if live and current.lease_owner != principal.name:  # its own claim may become the run
            raise Conflict(
                f"tests of session {session.short_id} are already being run by "
                f"{current.lease_owner}; wait for the result (get_session_status)",
                phase=current.phase,
            )
        if current.lease_owner:
            q.close_lease(conn, session.id, current.lease_epoch, now, "taken_over")
        epoch = current.lease_epoch + 1
        owner = run_owner(principal)
        q.set_lease(
            conn,
            session.id,
            owner=owner,
            expires_at=now + ttl,
            epoch=epoch,
            expected_epoch=current.lease_epoch,
        )
        q.open_lease(conn, session.id, owner, epoch, now)
        return epoch


@contextmanager
def keep_lease(
    kernel: Kernel,
    session_id: str,
    principal: Principal,
    epoch: int,
    *,
    ttl: timedelta = DEFAULT_TTL,
) -> Iterator[None]:
    """Heartbeat the lease in a background thread while the body runs.

    A beat that fails for another reason than a lost lease (the database
    restarting, a dropped connection) is logged and tried again at the next
    beat, still within the TTL; only a lost lease ends the beating.
    """
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(ttl.total_seconds() / 3):
            try:
                _renew(kernel, session_id, run_owner(principal), epoch, ttl)
            except Conflict:  # lost for good: the run's result will be refused by its epoch
                log.warning("lost the lease on session %s (epoch %s)", session_id[:8], epoch)
                return
            except Exception:  # transient: try again next beat, before the TTL ends
                log.exception(
                    "renewing the run lease on session %s (epoch %s) failed; trying again",
                    session_id[:8],
                    epoch,
                )

    thread = threading.Thread(target=beat, name=f"lease-{session_id[:8]}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)
