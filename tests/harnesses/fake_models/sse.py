"""Server-Sent Events as the vendors stream them: all events at once, in one response."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from starlette.responses import Response


def sse(events: Sequence[tuple[str | None, dict[str, Any]]]) -> Response:
    """A `text/event-stream` response; an event without a name has only its `data:` line."""
    chunks = []
    for name, data in events:
        head = f"event: {name}\n" if name else ""
        chunks.append(f"{head}data: {json.dumps(data)}\n\n")
    return Response("".join(chunks), media_type="text/event-stream")
