"""One-time login links in the database: issued hashed, consumed at most once.

The code itself is never stored, only its SHA-256 (it is random, like a
token). Consuming is one guarded UPDATE, so of two browsers racing with the
same link exactly one gets in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

from sqlalchemy import Connection, delete, insert, select, update

from phasegate.store.schema import login_links, principals

#: Rows this long past their expiry are deleted when a new link is issued.
KEEP_EXPIRED = timedelta(days=1)


class LinkRefusal(Enum):
    """Why a code did not log anyone in."""

    UNKNOWN = "unknown"  # never issued (mistyped, cut off, or from another database)
    USED = "used"
    EXPIRED = "expired"
    REVOKED = "revoked"  # its human's token was revoked since


@dataclass(frozen=True)
class LinkHolder:
    """Who a consumed link logs in: the human's principal id, name and token hash."""

    principal_id: str
    name: str
    token_hash: str


def insert_login_link(
    conn: Connection, code_hash: str, principal_id: str, now: datetime, expires_at: datetime
) -> None:
    """Store a new link's code hash for a human, and drop links long expired."""
    conn.execute(delete(login_links).where(login_links.c.expires_at < now - KEEP_EXPIRED))
    conn.execute(
        insert(login_links).values(
            code_hash=code_hash,
            principal_id=principal_id,
            created_at=now,
            expires_at=expires_at,
            used_at=None,
        )
    )


def consume_login_link(conn: Connection, code_hash: str, now: datetime) -> LinkHolder | LinkRefusal:
    """Mark an unused, unexpired link used and return its holder, or say why not."""
    claimed = conn.execute(
        update(login_links)
        .where(
            login_links.c.code_hash == code_hash,
            login_links.c.used_at.is_(None),
            login_links.c.expires_at > now,
        )
        .values(used_at=now)
    )
    row = conn.execute(
        select(login_links.c.used_at, principals.c.id, principals.c.name)
        .add_columns(principals.c.token_hash, principals.c.revoked_at)
        .join(principals, principals.c.id == login_links.c.principal_id)
        .where(login_links.c.code_hash == code_hash)
    ).first()
    if row is None:
        return LinkRefusal.UNKNOWN
    if claimed.rowcount != 1:
        return LinkRefusal.USED if row.used_at is not None else LinkRefusal.EXPIRED
    if row.revoked_at is not None:
        return LinkRefusal.REVOKED
    return LinkHolder(str(row.id), str(row.name), str(row.token_hash))
