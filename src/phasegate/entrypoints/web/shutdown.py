"""Graceful shutdown of `phasegate serve`: finish what is in flight, end long waits, then stop.

On SIGTERM (or Ctrl-C) uvicorn alone would stop accepting, close idle
keep-alive connections at once and wait for the rest. A client may be sending
its next request on an idle connection right then; the server closes the
socket with that request unread, the kernel resets the connection, and the
call is cut. `GracefulServer` instead:
- stops accepting new connections;
- ends the long waits (`Draining`): SSE streams end, `wait_for_decision`
  answers "still waiting, call again" at once;
- answers every request from then on with `Connection: close`, so a client
  learns from the answer itself that the connection ends with it;
- leaves idle connections open until their keep-alive runs out, as at any
  other time. `KEEP_ALIVE_S` is longer than common clients (httpx, Node's
  undici) keep an idle connection, so they give it up first, and a request
  sent before that is answered (with `Connection: close`). A client that keeps
  idle connections longer (Go's keeps them 90 s) can still meet the close, at
  any time, not only here: HTTP/1.1 leaves retrying that to the client;
- stops once no connection is left, or no request has been in flight for
  `KEEP_ALIVE_S`, or the grace timeout ends, and only then lets uvicorn close
  what is left and shut the app down.
Requests still running at the grace timeout are cancelled; so is everything
at a second signal. One line on stderr says what is being waited for.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import signal
import socket
import threading
import time
from collections.abc import Iterator
from types import FrameType

import click
import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from phasegate.entrypoints.draining import Draining

DEFAULT_GRACE_S = 20.0
#: Idle keep-alive connections close this long after their last answer, while serving and
#: while draining alike. Common clients keep an idle connection for less (httpx 5 s, Node's
#: undici 4 s), so they stop using it before the server closes it; the margin covers a
#: client slow to read its answer.
KEEP_ALIVE_S = 8


class CloseWhenDraining:
    """ASGI middleware: once the server drains, every response closes its connection."""

    def __init__(self, app: ASGIApp, draining: Draining) -> None:
        self.app = app
        self.draining = draining

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_closing(message: Message) -> None:
            if message["type"] == "http.response.start" and self.draining.is_set():
                headers = [
                    (k, v) for k, v in message.get("headers", []) if k.lower() != b"connection"
                ]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        await self.app(scope, receive, send_closing)


class GracefulServer(uvicorn.Server):
    """uvicorn's server, draining on the first signal for up to `grace_s`; a second stops now."""

    def __init__(self, config: uvicorn.Config, draining: Draining, grace_s: float) -> None:
        super().__init__(config)
        self.draining = draining
        self.grace_s = grace_s

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # Unlike uvicorn's, this does not re-raise the signal afterwards: `serve` then
        # stops its background work and closes the database, and exits 0.
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.should_exit and not self.force_exit:
            click.echo("phasegate serve: second signal; stopping now", err=True)
            self.force_exit = True
        self.should_exit = True

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        deadline = time.monotonic() + self.grace_s
        for server in self.servers:
            server.close()  # no new connections: clients see "refused" and retry later
        waits = self.draining.waits
        self.draining.set()
        click.echo(
            f"phasegate serve: shutting down; waiting up to {self.grace_s:g} s for "
            f"{len(self.server_state.tasks)} request(s) in flight on "
            f"{len(self.server_state.connections)} connection(s) (idle ones close "
            f"{KEEP_ALIVE_S} s after their last answer); ended {waits} long wait(s) "
            "(event streams, wait_for_decision). Send the signal again to stop now.",
            err=True,
        )
        await self._settle(deadline)
        # What is left of the grace, for uvicorn's own wait (whole seconds, rounded up).
        self.config.timeout_graceful_shutdown = max(1, math.ceil(deadline - time.monotonic()))
        await super().shutdown(sockets)

    async def _settle(self, deadline: float) -> None:
        """Wait until no connection is left, or none has had a request for KEEP_ALIVE_S.

        Connections that had an answer during the drain close after it; idle ones close
        when their keep-alive runs out (uvicorn's timer). After KEEP_ALIVE_S with no request
        in flight, what is left is idle past any client's keep-alive, or never sent one.
        """
        quiet_since = time.monotonic()
        while not self.force_exit and self.server_state.connections:
            now = time.monotonic()
            if now >= deadline or now - quiet_since >= KEEP_ALIVE_S:
                return
            if self.server_state.tasks:
                quiet_since = now
            await asyncio.sleep(0.02)
