"""PostgreSQL's transition path in plain psycopg: the locking read, and one message to write.

A transition on PostgreSQL costs three round trips: BEGIN, the locking read,
and one message holding the update, the event and the COMMIT. That message is
bound on the client (psycopg's ClientCursor quotes every value) because only
the simple query protocol takes two statements in one message. Both skip
SQLAlchemy's per-statement work, which cost more CPU than PostgreSQL's own.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from sqlalchemy import Connection

from phasegate.errors import StorageError
from phasegate.store.text import dumps

# A version that moved (impossible under the row lock, but never to be half
# committed) leaves `logged` empty: the division by zero aborts the
# transaction, and the COMMIT after it never runs.
_COMMIT_TRANSITION = """
WITH moved AS (
    UPDATE sessions SET
        workflow = %(workflow)s, phase = %(phase)s, waiting_on = %(waiting_on)s,
        version = %(version)s, fix_attempts = %(fix_attempts)s,
        max_fix_attempts = %(max_fix_attempts)s, paused = %(paused)s,
        context = %(context)s, results = %(results)s, base_commit = %(base_commit)s,
        branch = %(branch)s, lease_owner = %(lease_owner)s,
        lease_expires_at = %(lease_expires_at)s, lease_epoch = %(lease_epoch)s,
        updated_at = %(updated_at)s, phase_entered_at = %(phase_entered_at)s,
        chain_tip = %(hash)s
    WHERE id = %(id)s AND version = %(expected_version)s
    RETURNING id
), logged AS (
    INSERT INTO events (session_id, seq, action, from_phase, to_phase, actor_kind, actor_id,
                        actor_role, payload, "commit", version, created_at, prev_hash, hash)
    SELECT id, %(seq)s, %(action)s, %(from_phase)s, %(to_phase)s, %(actor_kind)s, %(actor_id)s,
           %(actor_role)s, %(payload)s, %(commit)s, %(event_version)s, %(created_at)s,
           %(prev_hash)s, %(hash)s
    FROM moved
    RETURNING 1
)
SELECT 1 / (SELECT count(*) FROM logged)::int;
COMMIT
"""


_LOAD = """
SELECT s.id, s.task_id, s.workflow, s.phase, s.version, s.fix_attempts, s.paused, s.context,
       s.results, s.created_at, s.updated_at, s.phase_entered_at, s.lease_owner,
       s.lease_expires_at, s.lease_epoch, s.base_commit, s.branch, t.name AS task_name,
       s.chain_tip, s.max_fix_attempts
FROM sessions s JOIN tasks t ON t.id = s.task_id
WHERE s.id = %s
FOR UPDATE OF s
"""
_TIMES = ("created_at", "updated_at", "phase_entered_at", "lease_expires_at")


def load_for_transition(conn: Connection, session_id: str) -> dict[str, Any] | None:
    """The session's row, locked, decoded as SQLAlchemy would (times in UTC), with its task."""
    raw = conn.connection.driver_connection
    assert isinstance(raw, psycopg.Connection)
    with raw.cursor(row_factory=dict_row) as cursor:
        row = cursor.execute(_LOAD, (session_id,)).fetchone()
    if row is None:
        return None
    for name in _TIMES:
        if row[name] is not None:
            row[name] = row[name].astimezone(UTC)
    return row


def commit_transition(
    conn: Connection, session: Mapping[str, Any], expected_version: int, event: Mapping[str, Any]
) -> bool:
    """Update the session row, insert its event and commit; False if the version moved."""
    params = {
        **session,
        **event,
        "context": Jsonb(session["context"], dumps),
        "results": Jsonb(session["results"], dumps),
        "payload": Jsonb(event["payload"], dumps),
        "version": session["version"],
        "event_version": event["version"],
        "expected_version": expected_version,
        "id": session["id"],
    }
    raw = conn.connection.driver_connection
    assert isinstance(raw, psycopg.Connection)
    try:
        with psycopg.ClientCursor(raw) as cursor:
            cursor.execute(_COMMIT_TRANSITION, params)
    except psycopg.errors.DivisionByZero:
        return False
    except psycopg.OperationalError as exc:
        conn.invalidate()  # the connection broke: the pool must not hand it out again
        raise StorageError(
            f"the database connection broke while session {session['id'][:8]} was being "
            f"committed ({str(exc).strip().splitlines()[0] if str(exc).strip() else exc!r}); "
            "whether the change landed is unknown: check it with `phasegate show` before "
            "trying again"
        ) from exc
    return True
