"""Every committed event, from any process, delivered to async subscribers; none skipped.

The events table is the source of truth, read by id. What wakes the feed early
is a hint: a change made in this process, or a PostgreSQL NOTIFY from another
process or machine. Polling is the backstop, so a lost notification delays an
event by one poll interval.

On PostgreSQL an event's id is drawn from a sequence before its transaction
commits, so ids can become visible out of order: an event may commit after one
with a higher id. The feed never steps past an id that may still commit. An
id missing below the highest one delivered is *pending*: it is read again on
every poll and delivered when it appears. It is given up once every
transaction that was running when it went missing has ended (the snapshot's
xmin has passed them all): its transaction rolled back, and it never will
appear. Live delivery never waits for a pending id. Where a reader stands is
a `FeedPosition`: the SSE stream sends it as each message's id, so a client
that reconnects is sent exactly what it had not had. SQLite commits one writer
at a time, in id order: nothing is ever pending there.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

import anyio
import anyio.abc
import anyio.lowlevel
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from phasegate.orchestrator import Orchestrator
from phasegate.store import queries as q

log = logging.getLogger(__name__)

Event = dict[str, Any]
T = TypeVar("T")
SUBSCRIBER_BUFFER = 1000
BATCH = 500
#: How far below the newest id the feed waits for ids to commit: at its start, and after a
#: jump of the sequence (a crash skips up to 32 values; every rollback loses one).
LOOK_BACK = 1000
#: A pending id is given up after this long even while older transactions still run (a
#: warning says so). phasegate sends an event's insert and its COMMIT in one message, so an
#: id that still commits is never this late unless the database stalls for minutes.
PENDING_GIVE_UP_S = 600.0
_DIGITS = re.compile(r"[0-9]{1,19}")  # ASCII digits only: str.isdigit() also takes "²"


@dataclass(frozen=True)
class FeedPosition:
    """What a reader has had: every event with an id up to `last`, except the `pending` ids."""

    last: int = 0
    pending: frozenset[int] = frozenset()

    def has(self, event_id: int) -> bool:
        return event_id <= self.last and event_id not in self.pending

    def upto(self, event_id: int) -> FeedPosition:
        """This position cut at `event_id`: what a reader has once sent its events up to there."""
        last = min(self.last, event_id)
        return FeedPosition(last, frozenset(i for i in self.pending if i <= last))

    def union(self, other: FeedPosition) -> FeedPosition:
        """What a reader has who has had everything of both."""
        either = self.pending | other.pending
        return FeedPosition(
            max(self.last, other.last),
            frozenset(i for i in either if not (self.has(i) or other.has(i))),
        )

    @property
    def token(self) -> str:
        """As an SSE id: `last`, then each pending id after a dot ("120", "120.117").

        With more pending ids than a header should carry, the position just
        below the lowest of them: a client resuming from it is sent some events
        again, never too few.
        """
        if len(self.pending) > LOOK_BACK:
            return str(min(self.pending) - 1)
        return ".".join(str(i) for i in (self.last, *sorted(self.pending)))

    @classmethod
    def parse(cls, token: str) -> FeedPosition | None:
        """The position a token stands for; None if it is not one the feed gave out."""
        parts = token.strip().split(".")
        if len(parts) > LOOK_BACK + 1 or not all(_DIGITS.fullmatch(p) for p in parts):
            return None
        last, *pending = (int(p) for p in parts)
        return cls(last, frozenset(i for i in pending if i < last))


Delivery = tuple[Event, FeedPosition]


@dataclass(frozen=True)
class _Missing:
    """A pending id: when it went missing, and an xid above any transaction that may commit it."""

    since: float
    horizon: int


@dataclass(frozen=True)
class _Batch:
    events: list[Event]
    settled: int  # before the read, every transaction below this xid had ended (0: not asked)
    horizon: int  # after the read: an xid above every transaction running then (0: not asked)
    full: bool


class EventFeed:
    def __init__(self, orch: Orchestrator, *, poll_interval: float = 0.5) -> None:
        self.orch = orch
        self.poll_interval = poll_interval
        self._subscribers: set[MemoryObjectSendStream[Event]] = set()
        self._followers: set[MemoryObjectSendStream[Delivery]] = set()
        self._wake = anyio.Event()
        self._last = 0
        self._missing: dict[int, _Missing] = {}
        self._out_of_order = orch.db.dialect == "postgresql"
        self._task_group: anyio.abc.TaskGroup | None = None
        self._unsubscribe: Callable[[], None] = lambda: None

    @property
    def position(self) -> FeedPosition:
        """Every event delivered so far: up to the highest id, except the pending ones."""
        return FeedPosition(self._last, frozenset(self._missing))

    async def __aenter__(self) -> EventFeed:
        self._last, self._missing = await anyio.to_thread.run_sync(self._read_start)
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
        for subscriber in list(self._subscribers):
            subscriber.close()
        for follower in list(self._followers):
            follower.close()

    @contextmanager
    def subscribe(self) -> Iterator[MemoryObjectReceiveStream[Event]]:
        """A stream of events committed after this call; closed if the reader falls behind."""
        with _subscription(self._subscribers) as stream:
            yield stream

    @contextmanager
    def follow(self) -> Iterator[tuple[FeedPosition, MemoryObjectReceiveStream[Delivery]]]:
        """The position now, then each event delivered after it, with the position after it."""
        with _subscription(self._followers) as stream:
            yield self.position, stream

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

    def _read_start(self) -> tuple[int, dict[int, _Missing]]:
        """The newest id, and the ids missing just below it that may still commit."""
        with self.orch.db.read() as conn:
            last = q.last_event_id(conn)
            if not self._out_of_order:
                return last, {}
            found = set(q.event_ids_above(conn, last - LOOK_BACK))
            _, horizon = q.snapshot_xids(conn)
        now = time.monotonic()
        missing = set(range(max(1, last - LOOK_BACK + 1), last)) - found
        return last, {i: _Missing(now, horizon) for i in missing}

    def _read(self, position: FeedPosition) -> _Batch:
        """The events after `position`; on PostgreSQL, what tells a lost id from a late one."""
        with self.orch.db.read() as conn:
            # Statement order matters: `settled` before the read, `horizon` after it.
            settled = q.snapshot_xids(conn)[0] if position.pending else 0
            found = q.events_by_id(conn, position.last, also=position.pending, limit=BATCH)
            horizon = 0
            if self._out_of_order and _skips(found, position.last):
                _, horizon = q.snapshot_xids(conn)
        return _Batch(found, settled, horizon, len(found) == BATCH)

    def _apply(self, batch: _Batch) -> None:
        """Deliver a batch's new events, note the ids it skipped, give up the rolled-back ones."""
        now = time.monotonic()
        for event in batch.events:
            event_id = int(event["id"])
            if event_id > self._last:
                if self._out_of_order:
                    for skipped in range(max(self._last + 1, event_id - LOOK_BACK), event_id):
                        # The transaction that drew this id locked its session row first, so
                        # it had an xid by then, below the horizon read after the gap showed.
                        self._missing[skipped] = _Missing(now, batch.horizon)
                self._last = event_id
            elif self._missing.pop(event_id, None) is None:
                continue  # delivered already
            self._broadcast(event)
        if batch.full:
            return  # the limit may have cut pending ids off: judge them after the next read
        for event_id, missing in list(self._missing.items()):
            if batch.settled >= missing.horizon:
                del self._missing[event_id]  # all that could commit it have ended: rolled back
            elif now - missing.since > PENDING_GIVE_UP_S:
                log.warning(
                    "event feed: event id %d is still not committed after %.0f s; "
                    "no longer waiting for it",
                    event_id,
                    PENDING_GIVE_UP_S,
                )
                del self._missing[event_id]

    async def _poll_loop(self) -> None:
        while True:
            with anyio.move_on_after(self.poll_interval):
                await self._wake.wait()
            self._wake = anyio.Event()
            try:
                while True:
                    batch = await anyio.to_thread.run_sync(self._read, self.position)
                    self._apply(batch)
                    if not batch.full:
                        break
            except Exception:  # a database hiccup must not end the feed
                log.exception("event feed: reading new events failed; retrying")

    def _broadcast(self, event: Event) -> None:
        for stream in list(self._subscribers):
            _offer(self._subscribers, stream, event)
        if self._followers:
            delivery = (event, self.position)
            for follower in list(self._followers):
                _offer(self._followers, follower, delivery)

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


def _skips(found: list[Event], last: int) -> bool:
    """Whether the new ids in `found` (in id order) leave out any id above `last`."""
    expected = last + 1
    for event in found:
        event_id = int(event["id"])
        if event_id > last:
            if event_id != expected:
                return True
            expected += 1
    return False


@contextmanager
def _subscription(
    registry: set[MemoryObjectSendStream[T]],
) -> Iterator[MemoryObjectReceiveStream[T]]:
    send: MemoryObjectSendStream[T]
    receive: MemoryObjectReceiveStream[T]
    send, receive = anyio.create_memory_object_stream(SUBSCRIBER_BUFFER)
    registry.add(send)
    try:
        yield receive
    finally:
        registry.discard(send)
        send.close()
        receive.close()


def _offer(
    registry: set[MemoryObjectSendStream[T]], stream: MemoryObjectSendStream[T], item: T
) -> None:
    """Send without waiting; a reader that fell behind is closed and reconnects."""
    try:
        stream.send_nowait(item)
    except anyio.WouldBlock:
        log.warning("event feed: a subscriber fell behind; closing its stream")
        registry.discard(stream)
        stream.close()
    except (anyio.BrokenResourceError, anyio.ClosedResourceError):
        registry.discard(stream)
