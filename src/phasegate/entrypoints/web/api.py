"""The JSON API under /api: list, show, timeline, test runs, diff, start, decide."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from phasegate.entrypoints.web.auth import Caller
from phasegate.entrypoints.web.errors import api_error, is_expected, parse_json
from phasegate.entrypoints.web.models import Decision, SessionBrief, StartSession
from phasegate.entrypoints.web.state import WebState, web_state
from phasegate.errors import Conflict, InvalidInput, PermissionDenied
from phasegate.orchestrator import HUMAN_ACTIONS
from phasegate.store.queries import Keyset
from phasegate.workspace import diff_between

T = TypeVar("T")
Handler = Callable[[Request], Awaitable[Response]]
MAX_PAGE = 500


async def run(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a blocking orchestrator call off the event loop."""
    return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))


def api_endpoint(handler: Callable[[Request, WebState, Caller], Awaitable[Response]]) -> Handler:
    """Authenticate a human, check CSRF for cookie writes, and turn errors into JSON."""

    @functools.wraps(handler)
    async def endpoint(request: Request) -> Response:
        state = web_state(request)
        try:
            caller = await state.auth.human(request)
            if caller.via_cookie and request.method not in ("GET", "HEAD"):
                token = request.headers.get("x-csrf-token")
                if not state.signer.csrf_ok(caller.nonce, token):
                    raise PermissionDenied("missing or wrong X-CSRF-Token header; reload the page")
            return await handler(request, state, caller)
        except Exception as exc:
            if not is_expected(exc):
                raise
            return api_error(exc)

    return endpoint


def query_int(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise InvalidInput(f"query parameter {name} must be an integer from {low} to {high}")
    return int(raw)


def query_bool(request: Request, name: str) -> bool:
    raw = request.query_params.get(name, "false").lower()
    if raw not in ("true", "false", "1", "0", ""):
        raise InvalidInput(f"query parameter {name} must be true or false")
    return raw in ("true", "1")


@api_endpoint
async def list_sessions(request: Request, state: WebState, caller: Caller) -> Response:
    limit = query_int(request, "limit", 50, 1, MAX_PAGE)
    if "offset" in request.query_params:
        raise InvalidInput(
            "offset paging is gone: pass after=<next> from the previous page (keyset paging)"
        )
    phase = request.query_params.get("phase") or None
    if phase is not None and phase not in state.known_phases():
        raise InvalidInput(f"unknown phase {phase!r}; use one of {', '.join(state.known_phases())}")
    sessions = await run(
        state.orch.list_sessions,
        include_finished=query_bool(request, "include_finished"),
        needs_human=query_bool(request, "needs_human"),
        phase=phase,
        task=request.query_params.get("task") or None,
        limit=limit + 1,
        after=request.query_params.get("after") or None,
    )
    page = sessions[:limit]
    return JSONResponse(
        {
            "sessions": [state.orch.view(s) for s in page],
            "limit": limit,
            "next": Keyset.of(page[-1]).token if len(sessions) > limit else None,
        }
    )


@api_endpoint
async def start_session(request: Request, state: WebState, caller: Caller) -> Response:
    body = await parse_json(request, StartSession)
    session = await run(
        state.orch.start_session,
        body.task,
        caller.principal,
        workflow=body.workflow,
        idempotency_key=body.idempotency_key,
        again=body.again,
    )
    return JSONResponse(state.orch.view(session), status_code=201)


@api_endpoint
async def show_session(request: Request, state: WebState, caller: Caller) -> Response:
    session = await run(state.orch.get, request.path_params["session_id"])
    return JSONResponse({**state.orch.view(session), "context": dict(session.context)})


@api_endpoint
async def session_timeline(request: Request, state: WebState, caller: Caller) -> Response:
    session_id = await run(state.orch.resolve_session_id, request.path_params["session_id"])
    events = await run(state.orch.timeline, session_id)
    return JSONResponse({"session_id": session_id, "events": [jsonable_event(e) for e in events]})


@api_endpoint
async def session_test_runs(request: Request, state: WebState, caller: Caller) -> Response:
    session_id = await run(state.orch.resolve_session_id, request.path_params["session_id"])
    runs = await run(state.orch.test_runs, session_id)
    return JSONResponse(
        {"session_id": session_id, "runs": [{k: _jsonable(v) for k, v in r.items()} for r in runs]}
    )


@api_endpoint
async def session_brief(request: Request, state: WebState, caller: Caller) -> Response:
    session = await run(state.orch.get, request.path_params["session_id"])
    brief = await run(state.orch.brief, session)
    body = SessionBrief(session_id=session.id, task=session.task_name, brief=brief)
    return JSONResponse(body.model_dump(mode="json"))


@api_endpoint
async def session_diff(request: Request, state: WebState, caller: Caller) -> Response:
    session = await run(state.orch.get, request.path_params["session_id"])
    head = session.context.get("head")
    diff = ""
    if head and session.base_commit and session.context.get("worktree"):
        worktree = state.orch.project.root / session.context["worktree"]
        diff = await run(diff_between, worktree, session.base_commit, head)
    return JSONResponse(
        {"session_id": session.id, "base_commit": session.base_commit, "head": head, "diff": diff}
    )


def decision_endpoint(action: str) -> Handler:
    """POST /api/sessions/{id}/<action>: one human decision, refused when stale."""

    async def decide(request: Request, state: WebState, caller: Caller) -> Response:
        body = await parse_json(request, Decision)
        await state.auth.decider(request, caller)
        session_id = await run(state.orch.resolve_session_id, request.path_params["session_id"])
        try:
            session = await run(
                state.orch.decide,
                session_id,
                action,
                caller.principal,
                comment=body.comment,
                expected_version=body.expected_version,
                idempotency_key=body.idempotency_key,
            )
        except Conflict as exc:
            current = await run(state.orch.get, session_id)
            return api_error(exc, session=state.orch.view(current))
        state.metrics.observe_decision(action)
        return JSONResponse(state.orch.view(session))

    decide.__name__ = f"decide_{action}"
    return api_endpoint(decide)


@api_endpoint
async def me(request: Request, state: WebState, caller: Caller) -> Response:
    return JSONResponse(caller.principal.to_dict())


def jsonable_event(event: dict[str, Any]) -> dict[str, Any]:
    """An event row without its hash-chain internals, datetimes as ISO text."""
    return {k: _jsonable(v) for k, v in event.items() if k not in ("prev_hash", "hash")}


def _jsonable(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value


def routes() -> list[Route]:
    sid = "/api/sessions/{session_id}"
    return [
        Route("/api/me", me, methods=["GET"]),
        Route("/api/sessions", list_sessions, methods=["GET"]),
        Route("/api/sessions", start_session, methods=["POST"]),
        Route(sid, show_session, methods=["GET"]),
        Route(f"{sid}/timeline", session_timeline, methods=["GET"]),
        Route(f"{sid}/test-runs", session_test_runs, methods=["GET"]),
        Route(f"{sid}/diff", session_diff, methods=["GET"]),
        Route(f"{sid}/brief", session_brief, methods=["GET"]),
        *(
            Route(f"{sid}/{action}", decision_endpoint(action), methods=["POST"])
            for action in HUMAN_ACTIONS
        ),
    ]
