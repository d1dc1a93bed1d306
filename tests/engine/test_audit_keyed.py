"""The keyed audit chain: forging needs the key, older chains still verify, rows replay."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from engine_helpers import ALICE, TESTER, act, drive, phasegate, start

from phasegate.audit_key import ENV_KEY, ENV_KEY_FILE, SEAL, key_file
from phasegate.config import Project, Settings
from phasegate.domain.audit import chain_key, event_hash, event_mac
from phasegate.domain.principal import Principal
from phasegate.domain.session import SYSTEM, Actor, Command, Session, apply
from phasegate.domain.workflow import Workflow
from phasegate.errors import ConfigError
from phasegate.orchestrator import Orchestrator
from phasegate.store import queries as q
from phasegate.store.database import MIGRATIONS, Database
from phasegate.store.schema import events, metadata, sessions

Link = Callable[[str, dict[str, Any]], str]
MAX_FIX_ATTEMPTS = 2


def _open(root: Path, db_url: str) -> Orchestrator:
    """A new orchestrator on the test's project and database, as a new process would open it."""
    settings = Settings(database_url=db_url, test_command="true", max_fix_attempts=MAX_FIX_ATTEMPTS)
    return Orchestrator.open(Project(root, settings))


def _drop_write_guards(conn: sa.Connection) -> None:
    """What an attacker with database access does before editing events or meta rows."""
    if conn.dialect.name == "sqlite":
        for trigger in ("events_no_UPDATE", "events_no_DELETE", "meta_no_UPDATE", "meta_no_DELETE"):
            conn.exec_driver_sql(f"DROP TRIGGER {trigger}")
    else:
        conn.exec_driver_sql("DROP TRIGGER events_append_only ON events")
        conn.exec_driver_sql("DROP TRIGGER meta_append_only ON meta")


def _forge_next_event(
    orch: Orchestrator,
    session_id: str,
    link: Link,
    *,
    action: str = "tests_passed",
    to_phase: str | None = None,
    event_id: int | None = None,
) -> int:
    """INSERT the session's next event (correctly chained by `link`) and move its row along."""
    with orch.db.read() as conn:
        last = q.session_events(conn, session_id)[-1]
    row: dict[str, Any] = {
        "session_id": session_id,
        "seq": last["seq"] + 1,
        "action": action,
        "from_phase": last["to_phase"],
        "to_phase": to_phase or last["to_phase"],
        "actor_kind": "system",
        "actor_id": "phasegate",
        "actor_role": None,
        "payload": {},
        "commit": None,
        "version": last["seq"] + 1,
        "created_at": datetime.now(UTC).isoformat(),
        "prev_hash": last["hash"],
    }
    row["hash"] = link(last["hash"], row)
    if event_id is not None:
        row["id"] = event_id
    with orch.db.write() as conn:
        conn.execute(sa.insert(events).values(**row))
        conn.execute(
            sa.update(sessions)
            .where(sessions.c.id == session_id)
            .values(phase=row["to_phase"], version=row["version"])
        )
    return int(row["seq"])


def _dump(orch: Orchestrator) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table."""
    with orch.db.read() as conn:
        return {
            t.name: [tuple(r) for r in conn.execute(sa.select(t))] for t in metadata.sorted_tables
        }


def _broken(orch: Orchestrator) -> dict[str, tuple[str, int | None, str]]:
    """The reports that fail, by session id ("" for the database): (problem, event, reason)."""
    return {
        r.session_id: (r.problem, r.broken_at, r.reason) for r in orch.verify_audit() if not r.ok
    }


# --- forging needs the key ------------------------------------------------------------


def test_a_forged_event_with_a_plain_sha256_link_is_detected(
    orch: Orchestrator, human: Principal, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An INSERTed `tests_passed` with a plain SHA-256 link fails verify_audit and the CLI."""
    victim = drive(orch, start(orch, human).id, "running_tests").id
    untouched = drive(orch, start(orch, human).id, "running_tests").id
    seq = _forge_next_event(orch, victim, event_hash, to_phase="awaiting_final_review")
    assert orch.get(victim).phase == "awaiting_final_review"  # what the attacker wanted
    problem, at, reason = _broken(orch)[victim]
    assert (problem, at) == ("chain", seq) and "forged" in reason
    assert set(_broken(orch)) == {victim}
    monkeypatch.setenv("PHASEGATE_DATABASE_URL", db_url)
    code, out, _ = phasegate("--project", str(orch.project.root), "audit", "verify")
    assert code == 1
    assert f"session {victim[:8]}: BROKEN at event {seq}: event {seq} is forged" in out
    assert f"session {untouched[:8]}" not in out
    assert "1 of 2 chains verify" in out


def test_a_forged_event_under_another_key_is_detected(orch: Orchestrator, human: Principal) -> None:
    """An event MAC'd with a key other than the database's is reported as altered or forged."""
    victim = drive(orch, start(orch, human).id, "awaiting_test_review").id
    wrong = chain_key(os.urandom(32), orch.audit_key.database_id)
    seq = _forge_next_event(
        orch,
        victim,
        lambda prev, row: event_mac(wrong, prev, row),
        action="approve",
        to_phase="generating_implementation",
    )
    problem, at, reason = _broken(orch)[victim]
    assert (problem, at) == ("chain", seq)
    assert reason == f"event {seq} was altered or forged (its hash does not match the audit key)"


# --- chains from before the key ------------------------------------------------------------


def _migrate_to(db_url: str, revision: str) -> None:
    """Bring a new database to an older migration, as an older phasegate left it."""
    db = Database(db_url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with db.write() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)
    db.dispose()


def _legacy_session(
    conn: sa.Connection, workflow: Workflow, steps: list[tuple[str, Actor]], ids: list[int]
) -> str:
    """A session written the old way: its events chained with plain SHA-256, at the given ids."""
    now = datetime(2024, 1, 1, tzinfo=UTC)
    session = Session(
        id=os.urandom(16).hex(),
        task_id="t" * 32,
        workflow="tdd",
        phase="initializing",
        version=0,
        fix_attempts=0,
        paused=False,
        context={},
        results={},
        created_at=now,
        updated_at=now,
        phase_entered_at=now,
    )
    row = q.session_to_row(session, "phasegate")
    conn.execute(sa.insert(sessions).values(**{k: row[k] for k in LEGACY | {"id"}}))
    prev = "0" * 64
    for (action, actor), event_id in zip(steps, ids, strict=True):
        now += timedelta(minutes=1)
        new, draft = apply(workflow, session, Command(action, actor, comment="ok"), now)
        row: dict[str, Any] = {
            "id": event_id,
            "session_id": session.id,
            "seq": new.version,
            "action": draft.action,
            "from_phase": draft.from_phase,
            "to_phase": draft.to_phase,
            "actor_kind": draft.actor.kind.value,
            "actor_id": draft.actor.id,
            "actor_role": draft.actor.role,
            "payload": dict(draft.payload),
            "commit": None,
            "version": new.version,
            "created_at": now.isoformat(),
            "prev_hash": prev,
        }
        row["hash"] = prev = event_hash(prev, row)
        conn.execute(sa.insert(events).values(**row))
        session = new
    conn.execute(
        sa.update(sessions)
        .where(sessions.c.id == session.id)
        .values(**{k: v for k, v in q.session_to_row(session, None).items() if k in LEGACY})
    )
    return session.id


# The session columns of migration 0002 (no id: it is the key), as a legacy writer had them.
LEGACY = {c.name for c in sessions.c} - {"id", "max_fix_attempts", "chain_tip"}
OPENING = [("begin", SYSTEM), ("load_design", SYSTEM)]
TO_IMPLEMENTATION = [*OPENING, ("submit_tests", TESTER), ("approve", ALICE)]


def _legacy_database(db_url: str, project_root: Path) -> tuple[str, str]:
    """A database at migration 0002 with two SHA-256 chains, event ids 1-4 and 6-7 (5 unused)."""
    _migrate_to(db_url, "0002")
    workflow = Project(project_root, Settings(max_fix_attempts=MAX_FIX_ATTEMPTS)).workflow("tdd")
    db = Database(db_url)
    with db.write() as conn:
        conn.execute(
            sa.insert(metadata.tables["tasks"]).values(
                id="t" * 32, name="calc", design_path="design.md", created_at=datetime.now(UTC)
            )
        )
        long = _legacy_session(conn, workflow, TO_IMPLEMENTATION, [1, 2, 3, 4])
        short = _legacy_session(conn, workflow, OPENING, [6, 7])
        if conn.dialect.name == "postgresql":  # explicit ids don't advance the sequence
            conn.exec_driver_sql("SELECT setval(pg_get_serial_sequence('events', 'id'), 7)")
    db.dispose()
    return long, short


def test_chains_written_before_the_key_still_verify_and_continue(
    db_url: str, project_root: Path
) -> None:
    """After the upgrade, SHA-256 chains verify, go on with keyed events, and verify again."""
    long, _ = _legacy_database(db_url, project_root)
    orch = _open(project_root, db_url)
    try:
        assert _broken(orch) == {}
        for action in ("submit_implementation", "tests_failed", "fix_failures"):
            act(orch, long, action)
        assert _broken(orch) == {}
        fifth = orch.timeline(long)[4]
        assert fifth["hash"] == event_mac(orch.audit_key.key, fifth["prev_hash"], fifth)
        assert orch.get(long).fix_attempts == 1
    finally:
        orch.close()


def test_legacy_style_events_added_after_the_seal_are_detected(
    db_url: str, project_root: Path
) -> None:
    """A plain SHA-256 event INSERTed after the key exists fails at that event."""
    _, short = _legacy_database(db_url, project_root)
    orch = _open(project_root, db_url)
    try:
        seq = _forge_next_event(orch, short, event_hash)
        assert _broken(orch)[short][:2] == ("chain", seq)
        assert "plain SHA-256" in _broken(orch)[short][2]
    finally:
        orch.close()


def test_a_legacy_style_event_slipped_into_an_unused_older_id_is_detected(
    db_url: str, project_root: Path
) -> None:
    """An event at a free id under the seal's bound links, but the seal's digest exposes it."""
    _, short = _legacy_database(db_url, project_root)
    orch = _open(project_root, db_url)
    try:
        _forge_next_event(orch, short, event_hash, event_id=5)
        (problem, at, reason) = _broken(orch)[""]
        assert (problem, at) == ("key_record", None)
        assert reason.startswith("events written before the audit key changed")
    finally:
        orch.close()


@pytest.mark.parametrize("tamper", ["alter", "delete"])
def test_tampering_with_the_seal_is_detected(
    db_url: str, project_root: Path, tamper: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A raised or deleted seal is reported, vouches for no SHA-256 event, and is not re-made."""
    long, short = _legacy_database(db_url, project_root)
    orch = _open(project_root, db_url)
    with orch.db.write() as conn:
        _drop_write_guards(conn)
        if tamper == "alter":  # let ids up to 1000 pass as legacy
            seal = json.loads(q.read_meta(conn)[SEAL])
            text = json.dumps({**seal, "max_event_id": 1000})
            conn.execute(
                sa.text("UPDATE meta SET value = :v WHERE name = :n"), {"v": text, "n": SEAL}
            )
        else:
            conn.execute(sa.text("DELETE FROM meta WHERE name = :n"), {"n": SEAL})
    orch.close()
    orch = _open(project_root, db_url)  # a restart must not seal the database again
    try:
        broken = _broken(orch)
        problem, _, reason = broken[""]
        assert problem == "key_record"
        assert ("altered" if tamper == "alter" else "missing") in reason
        assert broken[long][:2] == broken[short][:2] == ("chain", 1)
    finally:
        orch.close()
    monkeypatch.setenv("PHASEGATE_DATABASE_URL", db_url)
    code, out, _ = phasegate("--project", str(project_root), "audit", "verify")
    assert code == 1 and "audit key record: BROKEN: the audit key's record" in out
    assert "0 of 2 chains verify" in out


def test_four_processes_opening_a_new_database_agree_on_one_key(db_url: str) -> None:
    """Processes opening a new database together all get the same key, and it is sealed once."""
    script = (
        "import sys; from phasegate.store.database import Database; "
        "from phasegate.audit_key import open_audit_key; db = Database(sys.argv[1]); "
        "db.migrate(); print(open_audit_key(db).key.hex())"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, db_url], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(4)
    ]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [err.decode() for _, err in results]
    assert len({out for out, _ in results}) == 1
    db = Database(db_url)
    with db.read() as conn:
        meta = q.read_meta(conn)
    db.dispose()
    assert set(meta) == {"database_id", SEAL}
    assert [p.name for p in key_file(meta["database_id"]).parent.iterdir()] == [
        f"{meta['database_id']}.key"
    ]


# --- where the key lives ------------------------------------------------------------------


def test_the_key_file_is_private_and_never_in_the_database(
    orch: Orchestrator, human: Principal, db_url: str
) -> None:
    """The key is created 0600 (directory 0700) in the config dir, and no table holds its bytes."""
    drive(orch, start(orch, human).id, "awaiting_final_review")
    path = key_file(orch.audit_key.database_id)
    assert path.parent.parent == Path(os.environ["PHASEGATE_CONFIG_DIR"])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    text = path.read_text().strip()
    master = bytes.fromhex(text)
    assert len(master) == 32
    dumped = repr(_dump(orch))
    for secret in (text, master.hex(), orch.audit_key.key.hex()):
        assert secret not in dumped
    if db_url.startswith("sqlite"):
        files = Path(db_url.removeprefix("sqlite:///")).parent.glob("phasegate.db*")
        raw = b"".join(f.read_bytes() for f in files)
        for secret_bytes in (master, text.encode(), orch.audit_key.key):
            assert secret_bytes not in raw


def test_phasegate_audit_key_wins_over_the_file(
    db_url: str, project_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With PHASEGATE_AUDIT_KEY set, it signs the chain and the key file is not read."""
    db = Database(db_url)
    db.migrate()
    with db.read() as conn:
        database_id = q.read_meta(conn)["database_id"]
    db.dispose()
    path = key_file(database_id)
    path.parent.mkdir(parents=True)
    path.write_text(os.urandom(32).hex())  # another key, in the file
    master = os.urandom(32)
    monkeypatch.setenv(ENV_KEY, master.hex())
    orch = _open(project_root, db_url)
    try:
        first = orch.timeline(start(orch, orch.add_principal("human", "al")[0]).id)[0]
        assert first["hash"] == event_mac(chain_key(master, database_id), "0" * 64, first)
        assert orch.audit_key.source == ENV_KEY
        assert _broken(orch) == {}
    finally:
        orch.close()
    monkeypatch.delenv(ENV_KEY)
    with pytest.raises(ConfigError, match="is not this database's"):
        _open(project_root, db_url)  # the file's key is not the one that sealed it


def test_phasegate_audit_key_file_is_read_and_bad_keys_are_refused(
    db_url: str, project_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PHASEGATE_AUDIT_KEY_FILE supplies the key; a missing file or a short key is a ConfigError."""
    secret = tmp_path / "server.key"
    secret.write_text(base64.b64encode(os.urandom(48)).decode() + "\n")
    monkeypatch.setenv(ENV_KEY_FILE, str(secret))
    orch = _open(project_root, db_url)
    orch.close()
    assert orch.audit_key.source == f"{ENV_KEY_FILE} ({secret})"
    assert not key_file(orch.audit_key.database_id).parent.exists()
    monkeypatch.setenv(ENV_KEY_FILE, str(tmp_path / "absent.key"))
    with pytest.raises(ConfigError, match=r"absent\.key, which does not exist"):
        _open(project_root, db_url)
    monkeypatch.setenv(ENV_KEY, "0123abcd")
    with pytest.raises(ConfigError, match="at least 32 random bytes") as raised:
        _open(project_root, db_url)
    assert "0123abcd" not in str(raised.value)


def test_a_missing_key_is_one_clear_line_and_writes_nothing(
    orch: Orchestrator, human: Principal, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without its key, a keyed database won't open: a one-line ConfigError, and nothing changes."""
    drive(orch, start(orch, human).id, "generating_implementation")
    before = _dump(orch)
    path = key_file(orch.audit_key.database_id)
    path.unlink()
    config_files = sorted(Path(os.environ["PHASEGATE_CONFIG_DIR"]).rglob("*"))
    with pytest.raises(ConfigError) as raised:
        _open(orch.project.root, db_url)
    message = str(raised.value)
    assert "\n" not in message and str(path) in message and ENV_KEY in message
    monkeypatch.setenv("PHASEGATE_DATABASE_URL", db_url)
    code, out, err = phasegate("--project", str(orch.project.root), "audit", "verify")
    assert (code, out, err) == (1, "", f"phasegate: {message}\n")
    assert _dump(orch) == before
    assert sorted(Path(os.environ["PHASEGATE_CONFIG_DIR"]).rglob("*")) == config_files


# --- replaying events against the session row --------------------------------------------------


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"phase": "awaiting_final_review"},
            "session row says phase awaiting_final_review but its events end in fixing_failures",
        ),
        ({"fix_attempts": 0}, "session row says fix_attempts 0 but its events count 1"),
        ({"paused": True}, "session row says paused true but its events end with paused false"),
        ({"version": 5}, "session row says version 5 but it has 6 events"),
    ],
    ids=["phase", "fix_attempts", "paused", "version"],
)
def test_a_session_row_edited_behind_phasegates_back_is_reported(
    orch: Orchestrator,
    human: Principal,
    db_url: str,
    monkeypatch: pytest.MonkeyPatch,
    change: dict[str, Any],
    expected: str,
) -> None:
    """A row whose phase, fix_attempts, paused or version contradicts its events is TAMPERED."""
    victim = drive(orch, start(orch, human).id, "fixing_failures").id
    untouched = drive(orch, start(orch, human).id, "fixing_failures").id
    assert orch.get(victim).version == 6
    with orch.db.write() as conn:
        conn.execute(sa.update(sessions).where(sessions.c.id == victim).values(**change))
    assert _broken(orch) == {victim: ("row", None, expected)}
    monkeypatch.setenv("PHASEGATE_DATABASE_URL", db_url)
    code, out, _ = phasegate("--project", str(orch.project.root), "audit", "verify", "--json")
    reports = {r["session_id"]: r for r in json.loads(out)}
    assert code == 1 and reports[untouched]["ok"] and reports[victim]["problem"] == "row"
    code, out, _ = phasegate("--project", str(orch.project.root), "audit", "verify", victim[:8])
    assert (code, out) == (
        1,
        f"session {victim[:8]}: TAMPERED: {expected}\n0 of 1 chains verify (6 events)\n",
    )


def test_a_version_bump_with_a_matching_fake_event_is_detected(
    orch: Orchestrator, human: Principal
) -> None:
    """Raising the row's version and adding a SHA-256 event to match still fails, at that event."""
    victim = drive(orch, start(orch, human).id, "awaiting_test_review").id
    seq = _forge_next_event(orch, victim, event_hash, action="request_approval")
    assert orch.get(victim).version == seq
    assert _broken(orch)[victim][:2] == ("chain", seq)


def test_untouched_sessions_replay_to_their_rows(orch: Orchestrator, human: Principal) -> None:
    """Sessions driven through every phase, with retries, pauses and messages, all verify."""
    for phase in ("completed", "awaiting_human_intervention", "cancelled", "failed"):
        drive(orch, start(orch, human).id, phase)
    sid = drive(orch, start(orch, human).id, "awaiting_human_intervention").id
    orch.decide(sid, "pause", human)
    orch.decide(sid, "resume", human)
    orch.request_approval(sid, orch.add_principal("agent", "bot", ["coder"])[0], "please look")
    act(orch, sid, "retry")
    orch.decide(sid, "pause", human)
    assert orch.get(sid).fix_attempts == 0 and orch.get(sid).paused
    reports = orch.verify_audit()
    assert len(reports) == 5 and all(r.ok for r in reports), reports
