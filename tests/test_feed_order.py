"""Events that commit out of id order reach every reader once: the feed, SSE, wait_for_decision.

On PostgreSQL a transition draws its event's id from a sequence before it
commits. Here one (A) is held open right after inserting its event while
another (B) draws the next id and commits first. On SQLite B waits for A's
write lock, so the same tests check that nothing is lost there either.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest
from anyio.streams.memory import MemoryObjectReceiveStream
from sqlalchemy import Connection, insert, update

from mcp import Client
from phasegate.domain.principal import Principal
from phasegate.domain.session import Session
from phasegate.entrypoints.mcp import build_server
from phasegate.feed import EventFeed, FeedPosition
from phasegate.orchestrator import Orchestrator
from phasegate.store import queries
from phasegate.store.schema import events, sessions
from tests.conftest import GOOD_TESTS
from tests.web.conftest import ServerProcess, start_server, stop_server
from tests.web.sse_client import SseMessage, SseReader

Event = dict[str, Any]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Hold:
    """One transition held open after inserting its event, until released."""

    session_id: str
    roll_back: bool = False
    inserted: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    event_id: int = 0


class RolledBack(Exception):
    """Raised inside the held transaction to roll it back."""


@contextmanager
def holding(
    monkeypatch: pytest.MonkeyPatch, session_id: str, *, roll_back: bool = False
) -> Iterator[Hold]:
    """The next transition of `session_id` inserts its event (taking its id), then waits.

    It writes what `commit_transition` writes, without committing: the
    kernel's transaction commits (or, with `roll_back`, rolls back) when it is
    released.
    """
    hold = Hold(session_id, roll_back)
    original = queries.commit_transition

    def commit(
        conn: Connection, s: Session, expected: int, waiting_on: str | None, event: Event
    ) -> bool:
        if s.id != session_id or hold.inserted.is_set():
            return original(conn, s, expected, waiting_on, event)
        row = {**queries.session_to_row(s, waiting_on), "chain_tip": event["hash"]}
        where = (sessions.c.id == s.id, sessions.c.version == expected)
        conn.execute(update(sessions).where(*where).values(**row))
        hold.event_id = conn.execute(insert(events).values(**event).returning(events.c.id)).one()[0]
        hold.inserted.set()
        if not hold.release.wait(30):
            raise TimeoutError("the held transition was never released")
        if hold.roll_back:
            raise RolledBack
        return True

    monkeypatch.setattr(queries, "commit_transition", commit)
    try:
        yield hold
    finally:
        hold.release.set()  # never leave a thread waiting


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(4) as executor:
        yield executor


def start_held(pool: ThreadPoolExecutor, hold: Hold, fn: Callable[[], Any]) -> Future[Any]:
    """Run the held transition `fn` on a thread; back once its event (and id) is in."""
    done = pool.submit(fn)
    assert hold.inserted.wait(10), "the held transition never inserted its event"
    return done


def start_other(pool: ThreadPoolExecutor, orch: Orchestrator, fn: Callable[[], Any]) -> Future[Any]:
    """Run B on a thread; on PostgreSQL back once it has committed (SQLite: it waits for A)."""
    done = pool.submit(fn)
    if orch.db.dialect == "postgresql":
        done.result(10)
    return done


async def in_thread(fn: Callable[[], Any]) -> Any:
    """`fn` on a worker thread, so the feed's event loop keeps running meanwhile."""
    return await anyio.to_thread.run_sync(fn)


def pause(orch: Orchestrator, session: Session, human: Principal) -> Session:
    return orch.decide(session.id, "pause", human)


async def receive(stream: MemoryObjectReceiveStream[Event], within: float = 5) -> Event:
    with anyio.fail_after(within):
        return await stream.receive()


async def nothing_more(stream: MemoryObjectReceiveStream[Event], for_s: float = 0.6) -> None:
    with anyio.move_on_after(for_s):
        extra = await stream.receive()
        raise AssertionError(f"delivered again or unexpected: {extra['id']} {extra['action']}")


@pytest.mark.anyio
async def test_the_feed_delivers_an_event_that_commits_after_a_higher_id(
    orch: Orchestrator, human: Principal, monkeypatch: pytest.MonkeyPatch, pool: ThreadPoolExecutor
) -> None:
    """B (the higher id) comes at once, A when it commits: each once; the position waits for A."""
    a, b = (orch.start_session("design.md", human, again=True) for _ in range(2))
    postgres = orch.db.dialect == "postgresql"
    async with EventFeed(orch, poll_interval=0.1) as feed:
        with feed.subscribe() as stream, holding(monkeypatch, a.id) as hold:
            held = await in_thread(lambda: start_held(pool, hold, lambda: pause(orch, a, human)))
            other = await in_thread(lambda: start_other(pool, orch, lambda: pause(orch, b, human)))
            delivered = []
            if postgres:
                delivered.append(await receive(stream))
                assert (delivered[0]["session_id"], delivered[0]["id"]) == (b.id, hold.event_id + 1)
                assert feed.position.pending == {hold.event_id}
            hold.release.set()
            await in_thread(held.result)
            await in_thread(other.result)
            delivered += [await receive(stream) for _ in range(1 if postgres else 2)]
            await nothing_more(stream)
        assert not feed.position.pending
    assert [(e["session_id"], e["action"]) for e in delivered] == (
        [(b.id, "pause"), (a.id, "pause")] if postgres else [(a.id, "pause"), (b.id, "pause")]
    )
    assert delivered[1 if postgres else 0]["id"] == hold.event_id


@pytest.mark.anyio
async def test_a_feed_started_while_an_id_is_uncommitted_still_delivers_it(
    orch: Orchestrator, human: Principal, monkeypatch: pytest.MonkeyPatch, pool: ThreadPoolExecutor
) -> None:
    """A server (re)starting between B's commit and A's still sends A: it looks back for gaps."""
    a, b = (orch.start_session("design.md", human, again=True) for _ in range(2))
    with holding(monkeypatch, a.id) as hold:
        held = await in_thread(lambda: start_held(pool, hold, lambda: pause(orch, a, human)))
        other = await in_thread(lambda: start_other(pool, orch, lambda: pause(orch, b, human)))
        async with EventFeed(orch, poll_interval=0.1) as feed:
            with feed.subscribe() as stream:
                hold.release.set()
                await in_thread(held.result)
                await in_thread(other.result)
                assert (await receive(stream))["id"] == hold.event_id
                if orch.db.dialect == "sqlite":  # B could only commit after A
                    assert (await receive(stream))["session_id"] == b.id
                await nothing_more(stream)


@pytest.mark.anyio
async def test_a_rolled_back_id_is_given_up_without_holding_anything_back(
    orch: Orchestrator, human: Principal, monkeypatch: pytest.MonkeyPatch, pool: ThreadPoolExecutor
) -> None:
    """An id lost to a rollback delays nothing, and the position forgets it within seconds."""
    a, b = (orch.start_session("design.md", human, again=True) for _ in range(2))
    before = orch.timeline(a.id)
    async with EventFeed(orch, poll_interval=0.1) as feed:
        with feed.subscribe() as stream, holding(monkeypatch, a.id, roll_back=True) as hold:
            held = await in_thread(lambda: start_held(pool, hold, lambda: pause(orch, a, human)))
            other = await in_thread(lambda: start_other(pool, orch, lambda: pause(orch, b, human)))
            if orch.db.dialect == "postgresql":
                assert (await receive(stream))["session_id"] == b.id  # not held back by A
                assert feed.position.pending == {hold.event_id}
            hold.release.set()
            with pytest.raises(RolledBack):
                await in_thread(held.result)
            await in_thread(other.result)
            if orch.db.dialect == "sqlite":
                assert (await receive(stream))["session_id"] == b.id
            started = time.monotonic()
            while feed.position.pending:
                assert time.monotonic() - started < 10, "the lost id is still pending"
                await anyio.sleep(0.05)
            await nothing_more(stream)
    assert orch.get(a.id).paused is False
    assert orch.timeline(a.id) == before


# --- SSE, from a real `phasegate serve` ------------------------------------------------


@pytest.fixture
def served(orch: Orchestrator) -> Iterator[ServerProcess]:
    server = start_server(orch.project.root, {"PHASEGATE_DATABASE_URL": orch.project.database_url})
    try:
        yield server
    finally:
        stop_server(server)


@pytest.fixture
def bearer(orch: Orchestrator) -> dict[str, str]:
    _, token = orch.add_principal("human", "viewer")
    return {"Authorization": f"Bearer {token}"}


def changes_until(
    reader: SseReader,
    want: list[tuple[str, int]],
    watch: dict[str, int],
    within: float = 5,
    linger: float = 0.6,
) -> list[SseMessage]:
    """Changes past the `watch`ed sessions' versions, read until `want` came and `linger` passed.

    The server may not have read the sessions' earlier events when a client
    connects; it then sends them live, which is right but not under test here.
    """
    got: list[SseMessage] = []
    deadline = time.monotonic() + within
    while not set(want) <= {(m.data["session_id"], m.data["version"]) for m in got}:
        left = deadline - time.monotonic()
        assert left > 0, f"only {[(m.data['action'], m.data['version']) for m in got]} arrived"
        try:
            got.append(reader.next_change(left))
        except TimeoutError:
            continue
    end = time.monotonic() + linger
    while (left := end - time.monotonic()) > 0:
        try:
            got.append(reader.next_change(left))
        except TimeoutError:
            break
    return [m for m in got if m.data["version"] > watch.get(m.data["session_id"], 1 << 62)]


def assert_once_in_order(messages: list[SseMessage], want: list[tuple[str, int]]) -> None:
    """Exactly `want`, once each, and each session's versions in increasing order."""
    seen = [(m.data["session_id"], m.data["version"]) for m in messages]
    assert sorted(seen) == sorted(want), seen
    for session_id in {s for s, _ in want}:
        versions = [v for s, v in seen if s == session_id]
        assert versions == sorted(versions), (session_id, versions)


def test_every_sse_client_gets_both_out_of_order_events_once(
    orch: Orchestrator,
    human: Principal,
    monkeypatch: pytest.MonkeyPatch,
    pool: ThreadPoolExecutor,
    served: ServerProcess,
    bearer: dict[str, str],
) -> None:
    """All sessions' and one session's streams get A, B and A's next change, once, in order."""
    a, b = (orch.start_session("design.md", human, again=True) for _ in range(2))
    everything = SseReader(f"{served.url}/api/events", bearer)
    only_a = SseReader(f"{served.url}/api/events?session={a.id}", bearer)
    try:
        with holding(monkeypatch, a.id) as hold:
            held = start_held(pool, hold, lambda: pause(orch, a, human))
            other = start_other(pool, orch, lambda: pause(orch, b, human))
            if orch.db.dialect == "postgresql":
                first = everything.next_change(5, session_id=b.id, action="pause")
                assert first.data["id"] == hold.event_id + 1  # B, before A
            hold.release.set()
            held.result(10)
            other.result(10)
        orch.decide(a.id, "resume", human)
        want = [(a.id, a.version + 1), (a.id, a.version + 2), (b.id, b.version + 1)]
        if orch.db.dialect == "postgresql":
            want.remove((b.id, b.version + 1))  # B was received first, above
        watch = {a.id: a.version, b.id: b.version}
        assert_once_in_order(changes_until(everything, want, watch), want)
        mine = [(a.id, a.version + 1), (a.id, a.version + 2)]
        assert_once_in_order(changes_until(only_a, mine, watch), mine)
    finally:
        everything.close()
        only_a.close()


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_a_client_that_saw_only_the_higher_id_gets_the_lower_when_it_reconnects(
    orch: Orchestrator,
    human: Principal,
    monkeypatch: pytest.MonkeyPatch,
    pool: ThreadPoolExecutor,
    served: ServerProcess,
    bearer: dict[str, str],
) -> None:
    """Resuming from B's id gets A: whether A commits before or after the reconnect (PostgreSQL)."""
    a, b = (orch.start_session("design.md", human, again=True) for _ in range(2))
    url = f"{served.url}/api/events"
    readers = [SseReader(url, bearer)]
    try:
        with holding(monkeypatch, a.id) as hold:
            held = start_held(pool, hold, lambda: pause(orch, a, human))
            pause(orch, b, human)
            seen_b = readers[0].next_change(5, session_id=b.id, action="pause")
            readers[0].close()
            # B's position says A's id is pending below it.
            assert seen_b.id == f"{hold.event_id + 1}.{hold.event_id}"
            readers.append(SseReader(url, {**bearer, "Last-Event-ID": seen_b.id}))
            hold.release.set()
            held.result(10)
        readers.append(SseReader(url, {**bearer, "Last-Event-ID": seen_b.id}))
        want = [(a.id, a.version + 1)]
        for resumed in readers[1:]:  # reconnected before A committed, and after
            late = changes_until(resumed, want, {a.id: a.version, b.id: b.version})
            assert_once_in_order(late, want)
            assert late[0].data["id"] == hold.event_id
            assert FeedPosition.parse(late[0].id) == FeedPosition(hold.event_id + 1)
    finally:
        for reader in readers:
            reader.close()


# --- wait_for_decision under the feed ------------------------------------------------------


@pytest.mark.anyio
async def test_wait_for_decision_sees_a_decision_that_commits_out_of_order(
    orch: Orchestrator,
    human: Principal,
    agent: Principal,
    monkeypatch: pytest.MonkeyPatch,
    pool: ThreadPoolExecutor,
) -> None:
    """An approval whose event commits after a higher id still ends the agent's wait."""
    gate = orch.start_session("design.md", human, again=True)
    orch.submit(gate.id, "tests", agent, [{"path": "tests/test_calc.py", "content": GOOD_TESTS}])
    other = orch.start_session("design.md", human, again=True)
    async with (
        EventFeed(orch, poll_interval=30) as feed,
        Client(build_server(orch, lambda: agent, feed)) as client,
    ):
        with holding(monkeypatch, gate.id) as hold:
            async with anyio.create_task_group() as tg:
                answers: list[dict[str, Any]] = []

                async def wait() -> None:
                    result = await client.call_tool(
                        "wait_for_decision", {"session_id": gate.id, "timeout_s": 20}
                    )
                    assert result.structured_content is not None
                    answers.append(result.structured_content)

                tg.start_soon(wait)
                await anyio.sleep(0.3)
                held = await in_thread(
                    lambda: start_held(pool, hold, lambda: orch.decide(gate.id, "approve", human))
                )
                b = await in_thread(
                    lambda: start_other(pool, orch, lambda: pause(orch, other, human))
                )
                await anyio.sleep(0.3)
                hold.release.set()
                await in_thread(held.result)
                await in_thread(b.result)
    (answer,) = answers
    assert answer["decided"] and answer["decision"] == "approve"
    assert answer["phase"] == "generating_implementation"
