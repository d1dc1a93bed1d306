"""The Gemini API (`:streamGenerateContent`, `:generateContent`, `:countTokens`), for Gemini CLI.

The streamed calls are the agent's turns. `:generateContent` is a side request that wants a
JSON object back (Gemini CLI asks which model to route to and who speaks next); it gets the
smallest object its schema allows, choosing that the user speaks next.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from starlette.responses import JSONResponse, Response

from tests.harnesses.fake_models.brain import Call, Decide, Outcome, Reply
from tests.harnesses.fake_models.sse import sse

#: Enum values a side request's answer prefers, where its schema offers them.
PREFERRED = ("user", "flash")


def handler(method: str) -> Callable[[dict[str, Any], Decide], Response] | None:
    """The handler for one of the model's methods (the part of the path after `:`)."""
    return {
        "streamGenerateContent": stream_generate,
        "generateContent": generate,
        "countTokens": count_tokens,
    }.get(method)


def history(contents: list[dict[str, Any]]) -> list[Outcome]:
    """Each function call in the conversation with the response the harness sent for it."""
    pending: list[dict[str, Any]] = []
    outcomes: list[Outcome] = []
    for content in contents:
        for part in content.get("parts") or []:
            if "functionCall" in part:
                pending.append(part["functionCall"])
            elif "functionResponse" in part and pending:
                response = part["functionResponse"]
                call = next(
                    (c for c in pending if c.get("id") and c.get("id") == response.get("id")),
                    pending[0],
                )
                pending.remove(call)
                text = json.dumps(response.get("response"))
                outcomes.append(Outcome(call["name"], call.get("args") or {}, text))
    return outcomes


def _declared(body: dict[str, Any]) -> list[str]:
    return [
        str(fn.get("name"))
        for tool in body.get("tools") or []
        for fn in tool.get("functionDeclarations") or []
    ]


def _candidate(parts: list[dict[str, Any]], model: str) -> dict[str, Any]:
    return {
        "candidates": [
            {"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}
        ],
        "usageMetadata": {
            "promptTokenCount": 100,
            "candidatesTokenCount": 20,
            "totalTokenCount": 120,
        },
        "modelVersion": model,
    }


def stream_generate(body: dict[str, Any], decide: Decide) -> Response:
    """The agent's next turn: one function call, or its closing text."""
    declared = _declared(body)
    step = decide(declared, history(body.get("contents") or [])) if declared else Reply("OK")
    if isinstance(step, Call):
        parts: list[dict[str, Any]] = [
            {"functionCall": {"name": step.name, "args": step.arguments}}
        ]
    else:
        parts = [{"text": step.text}]
    return sse([(None, _candidate(parts, "gemini-fake"))])


def generate(body: dict[str, Any], decide: Decide) -> Response:
    """A side request: the smallest JSON its schema allows, or a short text."""
    config = body.get("generationConfig") or {}
    schema = config.get("responseJsonSchema") or config.get("responseSchema")
    text = json.dumps(_minimal(schema)) if schema else "OK"
    return JSONResponse(_candidate([{"text": text}], "gemini-fake"))


def _minimal(schema: dict[str, Any]) -> Any:
    """A value of `schema` (its required properties only); enums choose PREFERRED values."""
    enum = schema.get("enum")
    if enum:
        return next((v for v in PREFERRED if v in enum), enum[0])
    kind = str(schema.get("type", "object")).lower()
    if kind == "object":
        properties = schema.get("properties") or {}
        return {name: _minimal(properties.get(name, {})) for name in schema.get("required") or []}
    # Numbers take their minimum, else 1: Gemini CLI's router wants a score from 1 to 100.
    low = schema.get("minimum", 1)
    return {"string": "ok", "array": [], "boolean": False, "integer": low, "number": low}.get(kind)


def count_tokens(body: dict[str, Any], decide: Decide) -> Response:
    """A rough token count."""
    return JSONResponse({"totalTokens": len(json.dumps(body)) // 4})
