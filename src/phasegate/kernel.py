"""The transaction kernel: the one way a session's state changes.

Every change is one write transaction that loads the session, checks the
expected version and the idempotency key, applies the action with the pure
domain, stores the new session and exactly one chained event (and what is
enlisted to commit with it, such as the webhook outbox), and, after the
commit, tells the listeners. The use cases (decisions, submissions,
verification, leases, starting sessions) build on this module; the
`Orchestrator` is a facade above them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

from phasegate.audit_key import AuditKey, open_audit_key
from phasegate.config import Project, Settings, settings_under
from phasegate.domain.principal import Principal
from phasegate.domain.session import (
    SYSTEM,
    Command,
    EventDraft,
    Session,
    SessionHeader,
    apply,
    claim_key,
)
from phasegate.domain.workflow import ActorKind, Workflow
from phasegate.errors import Ambiguous, Conflict, IdempotencyMismatch, NotFound, StorageError
from phasegate.idempotency import Idempotency
from phasegate.store import queries as q
from phasegate.store.database import Database
from phasegate.timekeeping import Clock

log = logging.getLogger("phasegate.kernel")

Listener = Callable[["Change"], None]
#: Writes rows that commit with a change: given the session as it will be stored and its event.
Enlisted = Callable[[Connection, Session, Mapping[str, Any]], None]
#: Events that change no state a human decides on: they don't make a decision stale
#: (`agent_transcript`: a harness's transcript, recorded as its CLI exits).
ANNOTATIONS = frozenset({"request_approval", "pre_review", "agent_transcript"})
Extra = Callable[[Connection, Session], None]
# What a transaction does with the locked session: a new session and its event, or a replay.
Mutation = Callable[[Connection, Session], "tuple[Session, EventDraft] | Session"]
#: How the call in flight reached phasegate (an MCP harness: client, version, transport).
#: Set by the entrypoint around the call; stamped as `via` on the events its principal writes.
_channel: ContextVar[Mapping[str, str] | None] = ContextVar("phasegate_channel", default=None)


@contextmanager
def calling_through(channel: Mapping[str, str]) -> Iterator[None]:
    """Record `channel` on the events written by this call (threads it starts inherit it)."""
    token = _channel.set(dict(channel))
    try:
        yield
    finally:
        _channel.reset(token)


def _stamped(draft: EventDraft) -> EventDraft:
    """The event with the channel its acting principal came through, if any."""
    channel = _channel.get()
    if channel is None or draft.actor.kind is ActorKind.SYSTEM or "via" in draft.payload:
        return draft
    return replace(draft, payload={**draft.payload, "via": dict(channel)})


class StorageDisconnected(StorageError):
    """A pooled connection turned out dead before anything was written: safe to run again."""


@dataclass(frozen=True)
class Change:
    """What listeners hear after a commit: a session moved to a new version."""

    session_id: str
    version: int
    phase: str
    action: str


class Kernel:
    """Loads sessions and changes them, one transaction and one event per change."""

    def __init__(self, project: Project, db: Database, clock: Clock) -> None:
        self.project = project
        self.db = db
        self.clock = clock
        self.audit_key: AuditKey = open_audit_key(db)  # every event is chained with it
        self._listeners: list[Listener] = []
        self._enlisted: list[Enlisted] = []
        self._budgeted: dict[tuple[str, int], Workflow] = {}
        self._kept_settings: dict[str, Settings] = {}

    # --- listening ----------------------------------------------------------------

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call `listener` after every committed change made by this process."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def publish(self, change: Change) -> None:
        """Tell every listener; one that fails is logged, and neither stops the others nor
        makes the committed change look failed to its caller."""
        for listener in list(self._listeners):
            try:
                listener(change)
            except Exception:
                log.exception(
                    "a listener failed on session %s version %d",
                    change.session_id[:8],
                    change.version,
                )

    def enlist(self, writer: Enlisted) -> Callable[[], None]:
        """Call `writer(conn, session, event)` in every change's transaction, just before
        the session and its event are stored: what it writes commits with them, or not at
        all. (On PostgreSQL that store carries the COMMIT, so nothing can come after it.)"""
        self._enlisted.append(writer)
        return lambda: self._enlisted.remove(writer)

    # --- reading --------------------------------------------------------------------

    def resolve_session_id(self, ref: str) -> str:
        """The full id of the one session whose id starts with `ref`."""
        ref = ref.strip().lower()
        if len(ref) == 32 and all(c in "0123456789abcdef" for c in ref):
            return ref  # a whole id: whoever loads it reports a missing session
        if not ref or any(c not in "0123456789abcdef" for c in ref):
            raise NotFound(f"no session {ref!r}: session ids are hex; list them with phasegate ls")
        with self.db.read_one() as conn:
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
        """The whole session (context included) by id or unique prefix."""
        session_id = self.resolve_session_id(ref)
        with self.db.read_one() as conn:
            session = q.load_session(conn, session_id)
        if session is None:
            raise NotFound(f"no session {ref!r}; list sessions with `phasegate ls --all`")
        return session

    def workflow_of(self, session: SessionHeader) -> Workflow:
        """The session's workflow, with the fix budget of the configuration it started with."""
        wf = self.project.workflow(session.workflow)
        limit = session.max_fix_attempts
        if limit is None or limit == wf.max_fix_attempts:
            return wf
        key = (wf.name, limit)
        if key not in self._budgeted:
            self._budgeted[key] = replace(wf, max_fix_attempts=limit)
        return self._budgeted[key]

    def settings_of(self, session: Session) -> Settings:
        """The settings a session runs under: those it started with, not today's file."""
        config = session.context.get("config")
        if not config:
            return self.project.settings
        if config["hash"] not in self._kept_settings:
            self._kept_settings[config["hash"]] = settings_under(self.project.settings, config)
        return self._kept_settings[config["hash"]]

    def replayed(
        self, principal: Principal, key: str | None, request: Mapping[str, Any]
    ) -> Session | None:
        """The session an earlier call with this idempotency key produced, if any."""
        idempotency = Idempotency.of(principal, key, request)
        if idempotency is None:
            return None
        with self.db.read() as conn:
            return self._replay(conn, idempotency)

    # --- the one way state changes ----------------------------------------------------

    def transition(
        self,
        session_id: str,
        build: Callable[[Session], Command],
        *,
        expected_version: int | None = None,
        idempotency: Idempotency | None = None,
        extra: Extra | None = None,
    ) -> Session:
        """Apply one action in one transaction: new state and exactly one event, or nothing.

        `build` sees the session as locked in the transaction and returns the
        command; `extra` writes rows that belong to the same change (a test run).
        """

        def change(conn: Connection, current: Session) -> tuple[Session, EventDraft] | Session:
            if idempotency is not None and (replay := self._replay(conn, idempotency)):
                return replay
            if expected_version is not None and not self._unchanged_since(
                conn, current, expected_version
            ):
                raise Conflict(
                    f"session {current.short_id} changed since you looked (you saw version "
                    f"{expected_version}, it is now version {current.version} in {current.phase}); "
                    "reload it and decide again",
                    phase=current.phase,
                    allowed_actions=self.workflow_of(current).allowed_actions(
                        current.phase, paused=current.paused
                    ),
                )
            new, draft = apply(self.workflow_of(current), current, build(current), self.clock())
            if current.lease_owner and new.lease_owner is None:
                q.close_lease(conn, new.id, current.lease_epoch, new.updated_at, "phase_changed")
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
                        "created_at": new.updated_at,
                    },
                )
            return new, draft

        return self._commit(session_id, change)

    def _unchanged_since(self, conn: Connection, current: Session, seen: int) -> bool:
        """Whether a decision made on version `seen` still decides the same thing.

        Annotations (an agent's message for the reviewer) don't change what is
        being decided; counting them would let an agent refuse every decision
        as stale by posting messages.
        """
        if current.version == seen:
            return True
        if current.version < seen:
            return False
        return set(q.actions_since(conn, current.id, seen)) <= ANNOTATIONS

    def record(
        self,
        ref: str,
        action: str,
        principal: Principal | None,
        payload: Mapping[str, Any],
        *,
        context_patch: Mapping[str, Any] | Callable[[Session], Mapping[str, Any]] | None = None,
        check: Callable[[Session], None] | None = None,
    ) -> Session:
        """Append an event that changes no phase (a message for the reviewer, a run error).

        `check` sees the locked session first and may refuse (raise) in the same
        transaction; `context_patch` may be computed from the locked session.
        """

        def change(_conn: Connection, current: Session) -> tuple[Session, EventDraft]:
            if check is not None:
                check(current)
            wf = self.workflow_of(current)
            actor = principal.actor(wf.phase(current.phase).role) if principal else SYSTEM
            new = replace(
                current,
                version=current.version + 1,
                updated_at=self.clock(),
                context={
                    **current.context,
                    **(context_patch(current) if callable(context_patch) else context_patch or {}),
                },
            )
            draft = EventDraft(
                session_id=new.id,
                action=action,
                from_phase=current.phase,
                to_phase=current.phase,
                actor=actor,
                payload=dict(payload),
                commit=None,
                version=new.version,
            )
            return new, draft

        return self._commit(self.resolve_session_id(ref), change)

    def _commit(self, session_id: str, change: Mutation) -> Session:
        """Lock the session, let `change` decide, then store it and its event, and publish.

        A pooled connection the database dropped (a restart, an idle timeout) is
        found at its first statement; then the whole transaction runs again on a
        new one, once. Nothing had been written, so it happens once and only once.
        """
        for attempt in (1, 2):
            try:
                outcome = self._commit_once(session_id, change)
            except StorageDisconnected:
                if attempt == 2:
                    raise
                continue
            if isinstance(outcome, Session):
                return outcome  # an idempotent replay: nothing new to publish
            new, action = outcome
            self.publish(Change(new.id, new.version, new.phase, action))
            return new
        raise AssertionError("unreachable")

    def _commit_once(self, session_id: str, change: Mutation) -> Session | tuple[Session, str]:
        writing = False
        try:
            with self.db.write() as conn:
                loaded = q.load_session_for_transition(conn, session_id)
                if loaded is None:
                    raise NotFound(f"no session {session_id}; list sessions with phasegate ls")
                current, tip = loaded
                outcome = change(conn, current)
                if isinstance(outcome, Session):
                    return outcome
                new, draft = outcome
                event = q.chain_event(
                    _stamped(draft), new.updated_at.isoformat(), tip, key=self.audit_key.key
                )
                waiting = claim_key(self.workflow_of(new), new)
                for writer in list(self._enlisted):
                    writer(conn, new, event)
                writing = True
                if not q.commit_transition(conn, new, current.version, waiting, event):
                    raise Conflict(
                        f"session {current.short_id} changed concurrently; try again",
                        phase=current.phase,
                    )
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
            if writing:
                raise StorageError(
                    f"the database connection broke while session {session_id[:8]} was being "
                    "committed; whether the change landed is unknown: check it with "
                    "`phasegate show` before trying again"
                ) from exc
            raise StorageDisconnected(f"database connection lost: {exc.orig}") from exc
        return new, draft.action

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
