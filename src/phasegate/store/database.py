"""Connecting to SQLite or PostgreSQL, durable transactions, and migrations."""

from __future__ import annotations

import select
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError
from sqlalchemy.pool import ConnectionPoolEntry

from phasegate.errors import StorageError
from phasegate.store.text import dumps

MIGRATIONS = Path(__file__).with_name("migrations")
SQLITE_BUSY_TIMEOUT_MS = 5000
MIGRATION_LOCK_ID = 0x70686173  # 'phas': any fixed number phasegate alone uses


def normalise_url(url: str) -> str:
    """Accept plain `postgresql://` URLs and use the psycopg 3 driver for them."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def redact(url: str) -> str:
    """The URL without its password, for error messages."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}@{host}" if user else f"{scheme}://{host}"


class Database:
    """One engine and the two kinds of transaction phasegate uses: read and write."""

    def __init__(self, url: str, *, pool_size: int = 5) -> None:
        self.display_url = redact(url)  # as the user wrote it, without a password
        self.url = normalise_url(url)
        self.dialect = "sqlite" if self.url.startswith("sqlite") else "postgresql"
        if self.dialect == "sqlite":
            self.engine = _sqlite_engine(self.url)
        else:
            self.engine = _postgres_engine(self.url, pool_size)

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A transaction that takes the write lock up front (BEGIN IMMEDIATE on SQLite)."""
        with self._connect(sqlite_begin="IMMEDIATE") as conn, conn.begin():
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self._connect(sqlite_begin="DEFERRED") as conn, conn.begin():
            yield conn

    @contextmanager
    def read_one(self) -> Iterator[Connection]:
        """For one statement: on PostgreSQL no BEGIN and COMMIT, one round trip instead of three."""
        if self.dialect == "sqlite":
            with self.read() as conn:
                yield conn
            return
        with self._connect(isolation_level="AUTOCOMMIT") as conn:
            yield conn

    @contextmanager
    def _connect(self, **options: Any) -> Iterator[Connection]:
        try:
            conn = self.engine.connect().execution_options(**options)
        except (OperationalError, DBAPIError) as exc:
            raise StorageError(
                f"can't reach the database at {self.display_url}: {_first_line(exc)}; "
                "check PHASEGATE_DATABASE_URL and that the server is running"
            ) from exc
        with conn:
            yield conn

    def migrate(self, progress: Callable[[str], None] | None = None) -> list[str]:
        """Bring the schema to the newest migration; return the revisions applied.

        One transaction holding the write lock (SQLite) or an advisory lock
        (PostgreSQL): processes starting together after an upgrade take turns,
        the first migrates and the others find nothing left to do. When the
        schema is at the newest revision already, as on almost every start, one
        read says so, without the lock and without importing alembic.
        """
        if self._at_revision(newest_revision()):
            return []
        from alembic import command
        from alembic.config import Config
        from alembic.runtime.migration import MigrationContext
        from alembic.script import ScriptDirectory

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        script = ScriptDirectory.from_config(config)
        with self._connect(sqlite_begin="IMMEDIATE") as conn, conn.begin():
            if self.dialect == "postgresql":
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_ID})")
            current = MigrationContext.configure(conn).get_current_revision()
            pending = [
                rev.revision
                for rev in reversed(list(script.walk_revisions("base", "heads")))
                if current is None or rev.revision > current
            ]
            if pending:
                if progress:
                    progress(f"applying migrations {', '.join(pending)}")
                config.attributes["connection"] = conn
                command.upgrade(config, "head")
        return pending

    def _at_revision(self, revision: str) -> bool:
        """Whether the schema's recorded migration is `revision` (False for a new database)."""
        try:
            with self.read_one() as conn:
                current = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
        except DBAPIError:  # no such table: nothing migrated yet
            return False
        return current == revision

    def dispose(self) -> None:
        self.engine.dispose()


def newest_revision() -> str:
    """The newest migration's revision: each file in versions/ is named after its own."""
    return max(path.name.split("_", 1)[0] for path in (MIGRATIONS / "versions").glob("[0-9]*_*.py"))


def _sqlite_engine(url: str) -> Engine:
    engine = create_engine(
        url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, json_serializer=dumps
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _record: ConnectionPoolEntry) -> None:
        # Let SQLAlchemy's "begin" hook choose the BEGIN mode instead of pysqlite.
        dbapi_conn.isolation_level = None
        dbapi_conn.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        _enable_wal(dbapi_conn)
        dbapi_conn.execute(
            "PRAGMA synchronous=FULL"
        )  # an acknowledged transition survives power loss
        dbapi_conn.execute("PRAGMA foreign_keys=ON")

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        # Straight to sqlite3: SQLAlchemy's statement machinery cost more than the BEGIN.
        conn.connection.driver_connection.execute(f"BEGIN {mode}")  # type: ignore[union-attr]

    return engine


def _postgres_engine(url: str, pool_size: int) -> Engine:
    """A pool whose connections are checked for life without a round trip.

    A ping per checkout (`pool_pre_ping`) would cost each transaction a round
    trip. Instead, a connection the server has closed (a restart, an
    administrator's pg_terminate_backend, an idle timeout) shows as readable
    while idle: the server's goodbye or the end of the stream is waiting in its
    socket. Such a connection is swapped for a new one at checkout. One that
    dies later is caught at its first statement, and the kernel runs the
    transaction again.
    """
    engine = create_engine(url, pool_size=pool_size, max_overflow=pool_size, json_serializer=dumps)

    @event.listens_for(engine, "checkout")
    def _check_alive(dbapi_conn: Any, _record: ConnectionPoolEntry, _proxy: Any) -> None:
        if dbapi_conn.closed or _has_pending_input(dbapi_conn.fileno()):
            raise DisconnectionError("the server closed this pooled connection")

    return engine


def _has_pending_input(fd: int) -> bool:
    """Whether an idle connection's socket has something to read (it never should)."""
    try:
        readable, _, _ = select.select([fd], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def _enable_wal(dbapi_conn: sqlite3.Connection) -> None:
    """Switch to WAL, retrying while another process holds the lock.

    Changing the journal mode needs an exclusive lock, and SQLite answers
    "database is locked" at once (no busy wait) when that could deadlock, as
    when several processes open a new database together.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    delay = 0.01
    while True:
        try:
            dbapi_conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.25)


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
