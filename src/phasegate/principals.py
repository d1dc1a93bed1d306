"""Principals: creating humans and agents with their tokens, and authenticating tokens.

A human may also have a passphrase, the second factor a guarded server asks
for at login and with every decision. Only its scrypt hash is kept, and wrong
guesses are met with a wait that doubles after each one.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy.exc import IntegrityError

from phasegate import credentials
from phasegate.domain.principal import Principal, PrincipalKind
from phasegate.errors import Conflict, InvalidInput, NotFound, PermissionDenied, Unauthenticated
from phasegate.store import queries as q
from phasegate.store.database import Database
from phasegate.timekeeping import Clock

MIN_PASSPHRASE = 12
MAX_PASSPHRASE = 1024
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}  # ~50 ms and 16 MiB per check
_FIRST_WAIT_S, _LONGEST_WAIT_S = 1.0, 300.0


def hash_passphrase(passphrase: str) -> str:
    """`scrypt$<n>$<r>$<p>$<salt hex>$<hash hex>` of a passphrase (a random salt each time)."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(passphrase.encode(), salt=salt, dklen=32, **_SCRYPT)
    return "scrypt${n}${r}${p}$".format(**_SCRYPT) + f"{salt.hex()}${digest.hex()}"


def passphrase_matches(passphrase: str, stored: str) -> bool:
    """Whether `passphrase` is the one `stored` (a `hash_passphrase` result) was made from."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        found = hashlib.scrypt(
            passphrase.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), dklen=32
        )
    except (ValueError, MemoryError):
        return False
    return hmac.compare_digest(found.hex(), digest)


class Principals:
    """The principals of one database. Tokens are shown once and stored hashed."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock
        self._failures: dict[str, tuple[int, float]] = {}  # principal id → (count, not before)
        self._checking: set[str] = set()  # principals with a passphrase check running
        self._failures_lock = threading.Lock()

    def set_passphrase(self, name: str, passphrase: str) -> None:
        """Give a human a passphrase (or a new one); only its hash is stored."""
        if not MIN_PASSPHRASE <= len(passphrase) <= MAX_PASSPHRASE:
            raise InvalidInput(
                f"a passphrase needs {MIN_PASSPHRASE} to {MAX_PASSPHRASE} characters; "
                "a few unrelated words make a good one"
            )
        with self.db.write() as conn:
            if not q.set_passphrase_hash(conn, name, hash_passphrase(passphrase)):
                raise NotFound(f"no active human named {name!r}; see phasegate token ls")

    def has_passphrase(self, principal: Principal) -> bool:
        with self.db.read() as conn:
            return q.passphrase_hash(conn, principal.id) is not None

    def check_passphrase(self, principal: Principal, passphrase: str | None) -> None:
        """Refuse (PermissionDenied) unless `passphrase` is this human's; wrong ones cost a wait.

        After a wrong passphrase the next try is refused until a wait has passed,
        one second, then doubling (at most five minutes), and nothing else changes.
        """
        with self.db.read() as conn:
            stored = q.passphrase_hash(conn, principal.id)
        if stored is None:
            raise PermissionDenied(
                f"{principal.name} has no passphrase, and this server decides only with one; "
                f"set it on the server: phasegate token passphrase {principal.name}"
            )
        if not passphrase:  # no guess was made: nothing to count
            raise PermissionDenied("no passphrase given; decisions here need your passphrase")
        count = self._start_check(principal)  # one check at a time, each one counted
        right = False
        try:
            right = len(passphrase) <= MAX_PASSPHRASE and passphrase_matches(passphrase, stored)
        finally:
            delay = self._finish_check(principal, count, right)
        if not right:
            raise PermissionDenied(
                f"wrong passphrase for {principal.name}; the next try waits {delay:.0f} s"
            )

    def _start_check(self, principal: Principal) -> int:
        """Reserve the one passphrase check a principal may have running; the failures so far."""
        with self._failures_lock:
            count, not_before = self._failures.get(principal.id, (0, 0.0))
            wait = not_before - time.monotonic()
            if wait > 0:
                raise PermissionDenied(
                    f"too many wrong passphrases for {principal.name}; "
                    f"try again in {math.ceil(wait)} s"
                )
            if principal.id in self._checking:
                raise PermissionDenied(
                    f"a passphrase check for {principal.name} is already running; try again"
                )
            self._checking.add(principal.id)
            return count

    def _finish_check(self, principal: Principal, count: int, right: bool) -> float:
        """Record the outcome; a wrong one sets the wait before the next try (returned)."""
        delay = 0.0 if right else min(_FIRST_WAIT_S * 2**count, _LONGEST_WAIT_S)
        with self._failures_lock:
            self._checking.discard(principal.id)
            if right:
                self._failures.pop(principal.id, None)
            else:
                self._failures[principal.id] = (count + 1, time.monotonic() + delay)
        return delay

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
