"""Server-sent events at /api/events: every committed change, from any process, live.

Each message is `event: change`, and its id is the feed's position after it
(`FeedPosition.token`: the highest event id, then any lower ids that may still
commit). A reconnecting browser sends it back as `Last-Event-ID` and is sent
exactly what it had not had, each event once: what it missed, from the events
table, then the live feed. A new client's `ready` message carries the position
it starts from, so even a reconnect before its first change misses nothing.
When the server starts shutting down every stream ends at once (a clean end of
the response, not a cut connection), and the browser reconnects.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import anyio
import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from phasegate.entrypoints.web.errors import api_error, is_expected
from phasegate.entrypoints.web.state import WebState, web_state
from phasegate.feed import FeedPosition
from phasegate.orchestrator import Orchestrator
from phasegate.store import queries as q

KEEPALIVE_S = 15.0
REPLAY_PAGE = 500


def change_message(event: dict[str, Any], position: FeedPosition) -> str:
    """One SSE message for one event row: what changed, to which version, by whom."""
    created = event.get("created_at")
    data = {
        "id": event["id"],
        "session_id": event["session_id"],
        "version": event["version"],
        "action": event["action"],
        "from_phase": event["from_phase"],
        "phase": event["to_phase"],
        "actor_kind": event["actor_kind"],
        "actor": event["actor_id"],
        "at": created.isoformat() if isinstance(created, datetime) else created,
    }
    return f"id: {position.token}\nevent: change\ndata: {json.dumps(data)}\n\n"


def _missed_page(
    orch: Orchestrator, had: FeedPosition, delivered: FeedPosition, after_id: int
) -> list[dict[str, Any]]:
    """Events above `after_id` the feed had delivered and the client had not had, a page."""
    with orch.db.read() as conn:
        return q.events_by_id(
            conn,
            max(had.last, after_id),
            also=[i for i in had.pending if i > after_id],
            through_id=delivered.last,
            excluding=delivered.pending,
            limit=REPLAY_PAGE,
        )


async def _missed(
    orch: Orchestrator, had: FeedPosition, delivered: FeedPosition
) -> AsyncIterator[tuple[dict[str, Any], FeedPosition]]:
    """What a reconnecting client missed, in id order, each with its position after it."""
    after_id = 0
    while True:
        page = await anyio.to_thread.run_sync(_missed_page, orch, had, delivered, after_id)
        for event in page:
            after_id = int(event["id"])
            yield event, had.union(delivered.upto(after_id))
        if len(page) < REPLAY_PAGE:
            return


async def _stream(
    state: WebState, session_filter: str | None, had: FeedPosition | None
) -> AsyncIterator[str]:
    with state.feed.follow() as (delivered, deliveries):
        state.metrics.sse_clients.inc()
        try:
            if had is None:
                yield f"retry: 1000\nid: {delivered.token}\nevent: ready\ndata: {{}}\n\n"
            else:
                # A position past this feed's (a reset database, another server) can't hide
                # events: the client may be sent a few again, never too few.
                had = had.upto(delivered.last)
                yield "retry: 1000\nevent: ready\ndata: {}\n\n"
                async for event, position in _missed(state.orch, had, delivered):
                    if session_filter in (None, event["session_id"]):
                        yield change_message(event, position)
            while True:
                with anyio.move_on_after(KEEPALIVE_S) as scope, state.draining.cutting(scope):
                    event, position = await deliveries.receive()
                if state.draining.is_set():
                    return  # the server shuts down: the stream ends, the client reconnects
                if scope.cancelled_caught:
                    yield ": keepalive\n\n"
                    continue
                if had is not None:
                    if had.has(int(event["id"])):
                        continue  # it had this one before it reconnected
                    position = had.union(position)
                if session_filter in (None, event["session_id"]):
                    yield change_message(event, position)
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            return  # the feed closed this stream (shutdown, or we fell behind): client reconnects
        finally:
            state.metrics.sse_clients.dec()


async def events(request: Request) -> Response:
    """GET /api/events[?session=<id>]: a text/event-stream of changes."""
    state = web_state(request)
    try:
        await state.auth.human(request)
        session_filter = request.query_params.get("session") or None
        if session_filter is not None:
            session_filter = await anyio.to_thread.run_sync(
                state.orch.resolve_session_id, session_filter
            )
    except Exception as exc:
        if not is_expected(exc):
            raise
        return api_error(exc)
    had = FeedPosition.parse(request.headers.get("last-event-id", ""))
    return StreamingResponse(
        _stream(state, session_filter, had),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
