"""Lean session rows: test output moves out of the context, the chain tip moves in.

- A context's `red_run` was a whole copy of the red run's evidence (its
  output, every failure, every collected id) and `failures` a copy of the last
  run's failures. Both already live in `test_runs`; the context now keeps a
  bounded summary that names the run by `run_id`. A copy whose run row is
  missing becomes a run row first, so no evidence is lost.
- `chain_tip` holds the hash of the session's newest event, so a transition
  chains its event without reading the events table.
- The list indexes end in (phase_entered_at, id), the keyset lists page on.

Events are not touched: the audit chain stays as it was, and `audit verify`
still passes. This migration is frozen: it does not import phasegate's code,
whose summaries may change later.

Revision ID: 0004
Revises: 0003
"""

import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

BATCH = 500
FAILING = 10
TEXT = 1_000
Json: Any = sa.JSON().with_variant(JSONB(), "postgresql")
sessions = sa.table(
    "sessions", sa.column("id", sa.String), sa.column("context", Json), sa.column("chain_tip")
)
test_runs = sa.table(
    "test_runs",
    sa.column("id", sa.String),
    sa.column("session_id", sa.String),
    sa.column("kind", sa.String),
    sa.column("commit", sa.String),
    sa.column("status", sa.String),
    sa.column("reason", sa.Text),
    sa.column("infrastructure", sa.Boolean),
    sa.column("command", sa.Text),
    sa.column("exit_code", sa.Integer),
    sa.column("duration_s", sa.Float),
    sa.column("evidence", Json),
    sa.column("created_at", sa.DateTime),
)
TIP = """
UPDATE sessions SET chain_tip = (
    SELECT e.hash FROM events e WHERE e.session_id = sessions.id ORDER BY e.seq DESC LIMIT 1
)
"""


def upgrade() -> None:
    op.add_column("sessions", sa.Column("chain_tip", sa.String(64), nullable=True))
    op.drop_index("ix_sessions_waiting", table_name="sessions")
    op.drop_index("ix_sessions_phase", table_name="sessions")
    op.create_index("ix_sessions_waiting", "sessions", ["waiting_on", "phase_entered_at", "id"])
    op.create_index("ix_sessions_phase", "sessions", ["phase", "phase_entered_at", "id"])
    op.create_index("ix_sessions_entered", "sessions", ["phase_entered_at", "id"])
    conn = op.get_bind()
    conn.execute(sa.text(TIP))
    for session_id, context in _contexts(conn):
        slim = _slim(conn, session_id, context)
        if slim != context:
            conn.execute(sessions.update().where(sessions.c.id == session_id).values(context=slim))


def downgrade() -> None:
    """Contexts keep their summaries (the runs hold the rest); the column and indexes go back."""
    op.drop_index("ix_sessions_entered", table_name="sessions")
    op.drop_index("ix_sessions_phase", table_name="sessions")
    op.drop_index("ix_sessions_waiting", table_name="sessions")
    op.create_index("ix_sessions_phase", "sessions", ["phase"])
    op.create_index("ix_sessions_waiting", "sessions", ["waiting_on", "phase_entered_at"])
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("chain_tip")


def _contexts(conn: sa.Connection) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every session's id and context, a batch at a time in id order."""
    after = ""
    while True:
        rows = conn.execute(
            sa.select(sessions.c.id, sessions.c.context)
            .where(sessions.c.id > after)
            .order_by(sessions.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            return
        for row in rows:
            yield row.id, dict(row.context or {})
        after = rows[-1].id


def _slim(conn: sa.Connection, session_id: str, context: dict[str, Any]) -> dict[str, Any]:
    slim = dict(context)
    red = context.get("red_run")
    if isinstance(red, Mapping) and "run_id" not in red:
        run_id = _red_run_id(conn, session_id, red) or _keep_as_run(conn, session_id, red)
        slim["red_run"] = _summary(run_id, red)
    results = context.get("test_results")
    failures = context.get("failures")
    if isinstance(results, Mapping) and results.get("run_id"):
        evidence = _evidence(conn, str(results["run_id"]))
        if evidence is not None:
            slim["test_results"] = {**_summary(str(results["run_id"]), evidence), **results}
            slim["test_results"].pop("failures", None)
            slim.pop("failures", None)
    if "failures" in slim and isinstance(failures, list):  # no run to point at: keep a few
        slim["failures"] = [
            {k: str(v)[:TEXT] for k, v in f.items()} if isinstance(f, Mapping) else f
            for f in failures[:FAILING]
        ]
    return slim


def _summary(run_id: str, evidence: Mapping[str, Any]) -> dict[str, Any]:
    failures = [f for f in evidence.get("failures") or [] if isinstance(f, Mapping)]
    return {
        "run_id": run_id,
        "status": evidence.get("status"),
        "reason": str(evidence.get("reason") or "")[:TEXT],
        "counts": evidence.get("counts") or {},
        "commit": evidence.get("commit"),
        "sandbox": evidence.get("sandbox", "none"),
        # Runs recorded before the flag named tests when pytest's report was asked for.
        "names_tests": bool(
            evidence.get("names_tests", "--junitxml" in str(evidence.get("command", "")))
        ),
        "duration_s": evidence.get("duration_s"),
        "warnings": [str(w)[:TEXT] for w in (evidence.get("warnings") or [])[:20]],
        "failures_total": len(failures),
    }


def _red_run_id(conn: sa.Connection, session_id: str, red: Mapping[str, Any]) -> str | None:
    """The stored red run the copy came from: same session and commit, the newest."""
    query = (
        sa.select(test_runs.c.id)
        .where(
            test_runs.c.session_id == session_id,
            test_runs.c.kind == "red",
            test_runs.c.commit == str(red.get("commit") or ""),
        )
        .order_by(test_runs.c.created_at.desc())
        .limit(1)
    )
    return conn.execute(query).scalar()


def _evidence(conn: sa.Connection, run_id: str) -> dict[str, Any] | None:
    query = sa.select(test_runs.c.evidence).where(test_runs.c.id == run_id)
    found = conn.execute(query).scalar()
    return dict(found) if isinstance(found, Mapping) else None


def _keep_as_run(conn: sa.Connection, session_id: str, red: Mapping[str, Any]) -> str:
    """A run row for a copy that has none, so moving it out of the context loses nothing."""
    run_id = uuid.uuid4().hex
    now = datetime.now(UTC)
    conn.execute(
        test_runs.insert().values(
            id=run_id,
            session_id=session_id,
            kind="red",
            commit=str(red.get("commit") or ""),
            status=str(red.get("status") or "error"),
            reason=str(red.get("reason") or ""),
            infrastructure=bool(red.get("infrastructure", False)),
            command=str(red.get("command") or ""),
            exit_code=red.get("exit_code"),
            duration_s=float(red.get("duration_s") or 0.0),
            evidence=dict(red),
            created_at=now.replace(tzinfo=None) if conn.dialect.name == "sqlite" else now,
        )
    )
    return run_id
