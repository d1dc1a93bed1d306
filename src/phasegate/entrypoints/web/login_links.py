"""One-time login links: a short-lived, single-use code that logs one human in once.

`phasegate demo` and `phasegate login-link` print `…/login/link#code=…`. The
code travels in the URL's fragment, which browsers never send to the server,
so it appears in no access log, proxy log or Referer. The page at
`/login/link` hands it over with a form POST (static/login-link.js), and the
server trades it for the usual signed login cookie. Only the code's hash is
stored; it lasts ten minutes and works once. The long-lived token is never
put in a URL.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from urllib.parse import quote

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from phasegate import credentials
from phasegate.domain.principal import Principal, PrincipalKind
from phasegate.entrypoints.web.auth import (
    COOKIE_MAX_AGE_S,
    COOKIE_NAME,
    LOGIN_COOKIE_NAME,
    check_login_nonce,
    new_login_nonce,
    same_site_path,
    set_login_nonce,
)
from phasegate.entrypoints.web.errors import (
    MalformedBody,
    error_body,
    error_status,
    is_expected,
    read_form,
)
from phasegate.entrypoints.web.state import WebState, web_state
from phasegate.errors import InvalidInput, NotFound, PermissionDenied, PhasegateError
from phasegate.orchestrator import Orchestrator
from phasegate.store import login_links as store
from phasegate.store import queries as q
from phasegate.store.login_links import LinkHolder, LinkRefusal

LINK_PATH = "/login/link"
LINK_TTL = timedelta(minutes=10)


class LoginLinkGone(PhasegateError):
    """A login link that worked once already, or expired: it never will again."""

    http_status = 410
    code = "login_link_gone"


class LoginLinkInvalid(InvalidInput):
    """A login link whose code was never issued (cut off, mistyped) or is missing."""

    http_status = 400
    code = "login_link_invalid"


def issue_login_link(
    orch: Orchestrator, human: Principal, server_url: str, next_path: str = "/"
) -> str:
    """A new one-time link for `human` to the server at `server_url`, landing on `next_path`."""
    if not human.is_human:
        raise PermissionDenied(f"{human.name} is an agent; login links are for humans")
    if orch.principals.has_passphrase(human):
        raise PermissionDenied(
            f"{human.name} has a passphrase, which a link can't carry; log in at "
            f"{server_url.rstrip('/')}/login with your token and passphrase"
        )
    code = secrets.token_urlsafe(32)
    now = orch.clock()
    with orch.db.write() as conn:
        store.insert_login_link(conn, credentials.hash_token(code), human.id, now, now + LINK_TTL)
    landing = "" if next_path == "/" else f"?next={quote(next_path, safe='/')}"
    return f"{server_url.rstrip('/')}{LINK_PATH}{landing}#code={code}"


def active_human(orch: Orchestrator, name: str) -> Principal:
    """The active human principal called `name`; NotFound if there is none."""
    with orch.db.read() as conn:
        row = q.principal_by_name(conn, name)
    if row is None or row["kind"] != PrincipalKind.HUMAN or row["revoked_at"] is not None:
        raise NotFound(f"no active human named {name!r}; see `phasegate token ls`")
    return Principal(row["id"], row["name"], PrincipalKind.HUMAN, tuple(row["roles"]))


def how_to_get_a_new_link(request: Request) -> str:
    base = str(request.base_url).rstrip("/")
    return (
        f"run `phasegate login-link --url {base}` in the project for a new link, "
        f"or log in with your token at {base}/login"
    )


def _refusal_error(refusal: LinkRefusal, request: Request) -> PhasegateError:
    again = how_to_get_a_new_link(request)
    minutes = int(LINK_TTL.total_seconds() // 60)
    if refusal is LinkRefusal.USED:
        return LoginLinkGone(f"this login link was used already (each works once); {again}")
    if refusal is LinkRefusal.EXPIRED:
        return LoginLinkGone(f"this login link expired (links last {minutes} minutes); {again}")
    if refusal is LinkRefusal.REVOKED:
        return LoginLinkGone(f"this login link's token was revoked; {again}")
    return LoginLinkInvalid(f"this login link is not valid (cut off or mistyped?); {again}")


async def link_page(request: Request) -> Response:
    """GET /login/link: a page whose script posts the code from the URL's fragment."""
    state = web_state(request)
    nonce = new_login_nonce()
    response = state.pages.render(
        "login_link.html",
        next=same_site_path(request.query_params.get("next")),
        login_csrf=nonce,
        caller=None,
    )
    return set_login_nonce(response, request, nonce)


async def exchange(request: Request) -> Response:
    """POST /login/link: a valid code in, the login cookie out; else a page that says why."""
    state = web_state(request)
    try:
        try:
            form = await read_form(request, limit=4096)
        except MalformedBody:
            raise LoginLinkInvalid("the login form is not valid url-encoded data") from None
        check_login_nonce(
            request, form, "the login page expired before it was sent; open the login link again"
        )
        holder = await anyio.to_thread.run_sync(_consume, state, form.get("code", "").strip())
        if isinstance(holder, LinkRefusal):
            raise _refusal_error(holder, request)
        await _refuse_when_a_passphrase_is_needed(state, holder, request)
    except Exception as exc:
        if not is_expected(exc):
            raise
        return state.pages.render(
            "error.html",
            status=error_status(exc),
            error=error_body(exc)["error"],
            heading="This login link can't log you in",
            login_again=True,
            caller=None,
        )
    response = RedirectResponse(same_site_path(form.get("next")), status_code=303)
    response.set_cookie(
        COOKIE_NAME,
        state.signer.login_cookie_for_hash(holder.token_hash),
        max_age=COOKIE_MAX_AGE_S,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    response.delete_cookie(LOGIN_COOKIE_NAME)
    return response


def _consume(state: WebState, code: str) -> LinkHolder | LinkRefusal:
    if not code:
        return LinkRefusal.UNKNOWN
    with state.orch.db.write() as conn:
        return store.consume_login_link(conn, credentials.hash_token(code), state.orch.clock())


async def _refuse_when_a_passphrase_is_needed(
    state: WebState, holder: LinkHolder, request: Request
) -> None:
    """A link is one factor: a guarded server, or a human with a passphrase, needs the form."""
    human = Principal(holder.principal_id, holder.name, PrincipalKind.HUMAN)
    needs = state.auth.guarded or await anyio.to_thread.run_sync(
        state.orch.principals.has_passphrase, human
    )
    if needs:
        base = str(request.base_url).rstrip("/")
        raise PermissionDenied(
            f"this server asks for your passphrase too; log in at {base}/login with your "
            "token and passphrase"
        )


def routes() -> list[Route]:
    return [
        Route(LINK_PATH, link_page, methods=["GET"]),
        Route(LINK_PATH, exchange, methods=["POST"]),
    ]
