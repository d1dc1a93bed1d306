"""The audit log is append-only and tamper-evident; the migrated schema is the declared one."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from engine_helpers import drive, phasegate, run_cli, start

from phasegate.domain.principal import Principal
from phasegate.orchestrator import Orchestrator
from phasegate.store import queries as q
from phasegate.store.schema import metadata


def _drop_append_only_triggers(conn: sa.Connection) -> None:
    """What an attacker with database access does first."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("DROP TRIGGER events_no_UPDATE")
        conn.exec_driver_sql("DROP TRIGGER events_no_DELETE")
    else:
        conn.exec_driver_sql("DROP TRIGGER events_append_only ON events")


def _session_with_events(orch: Orchestrator, human: Principal) -> str:
    return drive(orch, start(orch, human).id, "awaiting_final_review").id


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE events SET payload = '{}' WHERE seq = 1",
        "DELETE FROM events WHERE seq = 1",
    ],
)
def test_the_database_refuses_to_change_events(
    orch: Orchestrator, human: Principal, statement: str
) -> None:
    """UPDATE and DELETE on the events table fail with 'append-only', and nothing changes."""
    sid = _session_with_events(orch, human)
    before = orch.timeline(sid)
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), orch.db.write() as conn:
        conn.exec_driver_sql(statement)
    assert orch.timeline(sid) == before


@pytest.mark.parametrize(
    "statement", ["UPDATE meta SET value = 'forged'", "DELETE FROM meta WHERE name = 'database_id'"]
)
def test_the_database_refuses_to_change_meta_rows(orch: Orchestrator, statement: str) -> None:
    """The database id and the audit key's record can't be updated or deleted either."""
    with orch.db.read() as conn:
        before = q.read_meta(conn)
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), orch.db.write() as conn:
        conn.exec_driver_sql(statement)
    with orch.db.read() as conn:
        assert q.read_meta(conn) == before


TAMPERS = {
    "edit_payload": (
        'UPDATE events SET payload = \'{"note": "forged"}\' WHERE session_id = :s AND seq = 3',
        3,
    ),
    "edit_phase": ("UPDATE events SET to_phase = 'completed' WHERE session_id = :s AND seq = 4", 4),
    "delete_middle": ("DELETE FROM events WHERE session_id = :s AND seq = 2", 2),
    "delete_last": (
        "DELETE FROM events WHERE session_id = :s AND seq = "
        "(SELECT max(seq) FROM events WHERE session_id = :s)",
        6,
    ),
}


def test_audit_verify_names_the_first_broken_event(
    orch: Orchestrator, human: Principal, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Edits and deletions make `phasegate audit verify` exit 1, naming each first bad event."""
    victims = {name: _session_with_events(orch, human) for name in TAMPERS}
    untouched = _session_with_events(orch, human)
    assert all(r.ok for r in orch.verify_audit())
    with orch.db.write() as conn:
        _drop_append_only_triggers(conn)
        for name, (sql, _) in TAMPERS.items():
            conn.execute(sa.text(sql), {"s": victims[name]})
    result = run_cli(orch.project.root, "audit", "verify", db_url=db_url)
    monkeypatch.setenv("PHASEGATE_DATABASE_URL", db_url)
    assert result.returncode == 1, result.stdout + result.stderr
    for name, (_, broken) in TAMPERS.items():
        assert f"session {victims[name][:8]}: BROKEN at event {broken}" in result.stdout, name
    assert f"session {untouched[:8]}: BROKEN" not in result.stdout
    assert "1 of 5 chains verify" in result.stdout
    code, out, _ = phasegate("--project", str(orch.project.root), "audit", "verify", untouched[:8])
    assert (code, out.strip()) == (0, "1 of 1 chains verify (6 events)")


def test_a_cut_tail_stays_detected_after_new_transitions(
    orch: Orchestrator, human: Principal
) -> None:
    """Deleting the newest events and then moving on does not hide the deletion."""
    sid = _session_with_events(orch, human)
    with orch.db.write() as conn:
        _drop_append_only_triggers(conn)
        conn.execute(sa.text("DELETE FROM events WHERE session_id = :s AND seq >= 5"), {"s": sid})
    orch.decide(sid, "pause", human)
    (report,) = orch.verify_audit(sid)
    assert (report.ok, report.broken_at) == (False, 5)


def test_the_migrated_schema_is_the_declared_one(orch: Orchestrator) -> None:
    """Alembic finds no difference between the migrated database and `schema.metadata`."""
    with orch.db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []
