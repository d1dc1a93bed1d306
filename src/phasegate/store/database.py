"""Connecting to SQLite or PostgreSQL, durable transactions, and migrations."""

from __future__ import annotations

import select
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError
from sqlalchemy.pool import ConnectionPoolEntry

from phasegate.errors import StorageBusy, StorageError, StorageFull
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
        #: Where a SQLite database's files live (None for PostgreSQL or in memory).
        self.directory = _sqlite_directory(self.url) if self.dialect == "sqlite" else None
        if self.dialect == "sqlite":
            self.engine = _sqlite_engine(self.url)
        else:
            self.engine = _postgres_engine(self.url, pool_size)

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A transaction that takes the write lock up front (BEGIN IMMEDIATE on SQLite)."""
        with self._transaction(sqlite_begin="IMMEDIATE") as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self._transaction(sqlite_begin="DEFERRED") as conn:
            yield conn

    @contextmanager
    def read_one(self) -> Iterator[Connection]:
        """For one statement: on PostgreSQL no BEGIN and COMMIT, one round trip instead of three."""
        if self.dialect == "sqlite":
            with self.read() as conn:
                yield conn
            return
        with translated_errors(self.directory), self._connect(isolation_level="AUTOCOMMIT") as conn:
            yield conn

    @contextmanager
    def _transaction(self, **options: Any) -> Iterator[Connection]:
        """A transaction whose busy, full or failing database ends as a StorageError."""
        # The rollback (conn.begin's exit) runs before the error is translated.
        with translated_errors(self.directory), self._connect(**options) as conn, conn.begin():
            yield conn

    @contextmanager
    def _connect(self, **options: Any) -> Iterator[Connection]:
        try:
            conn = self.engine.connect().execution_options(**options)
        except (OperationalError, DBAPIError, sqlite3.Error) as exc:
            if (known := storage_error(exc, self.directory)) is not None:
                raise known from exc
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
        with self._transaction(sqlite_begin="IMMEDIATE") as conn:
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


BUSY = (
    f"the database is busy (another phasegate process held its write lock for more than "
    f"{SQLITE_BUSY_TIMEOUT_MS // 1000} s); try again, or look for a stuck process; "
    "nothing was changed"
)
FULL = "the disk holding the database is full; free space and try again; nothing was changed"
IO_ERROR = (
    "the database could not be read or written ({detail}); check the disk and its "
    "permissions, then try again; nothing was changed"
)
# SQLSTATEs (PostgreSQL) and message parts (SQLite) of the conditions above.
FULL_BELOW_BYTES = 1 << 20  # an I/O error with less free than this is a full disk
_PG_BUSY = {"55P03"}  # lock_not_available (a lock_timeout ran out)
_PG_FULL = {"53100"}  # disk_full
_PG_IO = {"58030"}  # io_error


def storage_error(exc: BaseException, directory: Path | None = None) -> StorageError | None:
    """Phasegate's one-line error for a busy, full or failing database; None for others.

    A broken connection is left alone: the kernel runs such a transaction again.
    SQLite often reports a full disk as a "disk I/O error" (it failed to grow
    the WAL or its shared-memory file): when the database's `directory` has
    next to no space left, that is what the error means.
    """
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return None
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    state = str(getattr(orig, "sqlstate", "") or "")
    text = str(orig).lower()
    if state in _PG_BUSY or "database is locked" in text or "database table is locked" in text:
        return StorageBusy(BUSY)
    if state in _PG_FULL or "database or disk is full" in text or "no space left" in text:
        return StorageFull(FULL)
    if state in _PG_IO or "disk i/o error" in text or "readonly database" in text:
        if directory is not None and _nearly_full(directory):
            return StorageFull(FULL)
        return StorageError(IO_ERROR.format(detail=_first_line(exc)))
    return None


@contextmanager
def translated_errors(directory: Path | None = None) -> Iterator[None]:
    """Turn a busy, full or failing database into a StorageError (after the rollback)."""
    try:
        yield
    except (DBAPIError, sqlite3.Error) as exc:
        if (known := storage_error(exc, directory)) is None:
            raise
        raise known from exc


def _nearly_full(directory: Path) -> bool:
    try:
        return shutil.disk_usage(directory).free < FULL_BELOW_BYTES
    except OSError:
        return False


def _sqlite_directory(url: str) -> Path | None:
    path = url.split(":///", 1)[1].split("?", 1)[0] if ":///" in url else ""
    return Path(path).parent if path and path != ":memory:" else None


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
