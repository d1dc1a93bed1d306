"""The OpenAPI 3.1 document of the JSON API, built from the pydantic models in `models.py`."""

from __future__ import annotations

from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from pydantic import BaseModel

from phasegate.entrypoints.web import models as m
from phasegate.orchestrator import HUMAN_ACTIONS

REF = "#/components/schemas/{model}"
SCHEMAS: tuple[type[BaseModel], ...] = (
    m.StartSession,
    m.Decision,
    m.ErrorResponse,
    m.SessionView,
    m.SessionDetail,
    m.SessionPage,
    m.Timeline,
    m.TestRuns,
    m.SessionDiff,
    m.SessionBrief,
    m.Me,
    m.Health,
)
ACTION_SUMMARY = {
    "approve": "Approve the gate the session waits at",
    "reject": "Reject the gate with a comment (required)",
    "retry": "Give guidance and a fresh fix budget; after a setup error, run again",
    "rerun_tests": "Run the approved tests again (after a setup error or a flagged run)",
    "reopen_tests": "Send the session back to rewrite its tests",
    "pause": "Pause the session",
    "resume": "Resume a paused session",
    "cancel": "Cancel the session",
}


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


def _json(model: type[BaseModel], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(model)}}}


def _errors(*statuses: int) -> dict[str, Any]:
    words = {
        400: "Malformed request",
        401: "No or unknown token",
        403: "Not a human, or CSRF",
        404: "No such session",
        409: "Stale version or wrong phase; `session` is current",
        413: "Body too large",
        422: "Invalid input",
    }
    return {str(s): _json(m.ErrorResponse, words[s]) for s in statuses}


SESSION_ID = {
    "name": "session_id",
    "in": "path",
    "required": True,
    "description": "A session id or unique prefix",
    "schema": {"type": "string", "minLength": 1, "maxLength": 64},
}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


def _session_get(summary: str, model: type[BaseModel]) -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "parameters": [SESSION_ID],
            "responses": {"200": _json(model, summary), **_errors(400, 401, 403, 404, 422)},
        }
    }


def _decision(action: str) -> dict[str, Any]:
    return {
        "post": {
            "summary": ACTION_SUMMARY[action],
            "operationId": f"decide_{action}",
            "parameters": [SESSION_ID],
            "requestBody": {
                "required": False,
                "content": {"application/json": {"schema": _ref(m.Decision)}},
            },
            "responses": {
                "200": _json(m.SessionView, "The session after the decision"),
                **_errors(400, 401, 403, 404, 409, 413, 422),
            },
        }
    }


def _paths(phases: tuple[str, ...]) -> dict[str, Any]:
    sid = "/api/sessions/{session_id}"
    list_params = [
        _query("phase", {"type": "string", "enum": list(phases)}, "Only sessions in this phase"),
        _query("task", {"type": "string"}, "Only sessions of this task (id, name or design path)"),
        _query("needs_human", {"type": "boolean"}, "Only sessions waiting on a human"),
        _query("include_finished", {"type": "boolean"}, "Include completed/cancelled/failed"),
        _query("limit", {"type": "integer", "minimum": 1, "maximum": 500}, "Page size (50)"),
        _query(
            "after",
            {"type": "string", "pattern": r"^-?[0-9]{1,20}\.[0-9a-f]{32}$"},
            "The `next` cursor of the previous page",
        ),
    ]
    paths: dict[str, Any] = {
        "/api/me": {
            "get": {
                "summary": "Who the token belongs to",
                "responses": {"200": _json(m.Me, "The caller"), **_errors(401, 403)},
            }
        },
        "/api/sessions": {
            "get": {
                "summary": "Sessions, longest waiting first",
                "parameters": list_params,
                "responses": {
                    "200": _json(m.SessionPage, "A page of sessions"),
                    **_errors(400, 401, 403, 404, 422),
                },
            },
            "post": {
                "summary": "Start a session on a task",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref(m.StartSession)}},
                },
                "responses": {
                    "201": _json(m.SessionView, "The new session"),
                    **_errors(400, 401, 403, 404, 409, 413, 422),
                },
            },
        },
        sid: _session_get("A session with its context", m.SessionDetail),
        f"{sid}/timeline": _session_get("The session's events, oldest first", m.Timeline),
        f"{sid}/test-runs": _session_get("The session's test runs with evidence", m.TestRuns),
        f"{sid}/diff": _session_get("The submitted changes against the base commit", m.SessionDiff),
        f"{sid}/brief": _session_get(
            "What is decided, on what evidence, and what changed since the last decision",
            m.SessionBrief,
        ),
    }
    for action in HUMAN_ACTIONS:
        paths[f"{sid}/{action}"] = _decision(action)
    return paths


def _version() -> str:
    try:
        return version("phasegate")
    except PackageNotFoundError:
        return "0"


@lru_cache(maxsize=1)
def openapi_document(phases: tuple[str, ...], workflows: tuple[str, ...]) -> dict[str, Any]:
    """The document served at /api/openapi.json, naming the project's phases and workflows."""
    schemas: dict[str, Any] = {}
    for model in SCHEMAS:
        schema = model.model_json_schema(ref_template=REF)
        for name, found in [*schema.pop("$defs", {}).items(), (model.__name__, schema)]:
            if schemas.setdefault(name, found) != found:  # the later would replace the first
                raise TypeError(f"two classes of the API are both named {name}; rename one")
    schemas["StartSession"]["properties"]["workflow"] = {
        "anyOf": [{"type": "string", "enum": list(workflows)}, {"type": "null"}],
        "default": None,
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "phasegate",
            "version": _version(),
            "description": "Human-facing API: list sessions, read their evidence, decide "
            "gates. Authenticate with `Authorization: Bearer <human token>`.",
        },
        "servers": [{"url": "/"}],
        "paths": _paths(phases),
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }
