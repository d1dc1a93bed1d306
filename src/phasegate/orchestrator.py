"""phasegate's Python API: a facade over the use cases and the transaction kernel.

The CLI, the MCP server, the dashboard and the workers call this. Each method
hands its work to a use-case module (decisions, submissions, verification,
leases, sessions_start, tasks, principals); those change state only through
`Kernel.transition`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from phasegate import (
    decisions,
    leases,
    merging,
    reviews,
    sessions_start,
    submissions,
    verification,
)
from phasegate.audit_key import SEAL
from phasegate.config import Project
from phasegate.domain.audit import ChainReport, check_seal, seal_report, verify_session
from phasegate.domain.principal import Principal
from phasegate.domain.session import (
    Session,
    SessionHeader,
    describe_wait,
    phase_claim_key,
    waiting_on,
)
from phasegate.domain.workflow import PhaseKind, Workflow
from phasegate.kernel import Change, Enlisted, Kernel, Listener
from phasegate.principals import Principals
from phasegate.project_identity import check_project
from phasegate.store import queries as q
from phasegate.store.database import Database
from phasegate.tasks import Tasks
from phasegate.timekeeping import Clock, utcnow

if TYPE_CHECKING:
    from phasegate.review_brief import ReviewBrief

__all__ = ["Change", "Orchestrator"]

HUMAN_ACTIONS = decisions.HUMAN_ACTIONS
DEFAULT_LEASE_TTL = timedelta(seconds=30)


class Orchestrator:
    """phasegate's Python API: the CLI, the MCP server, the dashboard and workers call this."""

    def __init__(self, project: Project, db: Database, *, clock: Clock = utcnow) -> None:
        self.kernel = Kernel(project, db, clock)
        self.project = project
        self.db = db
        self.principals = Principals(db, clock)
        self.tasks = Tasks(project, db, clock)
        self.audit_key = self.kernel.audit_key

    @property
    def clock(self) -> Clock:
        return self.kernel.clock

    @classmethod
    def open(cls, project: Project, *, migrate: bool = True) -> Orchestrator:
        if project.database_url.startswith("sqlite"):
            project.state_dir.mkdir(parents=True, exist_ok=True)
        db = Database(project.database_url)
        if migrate:
            db.migrate()
        check_project(project, db)  # before anything writes: another repository's is refused
        return cls(project, db)

    def close(self) -> None:
        self.db.dispose()

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call `listener` after every committed change made by this process."""
        return self.kernel.subscribe(listener)

    def enlist(self, writer: Enlisted) -> Callable[[], None]:
        """Call `writer(conn, session, event)` in every change's transaction (Kernel.enlist)."""
        return self.kernel.enlist(writer)

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
        return self.kernel.resolve_session_id(ref)

    def get(self, ref: str) -> Session:
        """The whole session (context included) by id or unique prefix."""
        return self.kernel.get(ref)

    def workflow_of(self, session: SessionHeader) -> Workflow:
        return self.kernel.workflow_of(session)

    def list_sessions(
        self,
        *,
        include_finished: bool = False,
        needs_human: bool = False,
        phase: str | None = None,
        task: str | None = None,
        roles: Sequence[str] | None = None,
        limit: int = 100,
        after: str | None = None,
    ) -> list[SessionHeader]:
        """Sessions, those waiting longest first; finished ones only with `include_finished`.

        Only the columns a list shows are read (no context). `roles` keeps the
        sessions waiting for one of them; `after` is the `cursor` of the last
        session of the previous page.
        """
        task_id = self.resolve_task(task, create=False)["id"] if task else None
        waiting: list[str] | None = None
        phases = [phase] if phase else None
        if needs_human:
            waiting = ["human"]
        elif roles is not None:
            waiting = [v for v in self.active_waiting_values() if v.split(":")[-1] in roles]
        elif not include_finished and phase is None:
            waiting = self.active_waiting_values()
        with self.db.read() as conn:
            return q.list_sessions(
                conn,
                phases=phases,
                waiting_on=waiting,
                task_id=task_id,
                limit=limit,
                after=q.Keyset.parse(after) if after else None,
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

    def brief(self, session: Session) -> ReviewBrief:
        """What a human needs first on `session`: what is decided, on what evidence, what
        changed since the last decision (the page, `show` and the API all show this)."""
        from phasegate.review_brief import build_brief  # only where a brief is shown

        events, runs = self.timeline(session.id), self.test_runs(session.id)
        return build_brief(self.workflow_of(session), session, events, runs)

    def stored_runs(self, *summaries: Mapping[str, Any] | None) -> list[dict[str, Any] | None]:
        """The whole evidence of runs a session's context summarises (red_run, test_results)."""
        return verification.stored_runs(self.kernel, *summaries)

    def view(self, session: SessionHeader) -> dict[str, Any]:
        """The session as the JSON contract shows it (CLI --json, API, MCP).

        `stale`: it has waited on an agent (not paused) longer than `stale_after_s`,
        so the agent has likely stopped; a human should look.
        """
        wf = self.workflow_of(session)
        waiting = waiting_on(wf, session)
        waited_s = round((self.clock() - session.phase_entered_at).total_seconds(), 3)
        stale_after_s = self.project.settings.stale_after_s
        return {
            "id": session.id,
            "task": session.task_name,
            "task_id": session.task_id,
            "workflow": session.workflow,
            "phase": session.phase,
            "version": session.version,
            "fix_attempts": session.fix_attempts,
            "max_fix_attempts": wf.max_fix_attempts,
            "waiting_on": waiting,
            "waiting": describe_wait(wf, session),
            "waiting_s": waited_s,
            "stale": (waiting or "").startswith("agent:") and waited_s > stale_after_s,
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
            # A whole session (not a list's header) shows a reviewer agent's findings at its gate.
            **(
                {"pre_review": reviews.gate_pre_review(session)}
                if isinstance(session, Session)
                else {}
            ),
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

    def replayed(
        self, principal: Principal, key: str | None, request: Mapping[str, Any]
    ) -> Session | None:
        """The session an earlier call with this idempotency key produced, if any."""
        return self.kernel.replayed(principal, key, request)

    # --- starting sessions ------------------------------------------------------

    def start_session(
        self,
        task_ref: str,
        principal: Principal,
        *,
        workflow: str | None = None,
        idempotency_key: str | None = None,
        again: bool = False,
    ) -> Session:
        """Create a session for a task and run its opening system phases.

        AlreadyActive if the task has a session in progress, unless `again`.
        """
        return sessions_start.start_session(
            self.kernel,
            task_ref,
            principal,
            workflow=workflow,
            idempotency_key=idempotency_key,
            again=again,
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
            self.kernel,
            ref,
            action,
            principal,
            comment=comment,
            expected_version=expected_version,
            idempotency_key=idempotency_key,
        )

    def request_approval(self, ref: str, principal: Principal, message: str) -> Session:
        """Attach the agent's message for the reviewer at a gate, and tell the humans."""
        return decisions.request_approval(self.kernel, ref, principal, message)

    def pre_review(
        self,
        ref: str,
        principal: Principal,
        verdict: str,
        summary: str,
        findings: Sequence[Mapping[str, Any]],
    ) -> Session:
        """Attach a reviewer agent's findings at a gate; a human still decides."""
        return reviews.pre_review(self.kernel, ref, principal, verdict, summary, findings)

    def design_rounds(self, session: Session) -> list[dict[str, Any]]:
        """Each design round of a session and its diff from the round before."""
        return submissions.design_rounds(self.kernel, session)

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
        return self.kernel.record(ref, action, principal, payload, context_patch=context_patch)

    def claim_next(
        self, principal: Principal, role: str, *, ttl: timedelta = DEFAULT_LEASE_TTL
    ) -> Session | None:
        """Lease the session that has waited longest for `role` (None if there is none)."""
        return leases.claim_next(self.kernel, principal, role, ttl=ttl)

    def heartbeat(
        self, ref: str, principal: Principal, epoch: int, *, ttl: timedelta = DEFAULT_LEASE_TTL
    ) -> None:
        leases.heartbeat(self.kernel, self.resolve_session_id(ref), principal, epoch, ttl=ttl)

    def release_lease(self, ref: str, epoch: int, reason: str = "released") -> None:
        leases.release(self.kernel, self.resolve_session_id(ref), epoch, reason)

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
        """Submit a design, tests, an implementation or a fix (files, or the worktree's
        changes), or a review (its text in `note`, no files)."""
        if kind == "review":
            return reviews.submit_review(
                self.kernel,
                ref,
                principal,
                files,
                note=note,
                idempotency_key=idempotency_key,
                lease_epoch=lease_epoch,
            )
        return submissions.submit(
            self.kernel,
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
        self,
        ref: str,
        principal: Principal,
        *,
        progress: Callable[[str], None] | None = None,
        wait: bool = True,
    ) -> tuple[Session, dict[str, Any]]:
        """Run the approved tests on the newest commit; pass → final review, fail → fix loop.

        A run already going elsewhere is waited for (Conflict instead, without
        `wait`); once it is done, its result is returned.
        """
        return verification.run_session_tests(
            self.kernel, ref, principal, progress=progress, wait=wait
        )

    def pending_runs(self, limit: int = 10) -> list[str]:
        """Sessions waiting for phasegate to run their tests, with no live runner lease."""
        keys = leases.claim_keys_for_role(self.kernel, leases.RUNNER_ROLE)
        with self.db.read_one() as conn:  # no transaction: nothing stays locked
            return q.claimable_session_ids(conn, keys, self.clock(), limit=limit)

    def run_phases(self) -> frozenset[str]:
        """The phases in which phasegate runs the tests (in any workflow)."""
        return frozenset(
            p.name
            for wf in self.project.workflows.values()
            for p in wf.phases
            if p.kind is PhaseKind.SYSTEM and p.automation == "run_tests"
        )

    # --- closing the loop (see merging.py) -----------------------------------------

    def merge(
        self,
        ref: str,
        principal: Principal,
        *,
        into: str | None = None,
        mode: str = "merge",
        allow_moved_base: bool = False,
    ) -> Session:
        """Merge a completed session into the branch it started from (or `into`); a human only."""
        return merging.merge(
            self.kernel, ref, principal, into=into, mode=mode, allow_moved_base=allow_moved_base
        )

    def diff(self, ref: str, *, since_review: bool = False) -> merging.SessionDiff:
        """The session's change from its base, or from what a human last reviewed."""
        return merging.diff(self.kernel, ref, since_review=since_review)

    def export_patch(
        self, ref: str, output: Path | None = None, *, force: bool = False
    ) -> merging.ExportedPatch:
        """Write the session's commits as a patch file that `git am` applies."""
        return merging.export_patch(self.kernel, ref, output, force=force)
