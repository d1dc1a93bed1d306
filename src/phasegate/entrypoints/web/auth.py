"""Who is asking: bearer tokens, signed login cookies, CSRF tokens.

A login cookie holds the SHA-256 of the human's token (never the token), a
random nonce and an expiry, signed with the server's secret. Each request looks
the hash up again, so a revoked token logs its browsers out at once. CSRF
tokens are derived from the nonce, so they need no server-side storage.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import anyio.to_thread
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response

from phasegate import credentials
from phasegate.domain.principal import Principal, PrincipalKind
from phasegate.errors import PermissionDenied, Unauthenticated
from phasegate.orchestrator import Orchestrator
from phasegate.store import queries as q

COOKIE_NAME = "phasegate_session"
LOGIN_COOKIE_NAME = "phasegate_login"
COOKIE_MAX_AGE_S = 12 * 3600
SECRET_FILE = "web-secret"
PASSPHRASE_HEADER = "x-phasegate-passphrase"  # a decision by bearer token carries it here


def load_secret(state_dir: Path) -> bytes:
    """The signing secret: $PHASEGATE_WEB_SECRET, or a random one kept in .phasegate/ (0600)."""
    from_env = os.environ.get("PHASEGATE_WEB_SECRET")
    if from_env:
        return from_env.encode()
    path = state_dir / SECRET_FILE
    if not path.exists():
        state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    return path.read_text().strip().encode()


@dataclass(frozen=True)
class LoginSession:
    """What a valid login cookie says."""

    token_hash: str
    nonce: str
    expires_at: float


class Signer:
    """Signs and checks cookie values and CSRF tokens with one secret."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _mac(self, data: bytes) -> str:
        digest = hmac.new(self._secret, data, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def login_cookie(self, token: str, now: float | None = None) -> str:
        return self.login_cookie_for_hash(credentials.hash_token(token), now)

    def login_cookie_for_hash(self, token_hash: str, now: float | None = None) -> str:
        """A cookie for the human whose token hashes to `token_hash` (a one-time link's)."""
        payload = {
            "h": token_hash,
            "n": secrets.token_urlsafe(16),
            "e": (now or time.time()) + COOKIE_MAX_AGE_S,
        }
        body = base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")
        return f"{body}.{self._mac(body.encode())}"

    def read_login_cookie(self, value: str | None, now: float | None = None) -> LoginSession | None:
        """The session a cookie carries, or None if it is missing, forged or expired."""
        if not value or value.count(".") != 1:
            return None
        body, mac = value.split(".")
        if not hmac.compare_digest(mac, self._mac(body.encode())):
            return None
        try:
            data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
            session = LoginSession(str(data["h"]), str(data["n"]), float(data["e"]))
        except (ValueError, KeyError, TypeError):
            return None
        return session if session.expires_at > (now or time.time()) else None

    def csrf_token(self, nonce: str) -> str:
        return self._mac(b"csrf|" + nonce.encode())

    def csrf_ok(self, nonce: str, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(self.csrf_token(nonce), str(token))


def bearer_token(conn: HTTPConnection) -> str | None:
    header = conn.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


@dataclass(frozen=True)
class Caller:
    """An authenticated principal and how it proved itself (bearer or cookie)."""

    principal: Principal
    via_cookie: bool
    nonce: str = ""


class Authenticator:
    """Turns a request into a `Caller`, or raises Unauthenticated / PermissionDenied."""

    def __init__(self, orch: Orchestrator, signer: Signer, *, guarded: bool = False) -> None:
        self.orch = orch
        self.signer = signer
        self.guarded = guarded

    async def second_factor(self, principal: Principal, passphrase: str | None) -> None:
        """Check the human's passphrase where it is needed: always on a guarded server,
        and for any human who has one. A refusal changes nothing."""
        needed = self.guarded or await anyio.to_thread.run_sync(
            self.orch.principals.has_passphrase, principal
        )
        if needed:
            await anyio.to_thread.run_sync(
                self.orch.principals.check_passphrase, principal, passphrase
            )

    async def decider(self, conn: HTTPConnection, caller: Caller) -> None:
        """A decision needs the second factor: the login proved it, or the request carries it."""
        if not caller.via_cookie:
            await self.second_factor(caller.principal, _utf8(conn.headers.get(PASSPHRASE_HEADER)))

    async def caller(self, conn: HTTPConnection) -> Caller:
        token = bearer_token(conn)
        if token is not None:
            principal = await anyio.to_thread.run_sync(self.orch.authenticate, token)
            return Caller(principal, via_cookie=False)
        login = self.signer.read_login_cookie(conn.cookies.get(COOKIE_NAME))
        if login is None:
            raise Unauthenticated(
                "log in with your human token (see `phasegate init`), "
                "or send it as `Authorization: Bearer <token>`"
            )
        principal = await anyio.to_thread.run_sync(self._by_hash, login.token_hash)
        return Caller(principal, via_cookie=True, nonce=login.nonce)

    async def human(self, conn: HTTPConnection) -> Caller:
        """The caller, who must be a human: agents get 403 on every human endpoint."""
        caller = await self.caller(conn)
        if not caller.principal.is_human:
            raise PermissionDenied(
                f"{caller.principal.name} is an agent; the dashboard and the /api endpoints are "
                "for humans (agents use the MCP server at /mcp)"
            )
        return caller

    def _by_hash(self, token_hash: str) -> Principal:
        with self.orch.db.read() as conn:
            row = q.principal_by_token_hash(conn, token_hash)
        if row is None:
            raise Unauthenticated("your login is no longer valid (token revoked); log in again")
        return Principal(row["id"], row["name"], PrincipalKind(row["kind"]), tuple(row["roles"]))


# --- the login forms' own CSRF: a nonce in a cookie, echoed by the form --------------------

LOGIN_FORM_MAX_AGE_S = 600


def new_login_nonce() -> str:
    return secrets.token_urlsafe(16)


def set_login_nonce(response: Response, request: Request, nonce: str) -> Response:
    """The login form's nonce as a short-lived, strict cookie beside the form that echoes it."""
    response.set_cookie(
        LOGIN_COOKIE_NAME,
        nonce,
        max_age=LOGIN_FORM_MAX_AGE_S,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


def check_login_nonce(request: Request, form: Mapping[str, str], expired: str) -> None:
    """PermissionDenied(`expired`) unless the form echoes the login cookie's nonce."""
    expected = request.cookies.get(LOGIN_COOKIE_NAME)
    if not expected or not secrets.compare_digest(expected, form.get("login_csrf", "")):
        raise PermissionDenied(expired)


def same_site_path(target: str | None) -> str:
    """Only a path on this site: never an open redirect to another host."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _utf8(header: str | None) -> str | None:
    """A header's value sent as UTF-8 bytes (as the CLI sends a passphrase), as text.

    Headers arrive as latin-1 text; ASCII reads the same either way. Bytes that are
    not UTF-8 stay as they arrived (a wrong passphrase, refused as any other).
    """
    if header is None:
        return None
    try:
        return header.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return header
