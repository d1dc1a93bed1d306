"""Anthropic Messages (`POST /v1/messages`), streamed, for Claude Code."""

from __future__ import annotations

import json
import uuid
from typing import Any

from starlette.responses import JSONResponse, Response

from tests.harnesses.fake_models.brain import Call, Decide, Outcome, Reply
from tests.harnesses.fake_models.sse import sse


def history(messages: list[dict[str, Any]]) -> list[Outcome]:
    """The tool calls in the conversation, each with the result the harness sent back."""
    calls: dict[str, dict[str, Any]] = {}
    outcomes: list[Outcome] = []
    for message in messages:
        content = message.get("content")
        if not isinstance(content, list):
            continue
        for block in content:
            if block.get("type") == "tool_use":
                calls[block["id"]] = block
            elif block.get("type") == "tool_result" and block.get("tool_use_id") in calls:
                call = calls[block["tool_use_id"]]
                outcomes.append(
                    Outcome(
                        call["name"],
                        call.get("input") or {},
                        _text(block.get("content")),
                        bool(block.get("is_error")),
                    )
                )
    return outcomes


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def respond(body: dict[str, Any], decide: Decide) -> Response:
    """The brain's next step as an assistant message; a request without tools gets text."""
    declared = [str(t.get("name")) for t in body.get("tools") or []]
    step = decide(declared, history(body.get("messages") or [])) if declared else Reply("OK")
    block: dict[str, Any]
    if isinstance(step, Call):
        block = {"type": "tool_use", "id": f"toolu_{uuid.uuid4().hex[:20]}", "name": step.name}
        stop = "tool_use"
    else:
        block = {"type": "text", "text": step.text}
        stop = "end_turn"
    message = {
        "id": f"msg_{uuid.uuid4().hex[:20]}",
        "type": "message",
        "role": "assistant",
        "model": body.get("model", "fake"),
        "stop_sequence": None,
        "usage": {"input_tokens": 100, "output_tokens": 20},
    }
    if not body.get("stream"):
        if isinstance(step, Call):
            block["input"] = step.arguments
        return JSONResponse({**message, "content": [block], "stop_reason": stop})
    if isinstance(step, Call):
        start = {**block, "input": {}}
        delta = {"type": "input_json_delta", "partial_json": json.dumps(step.arguments)}
    else:
        start = {**block, "text": ""}
        delta = {"type": "text_delta", "text": step.text}
    return sse(
        [
            (
                "message_start",
                {
                    "type": "message_start",
                    "message": {**message, "content": [], "stop_reason": None},
                },
            ),
            (
                "content_block_start",
                {"type": "content_block_start", "index": 0, "content_block": start},
            ),
            ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}),
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop, "stop_sequence": None},
                    "usage": {"output_tokens": 20},
                },
            ),
            ("message_stop", {"type": "message_stop"}),
        ]
    )


def count_tokens(body: dict[str, Any], decide: Decide) -> Response:
    """A token count (Claude Code asks before long conversations)."""
    return JSONResponse({"input_tokens": len(json.dumps(body)) // 4})
