"""Every committed event, from any process, delivered to async subscribers.

The events table is the source of truth: the feed reads it by autoincrement id,
so nothing is missed. What wakes it early is a hint: a change made in this
process, or a PostgreSQL NOTIFY from another process or machine. Polling is
the backstop, so a lost notification delays an event by one poll interval.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from phasegate.orchestrator import Orchestrator
from phasegate.store import queries as q

log = logging.getLogger(__name__)

Event = dict[str, Any]
SUBSCRIBER_BUFFER = 1000


class EventFeed:
    def __init__(self, orch: Orchestrator, *, poll_interval: float = 0.5) -> None:
        self.orch = orch
        self.poll_interval = poll_interval
        self._subscribers: set[MemoryObjectSendStream[Event]] = set()
        self._wake = anyio.Event()
        self._last_id = 0
        self._task_group: anyio.abc.TaskGroup | None = None
        self._unsubscribe: Callable[[], None] = lambda: None

    async def __aenter__(self) -> EventFeed:
        self._last_id = await anyio.to_thread.run_sync(self._read_last_id)
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        token = anyio.lowlevel.current_token()
        self._unsubscribe = self.orch.subscribe(lambda _c: self._wake_from_thread(token))
        self._task_group.start_soon(self._poll_loop)
        if self.orch.db.dialect == "postgresql":
            self._task_group.start_soon(self._listen_loop)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._unsubscribe()
        assert self._task_group is not None
        self._task_group.cancel_scope.cancel()
        await self._task_group.__aexit__(exc_type, exc, tb)
        for stream in list(self._subscribers):
            stream.close()

    @contextmanager
    def subscribe(self) -> Iterator[MemoryObjectReceiveStream[Event]]:
        """A stream of events committed after this call; closed if the reader falls behind."""
        send, receive = anyio.create_memory_object_stream[Event](SUBSCRIBER_BUFFER)
        self._subscribers.add(send)
        try:
            yield receive
        finally:
            self._subscribers.discard(send)
            send.close()
            receive.close()

    async def wait_for_change(self, session_id: str, after_version: int, timeout_s: float) -> bool:
        """Wait until the session's version passes `after_version`; False on timeout."""
        with self.subscribe() as stream, anyio.move_on_after(timeout_s):
            session = await anyio.to_thread.run_sync(self.orch.get, session_id)
            if session.version > after_version:
                return True
            async for event in stream:
                if event["session_id"] == session.id and event["version"] > after_version:
                    return True
        return False

    def _wake_from_thread(self, token: anyio.lowlevel.EventLoopToken) -> None:
        try:
            anyio.from_thread.run_sync(self._wake.set, token=token)
        except RuntimeError:
            self._wake.set()  # already on the event loop's thread

    def _read_last_id(self) -> int:
        with self.orch.db.read() as conn:
            return q.last_event_id(conn)

    def _read_after(self, after_id: int) -> list[Event]:
        with self.orch.db.read() as conn:
            return q.events_after(conn, after_id)

    async def _poll_loop(self) -> None:
        while True:
            with anyio.move_on_after(self.poll_interval):
                await self._wake.wait()
            self._wake = anyio.Event()
            try:
                events = await anyio.to_thread.run_sync(self._read_after, self._last_id)
            except Exception:  # a database hiccup must not end the feed
                log.exception("event feed: reading new events failed; retrying")
                continue
            for event in events:
                self._last_id = max(self._last_id, int(event["id"]))
                self._broadcast(event)

    def _broadcast(self, event: Event) -> None:
        for stream in list(self._subscribers):
            try:
                stream.send_nowait(event)
            except anyio.WouldBlock:
                log.warning("event feed: a subscriber fell behind; closing its stream")
                self._subscribers.discard(stream)
                stream.close()
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._subscribers.discard(stream)

    async def _listen_loop(self) -> None:
        """PostgreSQL LISTEN; reconnects after errors. Only ever a hint to poll now."""
        import psycopg

        url = self.orch.db.engine.url.set(drivername="postgresql").render_as_string(
            hide_password=False
        )
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                    await conn.execute("LISTEN phasegate_events")
                    self._wake.set()  # catch up on anything sent while we were away
                    async for _notify in conn.notifies():
                        self._wake.set()
            except Exception:
                log.warning("event feed: LISTEN connection lost; polling until it is back")
                await anyio.sleep(2)
