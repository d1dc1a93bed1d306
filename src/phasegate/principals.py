"""Principals: creating humans and agents with their tokens, and authenticating tokens."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy.exc import IntegrityError

from phasegate import credentials
from phasegate.domain.principal import Principal, PrincipalKind
from phasegate.errors import Conflict, InvalidInput, NotFound, Unauthenticated
from phasegate.store import queries as q
from phasegate.store.database import Database
from phasegate.timekeeping import Clock


class Principals:
    """The principals of one database. Tokens are shown once and stored hashed."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    def add(self, kind: str, name: str, roles: Sequence[str] = ()) -> tuple[Principal, str]:
        """Create a human or agent principal; return it and its token (shown once)."""
        if kind not in ("human", "agent"):
            raise InvalidInput(f"unknown principal kind {kind!r}; use human or agent")
        if not name.strip() or len(name) > 200:
            raise InvalidInput("a principal needs a name of 1 to 200 characters")
        if kind == "agent" and not roles:
            raise InvalidInput(f"agent {name!r} needs at least one --role (tester, coder, runner…)")
        token = credentials.mint_token(kind)
        principal = Principal(uuid.uuid4().hex, name, PrincipalKind(kind), tuple(roles))
        row = {
            "id": principal.id,
            "name": name,
            "kind": kind,
            "roles": list(roles),
            "token_hash": credentials.hash_token(token),
            "created_at": self.clock(),
        }
        try:
            with self.db.write() as conn:
                q.insert_principal(conn, row)
        except IntegrityError:
            raise Conflict(
                f"a principal named {name!r} already exists; pick another name "
                "or revoke it first (phasegate token revoke)"
            ) from None
        return principal, token

    def unused_name(self, name: str) -> str:
        """`name`, or `name-2`, `name-3`… if a principal already has it."""
        taken = {p["name"] for p in self.list()}
        candidate, n = name, 2
        while candidate in taken:
            candidate, n = f"{name}-{n}", n + 1
        return candidate

    def authenticate(self, token: str | None) -> Principal:
        """The principal holding `token`; Unauthenticated if none does."""
        if not token:
            raise Unauthenticated("no token given; pass your phasegate token (see phasegate init)")
        with self.db.read() as conn:
            row = q.principal_by_token_hash(conn, credentials.hash_token(token))
        if row is None:
            raise Unauthenticated(
                "that token is unknown or revoked; ask for a new one (phasegate token add)"
            )
        return Principal(row["id"], row["name"], PrincipalKind(row["kind"]), tuple(row["roles"]))

    def list(self) -> list[dict[str, Any]]:
        with self.db.read() as conn:
            rows = q.list_principals(conn)
        return [
            {
                "name": r["name"],
                "kind": r["kind"],
                "roles": r["roles"],
                "created_at": r["created_at"].isoformat(),
                "revoked": r["revoked_at"] is not None,
            }
            for r in rows
        ]

    def revoke(self, name: str) -> None:
        with self.db.write() as conn:
            if not q.revoke_principal(conn, name, self.clock()):
                raise NotFound(f"no active principal named {name!r}; see phasegate token ls")
