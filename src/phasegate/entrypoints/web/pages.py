"""The dashboard's HTML: login, the sessions list, the session page, and their live fragments."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio.to_thread
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from phasegate.entrypoints.web.auth import (
    COOKIE_MAX_AGE_S,
    COOKIE_NAME,
    LOGIN_COOKIE_NAME,
    Caller,
    check_login_nonce,
    new_login_nonce,
    same_site_path,
    set_login_nonce,
)
from phasegate.entrypoints.web.errors import (
    error_body,
    error_status,
    is_expected,
    login_redirect,
    read_form,
)
from phasegate.entrypoints.web.listing import SECTIONS, Page, build_sections
from phasegate.entrypoints.web.render import highlight_css
from phasegate.entrypoints.web.session_page import CHANGE_MODES, session_page_context
from phasegate.entrypoints.web.state import WebState, web_state
from phasegate.errors import Conflict, InvalidInput, PermissionDenied, Unauthenticated
from phasegate.orchestrator import HUMAN_ACTIONS
from phasegate.store.queries import Keyset

TEMPLATES = Path(__file__).parent / "templates"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; "
    "base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
PageHandler = Callable[[Request, WebState, Caller], Awaitable[Response]]


class Pages:
    """Renders templates with autoescape on and the security headers set."""

    def __init__(self) -> None:
        self.env = Environment(
            loader=FileSystemLoader(TEMPLATES),
            autoescape=select_autoescape(default=True, default_for_string=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["short"] = lambda v: (v or "")[:8]
        self.env.filters["duration"] = _duration

    def render(self, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        html = self.env.get_template(name).render(**context)
        return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


def page(handler: PageHandler) -> Callable[[Request], Awaitable[Response]]:
    """A human page: log-in redirect without a login, 403 for agents, errors as pages."""

    async def endpoint(request: Request) -> Response:
        state = web_state(request)
        try:
            caller = await state.auth.human(request)
            return await handler(request, state, caller)
        except Unauthenticated:
            return login_redirect(request)
        except Exception as exc:
            if not is_expected(exc):
                raise
            return state.pages.render(
                "error.html", status=error_status(exc), error=error_body(exc)["error"], caller=None
            )

    return endpoint


def _page(request: Request, section: str) -> Page:
    """The page of a section the query asks for (`human_after=…`, `agents_before=…`)."""
    after = request.query_params.get(f"{section}_after")
    before = request.query_params.get(f"{section}_before")
    return Page(
        after=Keyset.parse(after) if after else None,
        before=Keyset.parse(before) if before and not after else None,
    )


async def _sections(request: Request, state: WebState) -> dict[str, Any]:
    pages = {k: _page(request, k) for k in SECTIONS}
    sections = await anyio.to_thread.run_sync(build_sections, state.orch, pages)
    return {"sections": sections, "query": request.url.query}


@page
async def index(request: Request, state: WebState, caller: Caller) -> Response:
    return state.pages.render(
        "index.html", caller=caller, csrf=_csrf(state, caller), **await _sections(request, state)
    )


@page
async def sessions_fragment(request: Request, state: WebState, caller: Caller) -> Response:
    return state.pages.render("_sections.html", **await _sections(request, state))


async def _session_context(request: Request, state: WebState) -> dict[str, Any]:
    ref = request.path_params["session_id"]
    changes = request.query_params.get("changes", "")
    if changes not in CHANGE_MODES:
        raise InvalidInput(
            f"unknown changes view {changes!r}; use changes=all or changes=since-review"
        )
    decided = request.query_params.get("decided", "")
    session = await anyio.to_thread.run_sync(state.orch.get, ref)
    return await anyio.to_thread.run_sync(
        lambda: session_page_context(
            state.orch,
            session,
            changes=changes,
            decided=int(decided) if decided.isdigit() else None,
        )
    )


@page
async def session_page(request: Request, state: WebState, caller: Caller) -> Response:
    context = await _session_context(request, state)
    return state.pages.render(
        "session.html", caller=caller, csrf=_csrf(state, caller), problem=None, **context
    )


@page
async def session_fragment(request: Request, state: WebState, caller: Caller) -> Response:
    part = "_session_history.html" if request.query_params.get("part") == "history" else None
    return state.pages.render(
        part or "_session_live.html", **await _session_context(request, state)
    )


@page
async def decide(request: Request, state: WebState, caller: Caller) -> Response:
    """POST /sessions/{id}/decide: approve, reject… with the version the human saw."""
    form = await read_form(request)
    if caller.via_cookie and not state.signer.csrf_ok(caller.nonce, form.get("csrf_token")):
        raise PermissionDenied("this form's CSRF token is missing or stale; reload the page")
    action = form.get("action", "")
    if action not in HUMAN_ACTIONS:
        raise InvalidInput(f"unknown action {action!r}; use one of {', '.join(HUMAN_ACTIONS)}")
    await state.auth.decider(request, caller)
    raw_version = form.get("expected_version", "")
    if not raw_version.isdigit():
        raise InvalidInput("the form lacks the session version you saw; reload the page")
    session_id = await anyio.to_thread.run_sync(
        state.orch.resolve_session_id, request.path_params["session_id"]
    )
    try:
        decided = await anyio.to_thread.run_sync(
            lambda: state.orch.decide(
                session_id,
                action,
                caller.principal,
                comment=form.get("comment", ""),
                expected_version=int(raw_version),
            )
        )
    except Conflict as exc:
        context = await _session_context(request, state)
        return state.pages.render(
            "session.html",
            status=409,
            caller=caller,
            csrf=_csrf(state, caller),
            problem=exc.message,
            **context,
        )
    state.metrics.observe_decision(action)
    # The page after the redirect confirms the decision from the event at this version.
    return RedirectResponse(f"/sessions/{session_id}?decided={decided.version}", status_code=303)


def _csrf(state: WebState, caller: Caller) -> str:
    return state.signer.csrf_token(caller.nonce) if caller.via_cookie else ""


async def login_form(request: Request) -> Response:
    state = web_state(request)
    nonce = new_login_nonce()
    response = state.pages.render(
        "login.html",
        next=same_site_path(request.query_params.get("next")),
        login_csrf=nonce,
        problem=None,
        caller=None,
    )
    return set_login_nonce(response, request, nonce)


async def login(request: Request) -> Response:
    """POST /login: a human token in, a signed HttpOnly SameSite=Strict cookie out."""
    state = web_state(request)
    try:
        form = await read_form(request)
        check_login_nonce(request, form, "the login form expired; reload the page and try again")
        token = form.get("token", "").strip()
        principal = await anyio.to_thread.run_sync(state.orch.authenticate, token)
        if not principal.is_human:
            raise PermissionDenied(
                "that is an agent token; log in with a human token "
                "(the one `phasegate init` printed, or `phasegate token add --human`)"
            )
        await state.auth.second_factor(principal, form.get("passphrase") or None)
    except Exception as exc:
        if not is_expected(exc):
            raise
        return state.pages.render(
            "login.html",
            status=error_status(exc),
            problem=str(exc),
            next=same_site_path(request.query_params.get("next")),
            login_csrf=request.cookies.get(LOGIN_COOKIE_NAME, ""),
            caller=None,
        )
    response = RedirectResponse(same_site_path(form.get("next")), status_code=303)
    response.set_cookie(
        COOKIE_NAME,
        state.signer.login_cookie(token),
        max_age=COOKIE_MAX_AGE_S,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    response.delete_cookie(LOGIN_COOKIE_NAME)
    return response


@page
async def logout(request: Request, state: WebState, caller: Caller) -> Response:
    form = await read_form(request)
    if caller.via_cookie and not state.signer.csrf_ok(caller.nonce, form.get("csrf_token")):
        raise PermissionDenied("this form's CSRF token is missing or stale; reload the page")
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE_NAME)
    return response


async def highlight_stylesheet(request: Request) -> Response:
    return Response(
        highlight_css(), media_type="text/css", headers={"Cache-Control": "public, max-age=3600"}
    )


def _duration(seconds: float) -> str:
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"


def routes() -> list[Route]:
    return [
        Route("/", index, methods=["GET"]),
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/fragments/sessions", sessions_fragment, methods=["GET"]),
        Route("/sessions/{session_id}", session_page, methods=["GET"]),
        Route("/sessions/{session_id}/fragment", session_fragment, methods=["GET"]),
        Route("/sessions/{session_id}/decide", decide, methods=["POST"]),
        Route("/highlight.css", highlight_stylesheet, methods=["GET"]),
    ]
