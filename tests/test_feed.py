"""The event feed delivers committed events to async subscribers."""

from __future__ import annotations

import subprocess
import sys

import anyio
import pytest

from phasegate.domain.principal import Principal
from phasegate.feed import LOOK_BACK, EventFeed, FeedPosition
from phasegate.orchestrator import Orchestrator


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_a_position_token_round_trips_and_anything_else_starts_fresh() -> None:
    """Tokens like 120 and 120.117.118 parse back to their positions; other ids give None."""
    assert FeedPosition.parse("120") == FeedPosition(120)
    pending = FeedPosition(120, frozenset({117, 118}))
    assert pending.token == "120.117.118" and FeedPosition.parse(pending.token) == pending
    assert FeedPosition.parse("120.130") == FeedPosition(120)  # a pending id above last: had
    for junk in ("", "abc", "1.x", "1..2", "-1", "\u00b2", "1" * 20, ".".join(["1"] * 2000)):
        assert FeedPosition.parse(junk) is None, junk


def test_positions_combine_what_two_readers_have_had() -> None:
    """A union has what either had; a position cut at an id has only what lies up to it."""
    resumed = FeedPosition(10, frozenset({5, 7}))
    delivered = FeedPosition(12, frozenset({7, 11}))
    both = resumed.union(delivered)
    assert both == FeedPosition(12, frozenset({7, 11}))
    assert [i for i in range(1, 14) if not both.has(i)] == [7, 11, 13]
    assert delivered.upto(8) == FeedPosition(8, frozenset({7}))
    assert resumed.union(delivered.upto(5)) == FeedPosition(10, frozenset({7}))


def test_a_position_with_too_many_pending_ids_resumes_below_them() -> None:
    """Past LOOK_BACK pending ids the token is the id below the lowest: resent, never skipped."""
    crowded = FeedPosition(5000, frozenset(range(3000, 3001 + LOOK_BACK)))
    assert crowded.token == "2999"


@pytest.mark.anyio
async def test_feed_delivers_changes_made_in_this_process(
    orch: Orchestrator, human: Principal
) -> None:
    """A decision made through the orchestrator reaches a subscriber of the feed."""
    session = orch.start_session("design.md", human, again=True)
    async with EventFeed(orch, poll_interval=5) as feed:
        with feed.subscribe() as stream:
            await anyio.to_thread.run_sync(lambda: orch.decide(session.id, "pause", human))
            with anyio.fail_after(3):
                event = await stream.receive()
    assert (event["session_id"], event["action"], event["version"]) == (
        session.id,
        "pause",
        session.version + 1,
    )


@pytest.mark.anyio
async def test_feed_sees_changes_from_another_process(orch: Orchestrator, human: Principal) -> None:
    """Another process's event reaches the feed: by NOTIFY on PostgreSQL, else by polling."""
    session = orch.start_session("design.md", human, again=True)
    script = (
        "import sys\n"
        "from phasegate.config import Project, Settings\n"
        "from phasegate.orchestrator import Orchestrator\n"
        "o = Orchestrator.open(Project(sys.argv[1], Settings(database_url=sys.argv[2])))\n"
        "h = o.authenticate(sys.argv[4])\n"
        "o.decide(sys.argv[3], 'pause', h)\n"
    )
    _, token = orch.add_principal("human", "bob")
    # On PostgreSQL polling is slowed to 30 s, so only the NOTIFY trigger can deliver in time.
    poll = 30 if orch.db.dialect == "postgresql" else 0.3
    async with EventFeed(orch, poll_interval=poll) as feed:
        with feed.subscribe() as stream:
            await anyio.to_thread.run_sync(
                lambda: subprocess.run(
                    [
                        sys.executable,
                        "-c",
                        script,
                        str(orch.project.root),
                        orch.project.database_url,
                        session.id,
                        token,
                    ],
                    check=True,
                )
            )
            with anyio.fail_after(5):
                event = await stream.receive()
        assert await feed.wait_for_change(session.id, session.version, timeout_s=1)
        assert not await feed.wait_for_change(session.id, session.version + 1, timeout_s=0.3)
    assert event["action"] == "pause"
