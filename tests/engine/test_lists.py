"""Light lists: no context is read, the order is stable, and keyset pages cover everything once."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
import sqlalchemy as sa

from phasegate.domain.principal import Principal
from phasegate.domain.session import Session, SessionHeader
from phasegate.errors import InvalidInput
from phasegate.orchestrator import Orchestrator
from phasegate.store import queries as q
from phasegate.store.queries import Keyset

BIG = "x" * 50_000


def insert(orch: Orchestrator, count: int) -> list[str]:
    """`count` sessions at the test review gate; every three share one phase_entered_at."""
    task = orch.add_task(orch.project.root / "design.md")
    base = orch.clock() - timedelta(hours=1)
    ids = []
    with orch.db.write() as conn:
        for i in range(count):
            at = base + timedelta(seconds=i // 3)  # ties: the id decides their order
            session = Session(
                id=uuid.uuid4().hex,
                task_id=task["id"],
                workflow="tdd",
                phase="awaiting_test_review",
                version=0,
                fix_attempts=0,
                paused=False,
                context={"design": BIG},
                results={},
                created_at=at,
                updated_at=at,
                phase_entered_at=at,
            )
            q.insert_session(conn, session, "human")
            ids.append(session.id)
    return ids


@contextmanager
def statements(orch: Orchestrator) -> Iterator[list[str]]:
    """The SQL the database receives while the block runs."""
    seen: list[str] = []

    def record(_conn: object, _cursor: object, sql: str, *_args: object) -> None:
        seen.append(sql)

    sa.event.listen(orch.db.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(orch.db.engine, "before_cursor_execute", record)


def test_lists_never_read_a_context(orch: Orchestrator) -> None:
    """Every list returns headers, and no statement it sends names the context column."""
    insert(orch, 5)
    with statements(orch) as seen:
        listed = orch.list_sessions(needs_human=True)
        everything = orch.list_sessions(include_finished=True)
    assert len(listed) == 5 and len(everything) == 5
    assert all(type(s) is SessionHeader for s in listed)
    selects = [s for s in seen if s.lstrip().upper().startswith("SELECT")]
    assert selects and not [s for s in selects if "context" in s]


def test_keyset_pages_cover_every_session_once_in_both_directions(orch: Orchestrator) -> None:
    """Pages of four, walked forwards with `after` and back with `before`, match the whole list."""
    insert(orch, 14)
    whole = [s.id for s in orch.list_sessions(needs_human=True, limit=100)]
    assert len(whole) == 14
    forward: list[list[str]] = []
    after: str | None = None
    while True:
        page = orch.list_sessions(needs_human=True, limit=4, after=after)
        if not page:
            break
        forward.append([s.id for s in page])
        after = Keyset.of(page[-1]).token
    assert [sid for page in forward for sid in page] == whole
    with orch.db.read() as conn:
        last = q.list_sessions(conn, waiting_on=["human"], limit=100)[-1]
        back = q.list_sessions(conn, waiting_on=["human"], limit=4, before=Keyset.of(last))
        newest = q.list_sessions(conn, waiting_on=["human"], limit=3, newest_first=True)
        older = q.list_sessions(
            conn, waiting_on=["human"], limit=3, newest_first=True, after=Keyset.of(newest[-1])
        )
    assert [s.id for s in back] == whole[-5:-1]
    assert [s.id for s in newest + older] == whole[::-1][:6]


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "abc",
        "12.xyz",
        "1." + "g" * 32,
        "99999999999999999999." + "a" * 32,
        "\u00b2." + "a" * 32,  # a digit to str.isdigit, not to int()
        "--5." + "a" * 32,
    ],
)
def test_a_cursor_phasegate_did_not_give_out_is_refused(orch: Orchestrator, cursor: str) -> None:
    """A malformed or impossible cursor is one clear InvalidInput, never a traceback."""
    with pytest.raises(InvalidInput, match="cursor"):
        Keyset.parse(cursor)


def test_list_for_roles_keeps_the_sessions_waiting_for_them(
    orch: Orchestrator, human: Principal
) -> None:
    """`roles` filters in the database: a tester sees the session waiting for a tester."""
    insert(orch, 2)
    session = orch.start_session(str(orch.project.root / "design.md"), human, again=True)
    mine = orch.list_sessions(roles=["tester"])
    assert [s.id for s in mine] == [session.id]
    assert orch.list_sessions(roles=["coder"]) == []
