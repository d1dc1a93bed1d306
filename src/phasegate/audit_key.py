"""The audit key: kept outside the database, found at open, created on first use.

Where the key comes from, first match wins:

1. `PHASEGATE_AUDIT_KEY`: the key itself (32+ random bytes, hex or base64), for servers;
2. `PHASEGATE_AUDIT_KEY_FILE`: the path of a file holding it;
3. `<config dir>/audit-keys/<database id>.key` (mode 0600), created on first use.

The first open with a key writes the *legacy seal* (see `domain.audit`): the
signed record of the events written before the key. A sealed database needs
its key: without it, or with another one, opening fails with a one-line
`ConfigError` and nothing is written.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import os
import secrets
import string
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Connection

from phasegate.credentials import config_dir
from phasegate.domain.audit import LegacySeal, chain_key, event_mac, key_id, seal_legacy
from phasegate.errors import ConfigError, StorageError
from phasegate.store import queries as q
from phasegate.store.database import Database

ENV_KEY = "PHASEGATE_AUDIT_KEY"
ENV_KEY_FILE = "PHASEGATE_AUDIT_KEY_FILE"
DATABASE_ID = "database_id"  # meta row: written by migration 0003
SEAL = "audit_legacy_seal"  # meta row: written by the first open with a key
MIN_KEY_BYTES = 32
MAKE_ONE = "python -c 'import secrets; print(secrets.token_hex(32))'"


@dataclass(frozen=True)
class AuditKey:
    """The key one database's events are chained with, and where it came from."""

    database_id: str
    key: bytes = field(repr=False)
    source: str


def key_file(database_id: str) -> Path:
    """Where a local project's audit key lives: the user's config dir, never the repository."""
    return config_dir() / "audit-keys" / f"{database_id}.key"


def open_audit_key(db: Database) -> AuditKey:
    """This database's audit key; the first time, create it (unless configured) and seal."""
    with db.read() as conn:
        meta = _read_meta(conn, db)
    database_id = meta.get(DATABASE_ID)
    if not database_id:
        raise StorageError(
            f"the database at {db.display_url} has no id; let phasegate migrate it "
            "(it does on start) before opening it"
        )
    seal = meta.get(SEAL)
    return _sealed(database_id, seal) if seal is not None else _first_use(db, database_id)


def _sealed(database_id: str, seal_text: str) -> AuditKey:
    """The key of an already sealed database; it must be the one that sealed it."""
    found = _configured(database_id)
    if found is None:
        raise ConfigError(
            f"this database's audit key is missing: expected it in {key_file(database_id)}; "
            f"restore that file from your backup, or set {ENV_KEY} (or {ENV_KEY_FILE}) to the key"
        )
    master, source = found
    audit_key = AuditKey(database_id, chain_key(master, database_id), source)
    _promote_pending(database_id)
    seal = LegacySeal.from_json(seal_text)
    # An unreadable seal is `audit verify`'s to report; a readable one names its key.
    if seal is not None and not hmac.compare_digest(seal.key_id, key_id(audit_key.key)):
        raise ConfigError(
            f"the audit key from {source} is not this database's (it was sealed with key id "
            f"{seal.key_id}, this one is {key_id(audit_key.key)}); set the key it was created with"
        )
    return audit_key


def _first_use(db: Database, database_id: str) -> AuditKey:
    """Create or adopt the key and seal the older events, once, under the meta lock."""
    with db.write() as conn:
        q.lock_meta(conn)
        seal = q.read_meta(conn).get(SEAL)
        if seal is None:  # still unsealed now that we hold the lock
            found = _configured(database_id) or _new_local_key(database_id)
            master, source = found
            audit_key = AuditKey(database_id, chain_key(master, database_id), source)
            # A local key file gets its name only once its seal is committed: the seal was
            # removed since, and sealing again would bless whatever was inserted meanwhile.
            local = key_file(database_id)
            if not (source == str(local) and local.exists()):
                _seal(conn, audit_key.key)
    if seal is not None:  # another process sealed first
        return _sealed(database_id, seal)
    _promote_pending(database_id)
    return audit_key


class _AlreadyKeyed(Exception):
    """An event carries this key's MAC, so the database was sealed before."""


def _seal(conn: Connection, key: bytes) -> None:
    """Seal every stored event as legacy, unless some already carry this key (seal removed)."""

    def legacy_events() -> Iterator[tuple[int, str]]:
        for event in q.all_events(conn):
            if hmac.compare_digest(event_mac(key, event["prev_hash"], event), event["hash"]):
                raise _AlreadyKeyed
            yield int(event["id"]), str(event["hash"])

    try:
        seal = seal_legacy(key, legacy_events())
    except _AlreadyKeyed:
        return  # leave it unsealed: `audit verify` reports the missing record
    q.insert_meta(conn, SEAL, seal.to_json())


# --- key material ------------------------------------------------------------------


def _configured(database_id: str) -> tuple[bytes, str] | None:
    """The master key and where it came from: the environment, else the local key file."""
    text = os.environ.get(ENV_KEY, "").strip()
    if text:
        return parse_key(text, ENV_KEY), ENV_KEY
    path_text = os.environ.get(ENV_KEY_FILE, "").strip()
    if path_text:
        path = Path(path_text).expanduser()
        where = f"{ENV_KEY_FILE} ({path})"
        try:
            return _read_key(path, where), where
        except FileNotFoundError:
            raise ConfigError(f"{ENV_KEY_FILE} names {path}, which does not exist") from None
    local = key_file(database_id)
    # Pending: the seal is committed but the file not yet renamed (by now, perhaps it is).
    for path in (local, _pending(local), local):
        try:
            return _read_key(path, str(path)), str(local)
        except FileNotFoundError:
            continue
    return None


def parse_key(text: str, where: str) -> bytes:
    """A key written as hex or base64; at least 32 bytes. The message never shows the key."""
    text = text.strip()
    raw: bytes | None = None
    if len(text) % 2 == 0 and all(c in string.hexdigits for c in text):
        raw = bytes.fromhex(text)
    else:
        urlsafe = "-" in text or "_" in text
        try:
            raw = base64.b64decode(
                text + "=" * (-len(text) % 4), altchars=b"-_" if urlsafe else None, validate=True
            )
        except (binascii.Error, ValueError):
            raw = None
    if raw is None or len(raw) < MIN_KEY_BYTES:
        raise ConfigError(
            f"{where} must hold an audit key of at least {MIN_KEY_BYTES} random bytes "
            f"as hex or base64; make one with {MAKE_ONE}"
        )
    return raw


def _read_key(path: Path, where: str) -> bytes:
    """The key in a file; FileNotFoundError passes through, other failures are a ConfigError."""
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"can't read the audit key from {where}: {exc}") from exc
    return parse_key(text, where)


def _pending(path: Path) -> Path:
    return path.with_name(path.name + ".new")


def _promote_pending(database_id: str) -> None:
    """Once the seal is committed, a new key file takes its final name."""
    final = key_file(database_id)
    pending = _pending(final)
    if pending.exists() and not final.exists():
        with contextlib.suppress(FileNotFoundError):  # another process renamed it first
            os.replace(pending, final)


def _new_local_key(database_id: str) -> tuple[bytes, str]:
    """A new random key, durably on disk (mode 0600) before any seal names it."""
    final = key_file(database_id)
    final.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(final.parent, 0o700)
    pending = _pending(final)
    fd = os.open(pending, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (secrets.token_hex(MIN_KEY_BYTES) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    directory = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return _read_key(pending, str(pending)), str(final)


def _read_meta(conn: Connection, db: Database) -> dict[str, str]:
    return q.read_meta_of(conn, db.display_url)
