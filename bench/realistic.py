"""Real-sized rows for the benchmarks: the bundled demo's real session, cloned.

The benches do not invent session state. `run_demo` runs `phasegate demo --yes`
once (a real session through every phase, with real sandboxed pytest runs), and
`Template.read` takes that session's rows from the database as they are: its
task, its session row and every row of every table that references the session
(events, test runs, leases). `clone_sessions` then inserts copies of those rows
with SQLAlchemy Core into the tables of `phasegate.store.schema`, replacing only
ids (primary keys, foreign keys, unique names) and the few placement columns a
bench asks for (phase, who it waits on, when it entered the phase). Every other
column is copied as read, so the copies follow the schema when columns are added
(a foreign key to another table keeps the template's value). Copied events keep
the template's hashes: the copies give rows their real size and shape, they do
not pass `phasegate audit verify`.

Footprint (`footprint`): the bytes a session takes in the database, excluding
its test runs: the session row plus its events, each column measured as
`length(CAST(column AS TEXT))` (the logical size a full-row read moves). On
PostgreSQL `pg_column_size` of each column is reported too (the stored size,
after TOAST compression).

Run directly, it prints the demo session's template and footprint.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa

from phasegate.config import Project, load_settings
from phasegate.domain.session import phase_claim_key
from phasegate.orchestrator import Orchestrator
from phasegate.store import schema

T = TypeVar("T")

PHASEGATE = str(Path(sys.executable).with_name("phasegate"))
Row = dict[str, Any]
Placement = Callable[[int], Mapping[str, Any]]


def demo_env(config_dir: Path, database_url: str | None = None) -> dict[str, str]:
    """The environment for the demo and for servers on its project: an isolated config dir."""
    env = {k: v for k, v in os.environ.items() if k != "PHASEGATE_DATABASE_URL"}
    env["PHASEGATE_CONFIG_DIR"] = str(config_dir)  # the audit key and the reviewer's token
    if database_url:
        env["PHASEGATE_DATABASE_URL"] = database_url
    return env


def run_demo(directory: Path, env: Mapping[str, str]) -> None:
    """`phasegate demo --yes --dir directory`: one real session through every phase."""
    done = subprocess.run(
        [PHASEGATE, "demo", "--yes", "--dir", str(directory)],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        raise SystemExit(f"phasegate demo failed:\n{done.stdout}\n{done.stderr}")


def open_demo(directory: Path, database_url: str | None = None) -> Orchestrator:
    """The demo project's orchestrator, on `database_url` (default: its own SQLite file)."""
    settings = load_settings(directory)
    if database_url:
        settings = settings.model_copy(update={"database_url": database_url})
    return Orchestrator.open(Project(directory, settings))


def child_tables() -> list[sa.Table]:
    """Every table with a foreign key to sessions (events, test runs, leases, …)."""
    return [
        t
        for t in schema.metadata.sorted_tables
        if any(fk.column.table is schema.sessions for fk in t.foreign_keys)
    ]


def session_fk(table: sa.Table) -> sa.Column[Any]:
    return next(
        c for c in table.columns if any(fk.column.table is schema.sessions for fk in c.foreign_keys)
    )


@dataclass
class Template:
    """One real session's rows, as read from the database (column name → value)."""

    task: Row
    session: Row
    children: dict[str, list[Row]] = field(default_factory=dict)

    @classmethod
    def read(cls, orch: Orchestrator, session_id: str | None = None) -> Template:
        """The rows of `session_id`, or of the only finished session (the demo's)."""
        if session_id is None:
            [found] = orch.list_sessions(include_finished=True, limit=2)
            session_id = found.id
        with orch.db.read() as conn:
            session = (
                conn.execute(sa.select(schema.sessions).where(schema.sessions.c.id == session_id))
                .mappings()
                .one()
            )
            task = (
                conn.execute(sa.select(schema.tasks).where(schema.tasks.c.id == session["task_id"]))
                .mappings()
                .one()
            )
            children = {
                t.name: [
                    dict(r)
                    for r in conn.execute(
                        sa.select(t).where(session_fk(t) == session_id).order_by(*t.primary_key)
                    ).mappings()
                ]
                for t in child_tables()
            }
        return cls(dict(task), dict(session), children)

    def tiny(self) -> Template:
        """The same session with its JSON state emptied: the tiny-state control."""
        session = dict(self.session)
        for column in schema.sessions.columns:
            value = session.get(column.name)
            if isinstance(value, dict):
                session[column.name] = {"design": "# bench"} if column.name == "context" else {}
            elif isinstance(value, list):
                session[column.name] = []
        return Template(self.task, session, self.children)

    def session_json(self) -> str:
        """The session row as one JSON text: the floor's payload of the same size."""
        return json.dumps(self.session, default=str)

    def event_json(self) -> str:
        """A typical event row (the median-sized one) as JSON text: the floor's insert."""
        events = sorted(
            self.children.get("events", []), key=lambda r: len(json.dumps(r, default=str))
        )
        return json.dumps(events[len(events) // 2], default=str) if events else "{}"

    def sizes(self) -> dict[str, int]:
        """The template's rows: counts, and sizes in bytes of JSON text (`*_json_bytes`)."""
        out = {"session_row_json_bytes": len(self.session_json())}
        for name in ("context", "results"):
            if name in self.session:
                out[f"{name}_json_bytes"] = len(json.dumps(self.session[name]))
        for name, rows in self.children.items():
            out[f"{name}_rows"] = len(rows)
            out[f"{name}_json_bytes"] = sum(len(json.dumps(r, default=str)) for r in rows)
        return out


def fresh(table: sa.Table, row: Row, refs: Mapping[str, str], own_id: str | None = None) -> Row:
    """`row` with new ids: primary keys, foreign keys to `refs` (table → id), unique names."""
    out = dict(row)
    for column in table.columns:
        if column.name not in out:
            continue
        targets = [fk.column.table.name for fk in column.foreign_keys]
        if targets and targets[0] in refs:
            out[column.name] = refs[targets[0]]
        elif column.primary_key and isinstance(out[column.name], int):
            del out[column.name]  # autoincrement: the database numbers it
        elif column.primary_key:
            out[column.name] = own_id or uuid.uuid4().hex
        elif column.unique and isinstance(out[column.name], str):
            out[column.name] = f"{out[column.name]}-{uuid.uuid4().hex[:8]}"
    return out


def insert_task(orch: Orchestrator, template: Template) -> str:
    """A copy of the template's task (new id and name); its id."""
    task_id = uuid.uuid4().hex
    with orch.db.write() as conn:
        conn.execute(sa.insert(schema.tasks), [fresh(schema.tasks, template.task, {}, task_id)])
    return task_id


def placement(orch: Orchestrator, phase: str, at: datetime) -> Row:
    """The columns that place a copy in `phase`, waiting since `at` (as the engine stores them)."""
    wf = orch.project.workflow()
    return {
        "phase": phase,
        "waiting_on": None if wf.is_final(phase) else phase_claim_key(wf, phase),
        "phase_entered_at": at,
        "updated_at": at,
    }


def clone_sessions(
    orch: Orchestrator,
    template: Template,
    count: int,
    place: Placement,
    *,
    tables: Collection[str] = ("events",),
    task_id: str | None = None,
    batch: int = 500,
) -> list[str]:
    """Insert `count` copies of the template session (and its rows in `tables`); their ids."""
    unknown = set(place(0)) - set(schema.sessions.columns.keys())
    if unknown:
        raise SystemExit(f"the sessions table has no column {sorted(unknown)}; update bench/")
    task_id = task_id or insert_task(orch, template)
    children = [t for t in child_tables() if t.name in tables]
    ids = [uuid.uuid4().hex for _ in range(count)]
    engine = bulk_engine(orch)

    def insert(start: int) -> None:
        rows: dict[str, list[Row]] = {t.name: [] for t in [schema.sessions, *children]}
        for i in range(start, min(count, start + batch)):
            row = fresh(schema.sessions, template.session, {"tasks": task_id}, ids[i])
            rows["sessions"].append({**row, **place(i)})
            refs = {"sessions": ids[i], "tasks": task_id}
            for t in children:
                rows[t.name] += [fresh(t, r, refs) for r in template.children.get(t.name, [])]
        with engine.begin() as conn:
            for name, batch_rows in rows.items():
                if batch_rows:
                    conn.execute(sa.insert(schema.metadata.tables[name]), batch_rows)

    # PostgreSQL spends its time parsing and compressing JSON: two connections use both cores.
    workers = 2 if engine.dialect.name == "postgresql" else 1
    try:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(insert, range(0, count, batch)))
    finally:
        engine.dispose()
    return ids


class SharedJson:
    """`json.dumps` that serialises each shared value once (cached by identity).

    Copies share the template's dicts, so 100,000 dumps of the same context become
    one; the database still stores (and parses) every copy in full. A class, not
    a closure: psycopg caches its JSON dumpers by function.
    """

    def __init__(self) -> None:
        self.cache: dict[int, tuple[Any, str]] = {}

    def __call__(self, value: Any) -> str:
        hit = self.cache.get(id(value))
        if hit is None or hit[0] is not value:
            hit = self.cache[id(value)] = (value, json.dumps(value))
        return hit[1]


def bulk_engine(orch: Orchestrator) -> sa.Engine:
    """An engine on the orchestrator's database for bulk copies (see SharedJson)."""
    args = {"timeout": 30} if orch.db.url.startswith("sqlite") else {}
    return sa.create_engine(orch.db.url, json_serializer=SharedJson(), connect_args=args)


def column_bytes(conn: sa.Connection, table: sa.Table, where: Any, stored: bool) -> int:
    """The sum over the rows matching `where` of every column's size (see the docstring)."""

    def size(c: sa.Column[Any]) -> Any:
        return sa.func.pg_column_size(c) if stored else sa.func.length(sa.cast(c, sa.Text))

    total = sa.func.coalesce(
        sa.func.sum(sum(sa.func.coalesce(size(c), 0) for c in table.columns)), 0
    )
    return int(conn.execute(sa.select(total).where(where)).scalar_one())


def footprint(orch: Orchestrator, session_ids: list[str]) -> dict[str, Any]:
    """Mean bytes per session (session row + its events; test runs excluded), see the docstring."""
    events = schema.metadata.tables["events"]
    out: dict[str, Any] = {}
    with orch.db.read() as conn:
        kinds = [("bytes", False)] + (
            [("stored_bytes", True)] if conn.dialect.name == "postgresql" else []
        )
        for key, stored in kinds:
            row = column_bytes(conn, schema.sessions, schema.sessions.c.id.in_(session_ids), stored)
            log = column_bytes(conn, events, session_fk(events).in_(session_ids), stored)
            out[f"session_row_{key}"] = round(row / len(session_ids))
            out[f"events_{key}"] = round(log / len(session_ids))
            out[f"footprint_{key}"] = round((row + log) / len(session_ids))
    return out


@contextmanager
def demo_database(kind: str) -> Iterator[str | None]:
    """Where a demo runs: None for SQLite (its own file), else a fresh PostgreSQL database."""
    if kind == "sqlite":
        yield None
        return
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.conftest
    from tests.conftest import postgres_database

    yield from postgres_database()


def per_database(body: Callable[[str, Path, str | None], T]) -> dict[str, T | None]:
    """`body(kind, folder, url)` on SQLite, then on a fresh PostgreSQL database, each in a
    temporary folder of its own; PostgreSQL's is None without PHASEGATE_TEST_POSTGRES_URL."""
    result: dict[str, T | None] = {}
    with tempfile.TemporaryDirectory(prefix="phasegate-bench-") as tmp:
        for kind in ("sqlite", "postgresql"):
            if kind == "postgresql" and not os.environ.get("PHASEGATE_TEST_POSTGRES_URL"):
                result[kind] = None
                continue
            work = Path(tmp) / kind
            work.mkdir()
            with demo_database(kind) as url:
                result[kind] = body(kind, work, url)
    return result


@dataclass
class Demo:
    """The demo project in a temporary directory, and its session as a template."""

    root: Path
    env: dict[str, str]
    template: Template
    database_url: str


@contextmanager
def demo_project(tmp: Path, database_url: str | None = None, name: str = "demo") -> Iterator[Demo]:
    """Run the demo in `tmp/name` (on `database_url`, default its own SQLite file).

    While in use, this process's PHASEGATE_CONFIG_DIR is the demo's (the audit key
    of its database is there), so orchestrators opened here can write to it, and
    PHASEGATE_DATABASE_URL is unset (the database is the one given here).
    """
    config = tmp / "config"
    env = demo_env(config, database_url)
    root = tmp / name
    with environ(PHASEGATE_CONFIG_DIR=str(config), PHASEGATE_DATABASE_URL=None):
        run_demo(root, env)
        orch = open_demo(root, database_url)
        try:
            template = Template.read(orch)
            url = database_url or orch.project.database_url
        finally:
            orch.close()
        yield Demo(root, env, template, url)


@contextmanager
def environ(**values: str | None) -> Iterator[None]:
    """Set (or, for None, unset) environment variables of this process, then restore them."""
    before = {name: os.environ.get(name) for name in values}
    try:
        for name, value in values.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def main() -> None:
    """Print the demo session's rows and footprint (a table, or one JSON object with --json)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="phasegate-bench-") as tmp,
        demo_project(Path(tmp)) as demo,
    ):
        orch = open_demo(demo.root)
        try:
            result = {**demo.template.sizes(), **footprint(orch, [demo.template.session["id"]])}
        finally:
            orch.close()
    if args.json:
        print(json.dumps(result))
        return
    print("the demo session as stored (SQLite; aim: footprint <= 8,192 B)")
    for key, value in result.items():
        print(f"  {key:<28}{value:>10,}")


if __name__ == "__main__":
    main()
