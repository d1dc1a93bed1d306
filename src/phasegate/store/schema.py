"""The database schema, declared once; migrations must produce exactly this."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both SQLite (which drops the zone) and PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("phasegate stores aware datetimes only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


Json: Any = JSON().with_variant(JSONB(), "postgresql")
metadata = MetaData()

tasks = Table(
    "tasks",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("design_path", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)

sessions = Table(
    "sessions",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("task_id", String(32), ForeignKey("tasks.id"), nullable=False),
    Column("workflow", String(100), nullable=False),
    Column("phase", String(100), nullable=False),
    # Denormalised from workflow + phase + paused so "who must act" is one index scan.
    Column("waiting_on", String(100), nullable=True),
    Column("version", Integer, nullable=False),
    Column("fix_attempts", Integer, nullable=False, default=0),
    # The fix budget of the configuration the session started with (None: the workflow's).
    Column("max_fix_attempts", Integer, nullable=True),
    Column("paused", Boolean, nullable=False, default=False),
    Column("context", Json, nullable=False),
    Column("results", Json, nullable=False),
    Column("base_commit", String(64), nullable=True),
    Column("branch", String(200), nullable=True),
    Column("lease_owner", String(200), nullable=True),
    Column("lease_expires_at", UtcDateTime, nullable=True),
    Column("lease_epoch", Integer, nullable=False, default=0),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("phase_entered_at", UtcDateTime, nullable=False),
    # The hash of the session's newest event: a transition chains to it without reading events.
    Column("chain_tip", String(64), nullable=True),
    # Lists are ordered by (phase_entered_at, id) and paged with keysets on it.
    Index("ix_sessions_waiting", "waiting_on", "phase_entered_at", "id"),
    Index("ix_sessions_phase", "phase", "phase_entered_at", "id"),
    Index("ix_sessions_entered", "phase_entered_at", "id"),
    Index("ix_sessions_task", "task_id"),
)

events = Table(
    "events",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("session_id", String(32), ForeignKey("sessions.id"), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("action", String(100), nullable=False),
    Column("from_phase", String(100), nullable=False),
    Column("to_phase", String(100), nullable=False),
    Column("actor_kind", String(20), nullable=False),
    Column("actor_id", String(200), nullable=False),
    Column("actor_role", String(100), nullable=True),
    Column("payload", Json, nullable=False),
    Column("commit", String(64), nullable=True),
    Column("version", Integer, nullable=False),
    Column("created_at", String(40), nullable=False),  # ISO-8601 text: hashed verbatim
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    UniqueConstraint("session_id", "seq", name="uq_events_session_seq"),
)

principals = Table(
    "principals",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("kind", String(20), nullable=False),
    Column("roles", Json, nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime, nullable=True),
    Column("passphrase_hash", Text, nullable=True),  # a human's second factor: scrypt only
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("principal", String(200), primary_key=True),
    Column("key", String(200), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    Column("response", Json, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)

test_runs = Table(
    "test_runs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("session_id", String(32), ForeignKey("sessions.id"), nullable=False),
    Column("kind", String(20), nullable=False),  # red | verify | dropped (its lease was lost)
    Column("commit", String(64), nullable=False),
    Column("status", String(20), nullable=False),
    Column("reason", Text, nullable=False),
    Column("infrastructure", Boolean, nullable=False),
    Column("command", Text, nullable=False),
    Column("exit_code", Integer, nullable=True),
    Column("duration_s", Float, nullable=False),
    Column("evidence", Json, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Index("ix_test_runs_session", "session_id", "created_at"),
)

lease_history = Table(
    "lease_history",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("session_id", String(32), ForeignKey("sessions.id"), nullable=False),
    Column("owner", String(200), nullable=False),
    Column("epoch", Integer, nullable=False),
    Column("acquired_at", UtcDateTime, nullable=False),
    Column("released_at", UtcDateTime, nullable=True),
    Column("release_reason", String(50), nullable=True),
    Index("ix_lease_history_session", "session_id", "epoch"),
)

# Facts about the database itself: its random id (which names its audit key
# file) and the audit key's signed record of older events. Insert-only.
meta = Table(
    "meta",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("value", Text, nullable=False),
)

# The webhook outbox (notify.py): one row per (change, webhook). A process
# claims a row (claimed_until) before each attempt, so it is sent once even
# when several processes deliver; failures wait next_attempt_at to retry.
notifications = Table(
    "notifications",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("session_id", String(32), ForeignKey("sessions.id"), nullable=False),
    Column("version", Integer, nullable=False),  # the change: the session's version it made
    Column("event", String(20), nullable=False),  # gate | escalation | completion
    Column("format", String(10), nullable=False),  # json | slack
    Column("url", Text, nullable=False),
    Column("body", Json, nullable=False),  # exactly what is POSTed
    Column("status", String(20), nullable=False),  # pending | delivered | failed
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UtcDateTime, nullable=False),
    Column("claimed_until", UtcDateTime, nullable=True),
    Column("claimed_by", String(32), nullable=True),
    Column("last_status", Integer, nullable=True),  # the last attempt's HTTP status
    Column("last_error", Text, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("delivered_at", UtcDateTime, nullable=True),
    UniqueConstraint("session_id", "version", "format", "url", name="uq_notifications_change"),
    Index("ix_notifications_due", "status", "next_attempt_at"),
)

# One-time login links (entrypoints/web/login_links.py): only the code's hash is
# kept; a link logs its human in once, before expires_at, then used_at is set.
login_links = Table(
    "login_links",
    metadata,
    Column("code_hash", String(64), primary_key=True),
    Column("principal_id", String(32), ForeignKey("principals.id"), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("used_at", UtcDateTime, nullable=True),
)
