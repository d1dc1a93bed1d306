"""Server-sent events at /api/events: every committed change, from any process, live.

Each message is `event: change` with the event's id, so a reconnecting browser
sends `Last-Event-ID` and gets what it missed replayed from the events table.
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
from phasegate.orchestrator import Orchestrator
from phasegate.store import queries as q

KEEPALIVE_S = 15.0
REPLAY_LIMIT = 500


def change_message(event: dict[str, Any]) -> str:
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
    return f"id: {event['id']}\nevent: change\ndata: {json.dumps(data)}\n\n"


def _replay(orch: Orchestrator, after_id: int) -> list[dict[str, Any]]:
    with orch.db.read() as conn:
        return q.events_after(conn, after_id, limit=REPLAY_LIMIT)


async def _stream(
    state: WebState, session_filter: str | None, last_id: int | None
) -> AsyncIterator[str]:
    with state.feed.subscribe() as stream:
        state.metrics.sse_clients.inc()
        try:
            yield "retry: 1000\nevent: ready\ndata: {}\n\n"
            seen = 0
            if last_id is not None:
                for event in await anyio.to_thread.run_sync(_replay, state.orch, last_id):
                    seen = int(event["id"])
                    if session_filter in (None, event["session_id"]):
                        yield change_message(event)
            while True:
                with anyio.move_on_after(KEEPALIVE_S) as scope:
                    event = await stream.receive()
                if scope.cancelled_caught:
                    yield ": keepalive\n\n"
                    continue
                if int(event["id"]) > seen and session_filter in (None, event["session_id"]):
                    yield change_message(event)
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
    raw_last = request.headers.get("last-event-id", "")
    last_id = int(raw_last) if raw_last.isdigit() else None
    return StreamingResponse(
        _stream(state, session_filter, last_id),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
