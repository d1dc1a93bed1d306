"""The fake model vendors on one 127.0.0.1 port, served by uvicorn in a thread.

Every request is recorded (method, path, body) so a failing test can print what the harness
asked; requests no vendor module knows get a 404 and stay in the record, so a test can also
assert that a harness sent nothing else.
"""

from __future__ import annotations

import functools
import json
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.harnesses.fake_models import anthropic, gemini, openai_responses
from tests.harnesses.fake_models.brain import Call, Decide, Outcome, Reply, decide, pushed_session

#: Request fields that are long and the same in every request of a run.
_UNCHANGING = {"tools", "system", "instructions", "systemInstruction", "metadata"}
Handler = Callable[[dict[str, Any], Decide], Response]


@dataclass(frozen=True)
class Recorded:
    """One request the fake received."""

    method: str
    path: str
    query: str
    body: Any
    status: int

    def brief(self) -> str:
        """One line; the body without its long, unchanging parts (tools, system prompt)."""
        body = self.body
        if isinstance(body, dict):
            body = {k: v for k, v in body.items() if k not in _UNCHANGING}
        body = json.dumps(body)[-1500:] if body is not None else ""
        return f"{self.method} {self.path}?{self.query} → {self.status} {body}"


def _route(method: str, path: str) -> Handler | None:
    """The vendor handler for a request, by its path."""
    if method != "POST":
        return None
    if path == "/v1/messages":
        return anthropic.respond
    if path == "/v1/messages/count_tokens":
        return anthropic.count_tokens
    if path == "/v1/responses":
        return openai_responses.respond
    if path.startswith("/v1beta/models/"):
        return gemini.handler(path.rsplit(":", 1)[-1])
    return None


class FakeModels:
    """The three vendors' APIs on 127.0.0.1, playing the obedient agent."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.steps: list[Call | Reply] = []  # what the brain chose, in order
        self._lock = threading.Lock()
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.port = int(self._sock.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        app = Starlette(
            routes=[Route("/{path:path}", self._serve, methods=["GET", "HEAD", "POST"])]
        )
        config = uvicorn.Config(app, log_level="warning", lifespan="off", timeout_keep_alive=60)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, args=([self._sock],), daemon=True)

    def __enter__(self) -> FakeModels:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise AssertionError("the fake model server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        self._sock.close()

    async def _serve(self, request: Request) -> Response:
        raw = await request.body()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        path = "/" + request.path_params["path"]
        handler = _route(request.method, path)
        if request.method in ("GET", "HEAD") and path == "/":
            response: Response = Response(status_code=200)
        elif handler is None or not isinstance(body, dict):
            response = JSONResponse({"error": {"message": f"no fake for {path}"}}, 404)
        else:
            response = handler(body, functools.partial(self._decide, pushed=pushed_session(body)))
        with self._lock:
            self.requests.append(
                Recorded(request.method, path, request.url.query, body, response.status_code)
            )
        return response

    def _decide(
        self, declared: Sequence[str], history: Sequence[Outcome], *, pushed: str | None
    ) -> Call | Reply:
        step = decide(declared, history, pushed=pushed)
        with self._lock:
            self.steps.append(step)
        return step

    def paths(self) -> set[tuple[str, str, int]]:
        """Each distinct (method, path, status) the fake was sent."""
        with self._lock:
            return {(r.method, r.path, r.status) for r in self.requests}

    def log(self) -> str:
        """Every request, one line each, for an assertion message."""
        with self._lock:
            return "\n".join(r.brief() for r in self.requests)
