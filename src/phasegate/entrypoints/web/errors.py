"""Errors to responses, in one place; and request bodies read with a size limit.

API paths get `{"error": {...}}` JSON; pages get an HTML page that says the
same thing; a page without a login redirects to /login.
"""

from __future__ import annotations

import json
import logging
from typing import Any, TypeVar
from urllib.parse import parse_qs, quote

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from phasegate.errors import InvalidInput, PhasegateError, Unauthenticated
from phasegate.store.database import storage_error
from phasegate.workspace import WorkspaceError

log = logging.getLogger(__name__)
Model = TypeVar("Model", bound=BaseModel)
MAX_BODY_BYTES = 256 * 1024


class BodyTooLarge(InvalidInput):
    """A request body above the limit; it is not read any further."""

    http_status = 413
    code = "body_too_large"


class MalformedBody(InvalidInput):
    """A body that is not the JSON or form the endpoint expects."""

    http_status = 400
    code = "malformed_body"


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The body, refusing more than `limit` bytes without buffering them."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"the request body is {declared} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"the request body is over the {limit}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_form(request: Request, limit: int = MAX_BODY_BYTES) -> dict[str, str]:
    """A url-encoded form's fields (the first value of each); MalformedBody if it isn't one."""
    raw = await read_body(request, limit)
    try:
        fields = parse_qs(raw.decode("utf-8"), keep_blank_values=True)
    except (UnicodeDecodeError, ValueError):
        raise MalformedBody("the form is not valid UTF-8 url-encoded data") from None
    return {k: v[0] for k, v in fields.items()}


async def parse_json(request: Request, model: type[Model]) -> Model:
    """Parse and validate a JSON body (an empty body means `{}`)."""
    raw = await read_body(request)
    try:
        data: Any = json.loads(raw) if raw.strip() else {}
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedBody(f"the body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise MalformedBody("the body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
        )
        raise InvalidInput(f"invalid {model.__name__} body: {problems}") from None


def error_status(exc: Exception) -> int:
    if isinstance(exc, PhasegateError):
        return exc.http_status
    return 422  # WorkspaceError: the request named a bad path or commit


def error_body(exc: Exception, session: dict[str, Any] | None = None) -> dict[str, Any]:
    if isinstance(exc, PhasegateError):
        detail = exc.to_dict()
    else:
        detail = {
            "code": "workspace_error",
            "message": str(exc),
            "phase": None,
            "allowed_actions": [],
        }
    body: dict[str, Any] = {"error": detail}
    if session is not None:
        body["session"] = session
    return body


def api_error(exc: Exception, session: dict[str, Any] | None = None) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, Unauthenticated) else None
    return JSONResponse(error_body(exc, session), status_code=error_status(exc), headers=headers)


def login_redirect(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)


def is_expected(exc: Exception) -> bool:
    return isinstance(exc, PhasegateError | WorkspaceError)


async def unexpected_error(request: Request, exc: Exception) -> Response:
    """A bug: log it with the traceback, answer 500 without leaking internals.

    A busy, full or failing database that reached here untranslated is no bug:
    it gets its storage error (503 or 507) like the translated ones.
    """
    if (known := storage_error(exc)) is not None:
        return api_error(known)
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse(
        {
            "error": {
                "code": "internal_error",
                "message": "phasegate hit an internal error; see the server log",
            }
        },
        status_code=500,
    )
