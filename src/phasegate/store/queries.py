"""Named queries, one description line each. Callers own the transaction."""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, bindparam, case, func, insert, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as postgres_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError

from phasegate.domain.audit import GENESIS, event_mac
from phasegate.domain.session import EventDraft, Session, SessionHeader
from phasegate.errors import InvalidInput, StorageError
from phasegate.store import sqlite
from phasegate.store.schema import (
    events,
    idempotency_keys,
    lease_history,
    meta,
    notifications,
    principals,
    sessions,
    tasks,
    test_runs,
)
from phasegate.store.text import without_nul

Row = Mapping[str, Any]


# --- tasks -----------------------------------------------------------------


def insert_task(conn: Connection, row: Row) -> None:
    """Add a task."""
    conn.execute(insert(tasks).values(**row))


def find_tasks(conn: Connection, ref: str) -> list[Row]:
    """Tasks whose id starts with `ref`, whose name is `ref`, or whose design path is `ref`."""
    query = select(tasks).where(
        or_(
            tasks.c.id.startswith(ref, autoescape=True),
            tasks.c.name == ref,
            tasks.c.design_path == ref,
        )
    )
    return [r._asdict() for r in conn.execute(query.limit(20))]


def list_tasks(conn: Connection) -> list[Row]:
    """All tasks, oldest first."""
    return [r._asdict() for r in conn.execute(select(tasks).order_by(tasks.c.created_at))]


# --- sessions ----------------------------------------------------------------


def session_to_row(s: Session, waiting_on: str | None) -> dict[str, Any]:
    return {
        "id": s.id,
        "task_id": s.task_id,
        "workflow": s.workflow,
        "phase": s.phase,
        "waiting_on": waiting_on,
        "version": s.version,
        "fix_attempts": s.fix_attempts,
        "max_fix_attempts": s.max_fix_attempts,
        "paused": s.paused,
        "context": dict(s.context),
        "results": dict(s.results),
        "base_commit": s.base_commit,
        "branch": s.branch,
        "lease_owner": s.lease_owner,
        "lease_expires_at": s.lease_expires_at,
        "lease_epoch": s.lease_epoch,
        "created_at": s.created_at,
        "updated_at": s.updated_at,
        "phase_entered_at": s.phase_entered_at,
    }


def _header_fields(row: Mapping[str, Any] | Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "task_id": row["task_id"],
        "workflow": row["workflow"],
        "phase": row["phase"],
        "version": row["version"],
        "fix_attempts": row["fix_attempts"],
        "max_fix_attempts": row["max_fix_attempts"],
        "paused": bool(row["paused"]),
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "phase_entered_at": row["phase_entered_at"],
        "lease_owner": row["lease_owner"],
        "lease_expires_at": row["lease_expires_at"],
        "lease_epoch": row["lease_epoch"],
        "base_commit": row["base_commit"],
        "branch": row["branch"],
        "task_name": row.get("task_name") or "",
    }


def row_to_session(row: Mapping[str, Any] | Any) -> Session:
    return Session(**_header_fields(row), context=row["context"], results=row["results"])


def row_to_header(row: Mapping[str, Any] | Any) -> SessionHeader:
    return SessionHeader(**_header_fields(row))


@dataclass(frozen=True)
class Keyset:
    """A position in a list ordered by (phase_entered_at, id): where the next page starts."""

    at: datetime
    id: str

    @classmethod
    def of(cls, session: SessionHeader) -> Keyset:
        return cls(session.phase_entered_at, session.id)

    @property
    def token(self) -> str:
        """The cursor as clients pass it back: microseconds since the epoch, a dot, the id."""
        return f"{(self.at - _EPOCH) // timedelta(microseconds=1)}.{self.id}"

    @classmethod
    def parse(cls, token: str) -> Keyset:
        micros, _, session_id = token.partition(".")
        if not (_MICROS.fullmatch(micros) and _SESSION_ID.fullmatch(session_id)):
            raise InvalidInput(
                f"after/before cursor {token[:80]!r} is not one phasegate gave out; pass the "
                "`next` value of the previous page, or leave it out for the first page"
            )
        try:
            return cls(_EPOCH + timedelta(microseconds=int(micros)), session_id)
        except OverflowError:
            raise InvalidInput(
                f"after/before cursor {token[:80]!r} points outside any date; pass the "
                "`next` value of the previous page"
            ) from None


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROS = re.compile(r"-?[0-9]{1,20}")  # ASCII digits only: str.isdigit() also takes "²"
_SESSION_ID = re.compile(r"[0-9a-f]{32}")
_HEADER_COLUMNS = [c for c in sessions.c if c.name not in ("context", "results", "chain_tip")]
_LIST_HEADERS = select(*_HEADER_COLUMNS, tasks.c.name.label("task_name")).join(
    tasks, tasks.c.id == sessions.c.task_id
)
_SESSION_WITH_TASK = select(sessions, tasks.c.name.label("task_name")).join(
    tasks, tasks.c.id == sessions.c.task_id
)


def insert_session(conn: Connection, s: Session, waiting_on: str | None) -> None:
    """Add a session."""
    conn.execute(insert(sessions).values(**session_to_row(s, waiting_on)))


# The hot path's statements are built once: building them per call cost more than SQLite's commit.
_LOAD_SESSION = _SESSION_WITH_TASK.where(sessions.c.id == bindparam("session_id"))
_LOAD_SESSION_LOCKED = _LOAD_SESSION.with_for_update(of=sessions)
_LAST_EVENT = (
    select(events.c.seq, events.c.hash)
    .where(events.c.session_id == bindparam("session_id"))
    .order_by(events.c.seq.desc())
    .limit(1)
)


def load_session(conn: Connection, session_id: str, *, for_update: bool = False) -> Session | None:
    """One session by full id, optionally row-locked (PostgreSQL) for the transaction."""
    locked = for_update and conn.dialect.name == "postgresql"
    query = _LOAD_SESSION_LOCKED if locked else _LOAD_SESSION
    row = conn.execute(query, {"session_id": session_id}).mappings().first()
    return row_to_session(row) if row else None


def load_session_for_transition(
    conn: Connection, session_id: str
) -> tuple[Session, tuple[int, str] | None] | None:
    """A session, row-locked (PostgreSQL), with its chain's tip (seq, hash) if it has events.

    Every event carries the version it produced, so the tip's seq is the row's
    version, and the row keeps the tip's hash (`chain_tip`): one statement, no
    read of the events table. A row written before the column existed has its
    tip read from the events.
    """
    row: Any
    if conn.dialect.name == "sqlite":
        row = sqlite.load_for_transition(conn, session_id)
    else:
        from phasegate.store import postgres  # psycopg only where PostgreSQL is used

        row = postgres.load_for_transition(conn, session_id)
    if row is None:
        return None
    session = row_to_session(row)
    if row["chain_tip"] is not None:
        return session, (session.version, str(row["chain_tip"]))
    last = conn.execute(_LAST_EVENT, {"session_id": session_id}).first()
    return session, ((last.seq, last.hash) if last else None)


def find_session_ids(conn: Connection, prefix: str) -> list[str]:
    """Ids of sessions starting with `prefix` (at most 10)."""
    query = select(sessions.c.id).where(sessions.c.id.startswith(prefix, autoescape=True))
    return list(conn.execute(query.limit(10)).scalars())


def commit_transition(
    conn: Connection, s: Session, expected_version: int, waiting_on: str | None, event: Row
) -> bool:
    """Store the session (compare-and-set on its version) and its new event, and commit.

    It must be the transaction's last statement. On PostgreSQL the update, the
    insert and the COMMIT go in one round trip (SQLite commits when the
    transaction ends, as usual); a version that moved meanwhile
    (impossible under the row lock) aborts the transaction instead of committing
    half of it. Returns False, with nothing written, if the version moved.
    """
    row = session_to_row(s, waiting_on)
    if conn.dialect.name == "sqlite":
        return sqlite.commit_transition(conn, row, expected_version, event)
    from phasegate.store import postgres  # psycopg only where PostgreSQL is used

    return postgres.commit_transition(conn, row, expected_version, event)


def list_sessions(
    conn: Connection,
    *,
    phases: Sequence[str] | None = None,
    waiting_on: Sequence[str] | None = None,
    task_id: str | None = None,
    limit: int | None = 100,
    after: Keyset | None = None,
    before: Keyset | None = None,
    newest_first: bool = False,
) -> list[SessionHeader]:
    """Headers of the sessions matching the filters, waiting longest (or newest) first.

    No context is read. The order is (phase_entered_at, id), which the indexes
    hold, and a page starts `after` (or ends `before`) a keyset.
    """
    query = _LIST_HEADERS
    if phases is not None:
        query = query.where(sessions.c.phase.in_(phases))
    if waiting_on is not None:
        query = query.where(sessions.c.waiting_on.in_(waiting_on))
    if task_id is not None:
        query = query.where(sessions.c.task_id == task_id)
    ascending = newest_first == (before is not None)  # `before` reads backwards, then flips
    if (cursor := after or before) is not None:
        at, sid = sessions.c.phase_entered_at, sessions.c.id
        if ascending:
            query = query.where(or_(at > cursor.at, and_(at == cursor.at, sid > cursor.id)))
        else:
            query = query.where(or_(at < cursor.at, and_(at == cursor.at, sid < cursor.id)))
    order = (sessions.c.phase_entered_at, sessions.c.id)
    query = query.order_by(*(order if ascending else (c.desc() for c in order)))
    if limit is not None:
        query = query.limit(limit)
    found = [row_to_header(r) for r in conn.execute(query).mappings()]
    return found[::-1] if before is not None else found


def active_session_of_task(conn: Connection, task_id: str) -> tuple[str, str] | None:
    """The id and phase of the oldest unfinished session of a task, if it has one."""
    query = (
        select(sessions.c.id, sessions.c.phase)
        .where(sessions.c.task_id == task_id, sessions.c.waiting_on.is_not(None))
        .order_by(sessions.c.created_at)
        .limit(1)
    )
    row = conn.execute(query).first()
    return (row[0], row[1]) if row else None


def count_sessions_by_phase(conn: Connection) -> dict[str, int]:
    """How many sessions are in each phase."""
    query = select(sessions.c.phase, func.count()).group_by(sessions.c.phase)
    return {phase: n for phase, n in conn.execute(query)}


def count_sessions_by_waiting(conn: Connection) -> dict[str | None, int]:
    """How many sessions wait on each `waiting_on` value (None: finished), from its index."""
    query = select(sessions.c.waiting_on, func.count()).group_by(sessions.c.waiting_on)
    return {waiting: n for waiting, n in conn.execute(query)}


def claimable_session_ids(
    conn: Connection, waiting_on: Sequence[str], now: datetime, limit: int
) -> list[str]:
    """Sessions waiting on a role with no live lease, oldest first, skipping locked rows."""
    query = (
        select(sessions.c.id)
        .where(
            sessions.c.waiting_on.in_(waiting_on),
            or_(sessions.c.lease_expires_at.is_(None), sessions.c.lease_expires_at < now),
        )
        .order_by(sessions.c.phase_entered_at)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return list(conn.execute(query).scalars())


# --- events ------------------------------------------------------------------


def chain_event(
    draft: EventDraft, created_at: str, tip: tuple[int, str] | None, *, key: bytes
) -> dict[str, Any]:
    """The row of a session's next event, chained under `key` to `tip` (its newest event)."""
    seq, prev = (tip[0] + 1, tip[1]) if tip else (1, GENESIS)
    row: dict[str, Any] = {
        "session_id": draft.session_id,
        "seq": seq,
        "action": draft.action,
        "from_phase": draft.from_phase,
        "to_phase": draft.to_phase,
        "actor_kind": draft.actor.kind.value,
        "actor_id": draft.actor.id,
        "actor_role": draft.actor.role,
        "payload": without_nul(dict(draft.payload)),  # as stored: the MAC covers it
        "commit": draft.commit,
        "version": draft.version,
        "created_at": created_at,
        "prev_hash": prev,
    }
    row["hash"] = event_mac(key, prev, row)
    return row


def session_events(conn: Connection, session_id: str) -> list[dict[str, Any]]:
    """A session's events in order."""
    query = select(events).where(events.c.session_id == session_id).order_by(events.c.seq)
    return [dict(r._mapping) for r in conn.execute(query)]


def actions_since(conn: Connection, session_id: str, version: int) -> list[str]:
    """The actions of a session's events after `version` (an event's seq is the version it made)."""
    query = select(events.c.action).where(events.c.session_id == session_id, events.c.seq > version)
    return list(conn.execute(query).scalars())


def all_session_ids(conn: Connection) -> list[str]:
    """Every session id, oldest first."""
    return list(conn.execute(select(sessions.c.id).order_by(sessions.c.created_at)).scalars())


def last_event_id(conn: Connection) -> int:
    """The newest event's id (0 when there is none)."""
    return int(conn.execute(select(func.coalesce(func.max(events.c.id), 0))).scalar_one())


def event_id_hashes(conn: Connection, max_id: int) -> list[tuple[int, str]]:
    """(id, hash) of every event with an id up to `max_id`, in id order."""
    query = select(events.c.id, events.c.hash).where(events.c.id <= max_id).order_by(events.c.id)
    return [(int(r.id), str(r.hash)) for r in conn.execute(query)]


def all_events(conn: Connection) -> Iterator[dict[str, Any]]:
    """Every event in id order, streamed."""
    query = select(events).order_by(events.c.id)
    for r in conn.execute(query, execution_options={"yield_per": 1000}):
        yield dict(r._mapping)


# --- meta ----------------------------------------------------------------------


def read_meta(conn: Connection) -> dict[str, str]:
    """The database's facts (its id, the audit key's records) by name."""
    return {r.name: r.value for r in conn.execute(select(meta.c.name, meta.c.value))}


def read_meta_of(conn: Connection, where: str) -> dict[str, str]:
    """`read_meta`, or one line saying the table isn't there yet (`where`: the database)."""
    try:
        return read_meta(conn)
    except DBAPIError as exc:
        raise StorageError(
            f"can't read phasegate's meta table in {where}; let phasegate migrate "
            "the database (it does on start)"
        ) from exc


def lock_meta(conn: Connection) -> None:
    """Take the lock that serialises writing meta rows (SQLite's write transaction already does)."""
    if conn.dialect.name == "postgresql":
        # Read meta afterwards in a new statement: this one's snapshot predates the wait.
        query = select(meta.c.name).where(meta.c.name == "database_id").with_for_update()
        conn.execute(query)


def insert_meta(conn: Connection, name: str, value: str) -> None:
    """Record a fact about the database (meta rows are never changed)."""
    conn.execute(insert(meta).values(name=name, value=value))


# --- idempotency -------------------------------------------------------------


def get_idempotent(conn: Connection, principal: str, key: str) -> Row | None:
    """The stored request hash and response for a principal's idempotency key."""
    query = select(idempotency_keys).where(
        and_(idempotency_keys.c.principal == principal, idempotency_keys.c.key == key)
    )
    row = conn.execute(query).first()
    return row._asdict() if row else None


def put_idempotent(conn: Connection, row: Row) -> None:
    """Remember the response to an idempotency key."""
    conn.execute(insert(idempotency_keys).values(**row))


# --- principals --------------------------------------------------------------


def insert_principal(conn: Connection, row: Row) -> None:
    """Add a human or agent principal."""
    conn.execute(insert(principals).values(**row))


def principal_by_token_hash(conn: Connection, token_hash: str) -> Row | None:
    """The active principal holding a token."""
    query = select(principals).where(
        principals.c.token_hash == token_hash, principals.c.revoked_at.is_(None)
    )
    row = conn.execute(query).first()
    return row._asdict() if row else None


def principal_by_name(conn: Connection, name: str) -> Row | None:
    """A principal by its unique name."""
    row = conn.execute(select(principals).where(principals.c.name == name)).first()
    return row._asdict() if row else None


def list_principals(conn: Connection) -> list[Row]:
    """All principals, oldest first."""
    query = select(principals).order_by(principals.c.created_at)
    return [r._asdict() for r in conn.execute(query)]


def set_passphrase_hash(conn: Connection, name: str, passphrase_hash: str) -> bool:
    """Set an active human's passphrase hash; False if there is no such human."""
    result = conn.execute(
        update(principals)
        .where(
            principals.c.name == name,
            principals.c.kind == "human",
            principals.c.revoked_at.is_(None),
        )
        .values(passphrase_hash=passphrase_hash)
    )
    return result.rowcount == 1


def passphrase_hash(conn: Connection, principal_id: str) -> str | None:
    """A principal's passphrase hash (None when it has none)."""
    query = select(principals.c.passphrase_hash).where(principals.c.id == principal_id)
    return conn.execute(query).scalar()


def revoke_principal(conn: Connection, name: str, now: datetime) -> bool:
    """Revoke a principal's token; False if there is no such active principal."""
    result = conn.execute(
        update(principals)
        .where(principals.c.name == name, principals.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return result.rowcount == 1


# --- test runs -----------------------------------------------------------------


def insert_test_run(conn: Connection, row: Row) -> None:
    """Store a test run's evidence (any NUL in its text replaced: see store/text.py)."""
    conn.execute(insert(test_runs).values(**without_nul(row)))


def session_test_runs(conn: Connection, session_id: str) -> list[Row]:
    """A session's test runs, oldest first."""
    query = select(test_runs).where(test_runs.c.session_id == session_id)
    return [r._asdict() for r in conn.execute(query.order_by(test_runs.c.created_at))]


def get_test_runs(conn: Connection, run_ids: Sequence[str]) -> list[Row]:
    """The test runs with these ids (those that exist)."""
    query = select(test_runs).where(test_runs.c.id.in_(run_ids))
    return [r._asdict() for r in conn.execute(query)]


# --- leases --------------------------------------------------------------------


def open_lease(conn: Connection, session_id: str, owner: str, epoch: int, now: datetime) -> None:
    """Record that `owner` holds the session's lease from `now`, under `epoch`."""
    conn.execute(
        insert(lease_history).values(
            session_id=session_id, owner=owner, epoch=epoch, acquired_at=now
        )
    )


def close_lease(conn: Connection, session_id: str, epoch: int, now: datetime, reason: str) -> None:
    """Record the end of the lease of `epoch`."""
    conn.execute(
        update(lease_history)
        .where(
            lease_history.c.session_id == session_id,
            lease_history.c.epoch == epoch,
            lease_history.c.released_at.is_(None),
        )
        .values(released_at=now, release_reason=reason)
    )


def lease_rows(conn: Connection, session_id: str | None = None) -> list[Row]:
    """The lease history, of one session or all."""
    query = select(lease_history).order_by(lease_history.c.session_id, lease_history.c.epoch)
    if session_id:
        query = query.where(lease_history.c.session_id == session_id)
    return [r._asdict() for r in conn.execute(query)]


def set_lease(
    conn: Connection,
    session_id: str,
    *,
    owner: str | None,
    expires_at: datetime | None,
    epoch: int,
    expected_epoch: int,
) -> bool:
    """Change a session's lease if its epoch is still `expected_epoch` (fencing)."""
    result = conn.execute(
        update(sessions)
        .where(sessions.c.id == session_id, sessions.c.lease_epoch == expected_epoch)
        .values(lease_owner=owner, lease_expires_at=expires_at, lease_epoch=epoch)
    )
    return result.rowcount == 1


# --- notifications (the webhook outbox; see notify.py) ---------------------------


def insert_notifications(conn: Connection, rows: Sequence[Row]) -> list[int]:
    """Queue deliveries in one statement; the ids of the new rows (a change's row for a
    webhook that it already has is skipped)."""
    dialect_insert = postgres_insert if conn.dialect.name == "postgresql" else sqlite_insert
    query = (
        dialect_insert(notifications)
        .values(list(rows))
        .on_conflict_do_nothing()
        .returning(notifications.c.id)
    )
    return [int(found) for found in conn.execute(query).scalars()]


def _due(now: datetime) -> Any:
    """Pending, due, and held by no process (or by one whose claim ran out)."""
    return and_(
        notifications.c.status == "pending",
        notifications.c.next_attempt_at <= now,
        or_(notifications.c.claimed_until.is_(None), notifications.c.claimed_until < now),
    )


def due_notification_ids(
    conn: Connection, now: datetime, limit: int, among: Sequence[int] | None = None
) -> list[int]:
    """Deliveries that may be attempted now (of `among`, if given), oldest first."""
    query = select(notifications.c.id).where(_due(now))
    if among is not None:
        query = query.where(notifications.c.id.in_(among))
    return list(conn.execute(query.order_by(notifications.c.id).limit(limit)).scalars())


def claim_notification(
    conn: Connection, notification_id: int, claimant: str, now: datetime, until: datetime
) -> Row | None:
    """Take a due delivery for one attempt, counted now; None if another process took it."""
    result = conn.execute(
        update(notifications)
        .where(notifications.c.id == notification_id, _due(now))
        .values(claimed_until=until, claimed_by=claimant, attempts=notifications.c.attempts + 1)
    )
    if result.rowcount != 1:
        return None
    row = conn.execute(select(notifications).where(notifications.c.id == notification_id)).first()
    return row._asdict() if row else None


def finish_notification(
    conn: Connection, notification_id: int, claimant: str, outcome: Row
) -> bool:
    """Record an attempt's outcome and release the row; False if the claim was lost meanwhile."""
    result = conn.execute(
        update(notifications)
        .where(notifications.c.id == notification_id, notifications.c.claimed_by == claimant)
        .values(**outcome, claimed_until=None, claimed_by=None)
    )
    return result.rowcount == 1


def next_notification_due(conn: Connection) -> datetime | None:
    """When the soonest pending delivery may be attempted (a held one: when its claim ends)."""
    n = notifications.c
    due_at = case((n.claimed_until > n.next_attempt_at, n.claimed_until), else_=n.next_attempt_at)
    query = select(func.min(due_at)).where(n.status == "pending")
    found: datetime | None = conn.execute(query).scalar()
    return found


# --- stale sessions ------------------------------------------------------------


def count_stale_sessions(
    conn: Connection, agent_waiting: Sequence[str], entered_before: datetime
) -> int:
    """How many sessions have waited on an agent (`agent:<role>`) since before `entered_before`.

    The values are listed rather than matched with LIKE 'agent:%': equality
    lets both databases count from the (waiting_on, phase_entered_at) index alone.
    """
    query = (
        select(func.count())
        .select_from(sessions)
        .where(
            sessions.c.waiting_on.in_(agent_waiting),
            sessions.c.phase_entered_at < entered_before,
        )
    )
    return int(conn.execute(query).scalar_one())


# --- the event feed (feed.py): reading by id when ids commit out of order --------


def events_by_id(
    conn: Connection,
    after_id: int,
    *,
    also: Collection[int] = (),
    through_id: int | None = None,
    excluding: Collection[int] = (),
    limit: int = 500,
) -> list[dict[str, Any]]:
    """Events with an id above `after_id` or in `also`, up to `through_id`, none in `excluding`."""
    wanted = events.c.id > after_id
    if also:  # only then: an OR would cost SQLite its rowid range scan
        wanted = or_(wanted, events.c.id.in_(sorted(also)))
    query = select(events).where(wanted)
    if through_id is not None:
        query = query.where(events.c.id <= through_id)
    if excluding:
        query = query.where(events.c.id.not_in(sorted(excluding)))
    return [dict(r._mapping) for r in conn.execute(query.order_by(events.c.id).limit(limit))]


def event_ids_above(conn: Connection, after_id: int) -> list[int]:
    """The ids of the events above `after_id`."""
    return list(conn.execute(select(events.c.id).where(events.c.id > after_id)).scalars())


_SNAPSHOT_XIDS = text(
    "SELECT pg_snapshot_xmin(s)::text, pg_snapshot_xmax(s)::text FROM pg_current_snapshot() AS s"
)


def snapshot_xids(conn: Connection) -> tuple[int, int]:
    """PostgreSQL's (xmin, xmax) now: xids below xmin have ended; all given out are below xmax."""
    xmin, xmax = conn.execute(_SNAPSHOT_XIDS).one()
    return int(xmin), int(xmax)
