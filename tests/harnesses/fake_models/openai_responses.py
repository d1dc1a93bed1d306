"""OpenAI Responses (`POST /v1/responses`), streamed, for Codex.

Codex declares an MCP server as one `namespace` tool (`mcp__phasegate`) with the server's
tools nested in it; the model calls one with a `function_call` item naming the function and
its namespace. The brain sees such a tool as `namespace/function`.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from starlette.responses import Response

from tests.harnesses.fake_models.brain import Call, Decide, Outcome, Reply
from tests.harnesses.fake_models.sse import sse


def _declared(tools: list[dict[str, Any]]) -> list[str]:
    names = []
    for tool in tools:
        if tool.get("type") == "namespace":
            names += [f"{tool['name']}/{fn['name']}" for fn in tool.get("tools") or []]
        elif tool.get("name"):
            names.append(str(tool["name"]))
    return names


def _qualified(item: dict[str, Any]) -> str:
    name = str(item.get("name", ""))
    return f"{item['namespace']}/{name}" if item.get("namespace") else name


def history(items: list[dict[str, Any]]) -> list[Outcome]:
    """Each function call in the input with the output Codex sent back for it."""
    calls: dict[str, dict[str, Any]] = {}
    outcomes: list[Outcome] = []
    for item in items:
        if item.get("type") == "function_call":
            calls[str(item.get("call_id"))] = item
        elif item.get("type") == "function_call_output" and item.get("call_id") in calls:
            call = calls[item["call_id"]]
            output = item.get("output")
            text = output if isinstance(output, str) else json.dumps(output)
            try:
                arguments = json.loads(call.get("arguments") or "{}")
            except ValueError:
                arguments = {}
            outcomes.append(Outcome(_qualified(call), arguments, text))
    return outcomes


def respond(body: dict[str, Any], decide: Decide) -> Response:
    """The brain's next step as one output item, in the Responses streaming events."""
    declared = _declared(body.get("tools") or [])
    items = body.get("input") or []
    step = (
        decide(declared, history(items if isinstance(items, list) else []))
        if declared
        else Reply("OK")
    )
    item: dict[str, Any]
    if isinstance(step, Call):
        namespace, _, name = step.name.rpartition("/")
        item = {
            "type": "function_call",
            "id": f"fc_{uuid.uuid4().hex[:20]}",
            "call_id": f"call_{uuid.uuid4().hex[:20]}",
            "name": name,
            "arguments": json.dumps(step.arguments),
            "status": "completed",
        }
        if namespace:
            item["namespace"] = namespace
    else:
        item = {
            "type": "message",
            "id": f"msg_{uuid.uuid4().hex[:20]}",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": step.text, "annotations": []}],
        }
    response = {
        "id": f"resp_{uuid.uuid4().hex[:20]}",
        "object": "response",
        "model": body.get("model", "fake"),
        "status": "in_progress",
        "output": [],
    }
    usage = {"input_tokens": 100, "output_tokens": 20, "total_tokens": 120}
    done = {**response, "status": "completed", "output": [item], "usage": usage}
    return sse(
        [
            ("response.created", {"type": "response.created", "response": response}),
            (
                "response.output_item.added",
                {"type": "response.output_item.added", "output_index": 0, "item": item},
            ),
            (
                "response.output_item.done",
                {"type": "response.output_item.done", "output_index": 0, "item": item},
            ),
            ("response.completed", {"type": "response.completed", "response": done}),
        ]
    )
