"""SQLite's transition path in plain sqlite3 calls: the hot path without per-statement overhead.

A transition is three statements (read the session, update it, insert its
event) and SQLAlchemy's per-statement work cost more CPU than SQLite itself.
These statements are written out once, and the values are converted here
exactly as SQLAlchemy stores them: JSON as text, booleans as integers, and
datetimes as naive UTC text ("YYYY-MM-DD HH:MM:SS.ffffff"), the format the
indexes order by. Everything else keeps using SQLAlchemy.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection

from phasegate.store.text import dumps

_LOAD = """
SELECT s.id, s.task_id, s.workflow, s.phase, s.version, s.fix_attempts, s.paused, s.context,
       s.results, s.created_at, s.updated_at, s.phase_entered_at, s.lease_owner,
       s.lease_expires_at, s.lease_epoch, s.base_commit, s.branch, t.name, s.chain_tip,
       s.max_fix_attempts
FROM sessions s JOIN tasks t ON t.id = s.task_id
WHERE s.id = ?
"""
_UPDATE = """
UPDATE sessions SET workflow = ?, phase = ?, waiting_on = ?, version = ?, fix_attempts = ?,
    max_fix_attempts = ?, paused = ?, context = ?, results = ?, base_commit = ?, branch = ?,
    lease_owner = ?, lease_expires_at = ?, lease_epoch = ?, updated_at = ?, phase_entered_at = ?,
    chain_tip = ?
WHERE id = ? AND version = ?
"""
_INSERT_EVENT = """
INSERT INTO events (session_id, seq, action, from_phase, to_phase, actor_kind, actor_id,
                    actor_role, payload, "commit", version, created_at, prev_hash, hash)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""


def load_for_transition(conn: Connection, session_id: str) -> dict[str, Any] | None:
    """The session's row as SQLAlchemy would return it (decoded), with the task's name."""
    row = _raw(conn).execute(_LOAD, (session_id,)).fetchone()
    if row is None:
        return None
    (sid, task_id, workflow, phase, version, attempts, paused, context, results) = row[:9]
    created, updated, entered, owner, expires, epoch, base, branch, task, tip, limit = row[9:]
    return {
        "id": sid,
        "task_id": task_id,
        "workflow": workflow,
        "phase": phase,
        "version": version,
        "fix_attempts": attempts,
        "max_fix_attempts": limit,
        "paused": bool(paused),
        "context": json.loads(context),
        "results": json.loads(results),
        "created_at": _read_time(created),
        "updated_at": _read_time(updated),
        "phase_entered_at": _read_time(entered),
        "lease_owner": owner,
        "lease_expires_at": _read_time(expires),
        "lease_epoch": epoch,
        "base_commit": base,
        "branch": branch,
        "task_name": task,
        "chain_tip": tip,
    }


def commit_transition(
    conn: Connection, session: Mapping[str, Any], expected_version: int, event: Mapping[str, Any]
) -> bool:
    """Update the session row if its version is still `expected_version`, then add its event."""
    raw = _raw(conn)
    moved = raw.execute(
        _UPDATE,
        (
            session["workflow"],
            session["phase"],
            session["waiting_on"],
            session["version"],
            session["fix_attempts"],
            session["max_fix_attempts"],
            int(session["paused"]),
            dumps(session["context"]),
            dumps(session["results"]),
            session["base_commit"],
            session["branch"],
            session["lease_owner"],
            _write_time(session["lease_expires_at"]),
            session["lease_epoch"],
            _write_time(session["updated_at"]),
            _write_time(session["phase_entered_at"]),
            event["hash"],
            session["id"],
            expected_version,
        ),
    )
    if moved.rowcount != 1:
        return False
    raw.execute(
        _INSERT_EVENT,
        (
            event["session_id"],
            event["seq"],
            event["action"],
            event["from_phase"],
            event["to_phase"],
            event["actor_kind"],
            event["actor_id"],
            event["actor_role"],
            dumps(event["payload"]),
            event["commit"],
            event["version"],
            event["created_at"],
            event["prev_hash"],
            event["hash"],
        ),
    )
    return True


def _raw(conn: Connection) -> sqlite3.Connection:
    raw = conn.connection.driver_connection
    assert isinstance(raw, sqlite3.Connection)
    return raw


def _read_time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text).replace(tzinfo=UTC) if text else None


def _write_time(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
