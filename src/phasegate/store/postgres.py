"""PostgreSQL's transition write: the session, its event and the COMMIT in one round trip.

A transition on PostgreSQL costs three round trips: BEGIN, the locking read,
and this statement. The query is bound on the client (psycopg's ClientCursor
quotes every value) because only the simple query protocol takes two
statements in one message.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from sqlalchemy import Connection

from phasegate.errors import StorageError

# A version that moved (impossible under the row lock, but never to be half
# committed) leaves `logged` empty: the division by zero aborts the
# transaction, and the COMMIT after it never runs.
_COMMIT_TRANSITION = """
WITH moved AS (
    UPDATE sessions SET
        workflow = %(workflow)s, phase = %(phase)s, waiting_on = %(waiting_on)s,
        version = %(version)s, fix_attempts = %(fix_attempts)s, paused = %(paused)s,
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


def commit_transition(
    conn: Connection, session: Mapping[str, Any], expected_version: int, event: Mapping[str, Any]
) -> bool:
    """Update the session row, insert its event and commit; False if the version moved."""
    params = {
        **session,
        **event,
        "context": Jsonb(session["context"]),
        "results": Jsonb(session["results"]),
        "payload": Jsonb(event["payload"]),
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
