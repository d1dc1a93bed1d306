"""The use cases. The only place the domain meets storage, git and test runs.

Every state change goes through `_transition`: one write transaction that
checks the expected version (and idempotency key), applies the action with the
pure domain, and stores the new session and exactly one chained event.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Connection

from phasegate import decisions, leases, sessions_start, submissions, verification
from phasegate.audit_key import SEAL, open_audit_key
from phasegate.config import Project
from phasegate.domain.audit import ChainReport, check_seal, seal_report, verify_session
from phasegate.domain.principal import Principal
from phasegate.domain.session import (
    SYSTEM,
    Command,
    Session,
    apply,
    claim_key,
    describe_wait,
    phase_claim_key,
    waiting_on,
)
from phasegate.domain.workflow import PhaseKind, Workflow
from phasegate.errors import (
    Ambiguous,
    Conflict,
    IdempotencyMismatch,
    NotFound,
)
from phasegate.idempotency import Idempotency
from phasegate.principals import Principals
from phasegate.store import queries as q
from phasegate.store.database import Database
from phasegate.tasks import Tasks
from phasegate.timekeeping import Clock, utcnow

Listener = Callable[["Change"], None]

HUMAN_ACTIONS = decisions.HUMAN_ACTIONS
DEFAULT_LEASE_TTL = timedelta(seconds=30)


@dataclass(frozen=True)
class Change:
    """What listeners hear after a commit: a session moved to a new version."""

    session_id: str
    version: int
    phase: str
    action: str


class Orchestrator:
    """phasegate's Python API: the CLI, the MCP server, the dashboard and workers call this."""

    def __init__(self, project: Project, db: Database, *, clock: Clock = utcnow) -> None:
        self.project = project
        self.db = db
        self.clock = clock
        self.principals = Principals(db, clock)
        self.tasks = Tasks(project, db, clock)
        self.audit_key = open_audit_key(db)  # once per open: every event is chained with it
        self._listeners: list[Listener] = []

    @classmethod
    def open(cls, project: Project, *, migrate: bool = True) -> Orchestrator:
        if project.database_url.startswith("sqlite"):
            project.state_dir.mkdir(parents=True, exist_ok=True)
        db = Database(project.database_url)
        if migrate:
            db.migrate()
        return cls(project, db)

    def close(self) -> None:
        self.db.dispose()

    # --- listening --------------------------------------------------------------

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call `listener` after every committed change made by this process."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def _publish(self, change: Change) -> None:
        for listener in list(self._listeners):
            listener(change)

    # --- principals and tasks (see principals.py and tasks.py) ------------------

    def add_principal(
        self, kind: str, name: str, roles: Sequence[str] = ()
    ) -> tuple[Principal, str]:
        """Create a human or agent principal; return it and its token (shown once)."""
        return self.principals.add(kind, name, roles)

    def unused_principal_name(self, name: str) -> str:
        return self.principals.unused_name(name)

    def authenticate(self, token: str | None) -> Principal:
        """The principal holding `token`; Unauthenticated if none does."""
        return self.principals.authenticate(token)

    def list_principals(self) -> list[dict[str, Any]]:
        return self.principals.list()

    def revoke_principal(self, name: str) -> None:
        self.principals.revoke(name)

    def add_task(self, design: str | Path, name: str | None = None) -> dict[str, Any]:
        """Register a design document as a task; the file must exist in the project."""
        return self.tasks.add(design, name)

    def list_tasks(self) -> list[dict[str, Any]]:
        return self.tasks.list()

    def resolve_task(self, ref: str, *, create: bool = True) -> dict[str, Any]:
        """A task by id prefix, name or design path; a new design file is added as a task."""
        return self.tasks.resolve(ref, create=create)

    # --- reading sessions ---------------------------------------------------------

    def resolve_session_id(self, ref: str) -> str:
        """The full id of the one session whose id starts with `ref`."""
        ref = ref.strip().lower()
        if len(ref) == 32 and all(c in "0123456789abcdef" for c in ref):
            return ref  # a whole id: whoever loads it reports a missing session
        if not ref or any(c not in "0123456789abcdef" for c in ref):
            raise NotFound(f"no session {ref!r}: session ids are hex; list them with phasegate ls")
        with self.db.read() as conn:
            ids = q.find_session_ids(conn, ref)
        if not ids:
            raise NotFound(f"no session {ref!r}; list sessions with `phasegate ls --all`")
        if len(ids) > 1:
            raise Ambiguous(
                f"session prefix {ref!r} matches {len(ids)} sessions "
                f"({', '.join(i[:8] for i in ids[:5])}…); type more of the id"
            )
        return ids[0]

    def get(self, ref: str) -> Session:
        session_id = self.resolve_session_id(ref)
        with self.db.read() as conn:
            session = q.load_session(conn, session_id)
        if session is None:
            raise NotFound(f"no session {ref!r}; list sessions with `phasegate ls --all`")
        return session

    def workflow_of(self, session: Session) -> Workflow:
        return self.project.workflow(session.workflow)

    def list_sessions(
        self,
        *,
        include_finished: bool = False,
        needs_human: bool = False,
        phase: str | None = None,
        task: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Session]:
        """Sessions, those waiting longest first; finished ones only with `include_finished`."""
        task_id = self.resolve_task(task, create=False)["id"] if task else None
        waiting: list[str] | None = None
        phases = [phase] if phase else None
        if needs_human:
            waiting = ["human"]
        elif not include_finished and phase is None:
            waiting = self.active_waiting_values()
        with self.db.read() as conn:
            return q.list_sessions(
                conn, phases=phases, waiting_on=waiting, task_id=task_id, limit=limit, offset=offset
            )

    def active_waiting_values(self) -> list[str]:
        values = {"human", "phasegate"}
        for wf in self.project.workflows.values():
            for p in wf.phases:
                if p.kind is not PhaseKind.FINAL:
                    values.add(phase_claim_key(wf, p.name))
        return sorted(values)

    def timeline(self, ref: str) -> list[dict[str, Any]]:
        session_id = self.resolve_session_id(ref)
        with self.db.read() as conn:
            return q.session_events(conn, session_id)

    def test_runs(self, ref: str) -> list[dict[str, Any]]:
        session_id = self.resolve_session_id(ref)
        with self.db.read() as conn:
            return [dict(r) for r in q.session_test_runs(conn, session_id)]

    def view(self, session: Session) -> dict[str, Any]:
        """The session as the JSON contract shows it (CLI --json, API, MCP)."""
        wf = self.workflow_of(session)
        now = self.clock()
        return {
            "id": session.id,
            "task": session.task_name,
            "task_id": session.task_id,
            "workflow": session.workflow,
            "phase": session.phase,
            "version": session.version,
            "fix_attempts": session.fix_attempts,
            "max_fix_attempts": wf.max_fix_attempts,
            "waiting_on": waiting_on(wf, session),
            "waiting": describe_wait(wf, session),
            "waiting_s": round((now - session.phase_entered_at).total_seconds(), 3),
            "paused": session.paused,
            "allowed_actions": wf.allowed_actions(session.phase, paused=session.paused),
            "branch": session.branch,
            "base_commit": session.base_commit,
            "lease": (
                {
                    "owner": session.lease_owner,
                    "epoch": session.lease_epoch,
                    "expires_at": session.lease_expires_at.isoformat(),
                }
                if session.lease_owner and session.lease_expires_at
                else None
            ),
            "created_at": session.created_at.isoformat(),
            "updated_at": session.updated_at.isoformat(),
        }

    def verify_audit(self, ref: str | None = None) -> list[ChainReport]:
        """Check the keyed chain of one session, or of every session, and replay it against its row.

        One report per session; a seal of older events that does not hold adds one
        report for the whole database (session_id "", problem "key_record").
        """
        key = self.audit_key.key
        with self.db.read() as conn:
            ids = [self.resolve_session_id(ref)] if ref else q.all_session_ids(conn)
            seal_text = q.read_meta(conn).get(SEAL)
            seal = check_seal(key, seal_text, lambda upto: q.event_id_hashes(conn, upto))
            reports = [
                verify_session(
                    sid,
                    q.load_session(conn, sid),
                    q.session_events(conn, sid),
                    self.project.workflows,
                    key=key,
                    legacy_max_id=seal.legacy_max_id,
                )
                for sid in ids
            ]
        return reports if seal.ok else [*reports, seal_report(seal)]

    # --- the one way state changes ---------------------------------------------------

    def _transition(
        self,
        session_id: str,
        build: Callable[[Session], Command],
        *,
        expected_version: int | None = None,
        idempotency: Idempotency | None = None,
        extra: Callable[[Connection, Session], None] | None = None,
    ) -> Session:
        """Apply one action in one transaction: new state and exactly one event, or nothing."""
        with self.db.write() as conn:
            if idempotency is not None:
                replay = self._replay(conn, idempotency)
                if replay is not None:
                    return replay
            loaded = q.load_session_for_transition(conn, session_id)
            if loaded is None:
                raise NotFound(f"no session {session_id}; list sessions with phasegate ls")
            current, tip = loaded
            if expected_version is not None and current.version != expected_version:
                raise Conflict(
                    f"session {current.short_id} changed since you looked (you saw version "
                    f"{expected_version}, it is now version {current.version} in {current.phase}); "
                    "reload it and decide again",
                    phase=current.phase,
                    allowed_actions=self.workflow_of(current).allowed_actions(
                        current.phase, paused=current.paused
                    ),
                )
            wf = self.workflow_of(current)
            now = self.clock()
            new, draft = apply(wf, current, build(current), now)
            if not q.update_session(conn, new, current.version, claim_key(wf, new)):
                raise Conflict(
                    f"session {current.short_id} changed concurrently; try again",
                    phase=current.phase,
                )
            q.append_event(conn, draft, now.isoformat(), tip, key=self.audit_key.key)
            if current.lease_owner and new.lease_owner is None:
                q.close_lease(conn, new.id, current.lease_epoch, now, "phase_changed")
            if extra is not None:
                extra(conn, new)
            if idempotency is not None:
                q.put_idempotent(
                    conn,
                    {
                        "principal": idempotency.principal,
                        "key": idempotency.key,
                        "request_hash": idempotency.request_hash,
                        "response": {"session_id": new.id, "version": new.version},
                        "created_at": now,
                    },
                )
        self._publish(Change(new.id, new.version, new.phase, draft.action))
        return new

    def _replay(self, conn: Connection, idempotency: Idempotency) -> Session | None:
        stored = q.get_idempotent(conn, idempotency.principal, idempotency.key)
        if stored is None:
            return None
        if stored["request_hash"] != idempotency.request_hash:
            raise IdempotencyMismatch(
                f"idempotency key {idempotency.key!r} was already used for a different request; "
                "use a new key for a new request"
            )
        session = q.load_session(conn, stored["response"]["session_id"])
        if session is None:
            raise NotFound("the session of that idempotency key no longer exists")
        return session

    def replayed(
        self, principal: Principal, key: str | None, request: Mapping[str, Any]
    ) -> Session | None:
        """The session an earlier call with this idempotency key produced, if any."""
        idempotency = Idempotency.of(principal, key, request)
        if idempotency is None:
            return None
        with self.db.read() as conn:
            return self._replay(conn, idempotency)

    # --- starting sessions ------------------------------------------------------

    def start_session(
        self,
        task_ref: str,
        principal: Principal,
        *,
        workflow: str | None = None,
        idempotency_key: str | None = None,
    ) -> Session:
        """Create a session for a task and run its opening system phases."""
        return sessions_start.start_session(
            self, task_ref, principal, workflow=workflow, idempotency_key=idempotency_key
        )

    # --- human decisions (see decisions.py) ----------------------------------------

    def decide(
        self,
        ref: str,
        action: str,
        principal: Principal,
        *,
        comment: str = "",
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> Session:
        """A human action: approve, reject, retry, reopen_tests, pause, resume or cancel."""
        return decisions.decide(
            self,
            ref,
            action,
            principal,
            comment=comment,
            expected_version=expected_version,
            idempotency_key=idempotency_key,
        )

    def request_approval(self, ref: str, principal: Principal, message: str) -> Session:
        """Attach the agent's message for the reviewer at a gate, and tell the humans."""
        return decisions.request_approval(self, ref, principal, message)

    # --- annotations and leases --------------------------------------------------------

    def record(
        self,
        ref: str,
        action: str,
        principal: Principal | None,
        payload: Mapping[str, Any],
        *,
        context_patch: Mapping[str, Any] | None = None,
    ) -> Session:
        """Append an event that changes no phase (a message for the reviewer, a run error)."""
        from phasegate.domain.session import EventDraft

        session_id = self.resolve_session_id(ref)
        actor = principal.actor(self._phase_role(session_id)) if principal else SYSTEM
        with self.db.write() as conn:
            current = q.load_session(conn, session_id, for_update=True)
            if current is None:
                raise NotFound(f"no session {ref}")
            now = self.clock()
            new = replace(
                current,
                version=current.version + 1,
                updated_at=now,
                context={**current.context, **(context_patch or {})},
            )
            wf = self.workflow_of(current)
            if not q.update_session(conn, new, current.version, claim_key(wf, new)):
                raise Conflict(f"session {current.short_id} changed concurrently; try again")
            draft = EventDraft(
                new.id,
                action,
                current.phase,
                current.phase,
                actor,
                dict(payload),
                None,
                new.version,
            )
            q.append_event(conn, draft, now.isoformat(), key=self.audit_key.key)
        self._publish(Change(new.id, new.version, new.phase, action))
        return new

    def _phase_role(self, session_id: str) -> str | None:
        session = self.get(session_id)
        return self.workflow_of(session).phase(session.phase).role

    def claim_next(
        self, principal: Principal, role: str, *, ttl: timedelta = DEFAULT_LEASE_TTL
    ) -> Session | None:
        """Lease the session that has waited longest for `role` (None if there is none)."""
        return leases.claim_next(self, principal, role, ttl=ttl)

    def heartbeat(
        self, ref: str, principal: Principal, epoch: int, *, ttl: timedelta = DEFAULT_LEASE_TTL
    ) -> None:
        leases.heartbeat(self, self.resolve_session_id(ref), principal, epoch, ttl=ttl)

    def release_lease(self, ref: str, epoch: int, reason: str = "released") -> None:
        leases.release(self, self.resolve_session_id(ref), epoch, reason)

    # --- agent work ---------------------------------------------------------------

    def submit(
        self,
        ref: str,
        kind: str,
        principal: Principal,
        files: Sequence[Mapping[str, Any]] | None = None,
        *,
        note: str = "",
        idempotency_key: str | None = None,
        lease_epoch: int | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> Session:
        """Submit tests, an implementation or a fix (files, or the worktree's changes)."""
        return submissions.submit(
            self,
            ref,
            kind,
            principal,
            files,
            note=note,
            idempotency_key=idempotency_key,
            lease_epoch=lease_epoch,
            progress=progress,
        )

    def run_tests(
        self, ref: str, principal: Principal, *, progress: Callable[[str], None] | None = None
    ) -> tuple[Session, dict[str, Any]]:
        """Run the approved tests on the newest commit; pass → final review, fail → fix loop."""
        return verification.run_session_tests(self, ref, principal, progress=progress)
