"""The event feed delivers committed events to async subscribers."""

from __future__ import annotations

import subprocess
import sys

import anyio
import pytest

from phasegate.domain.principal import Principal
from phasegate.feed import EventFeed
from phasegate.orchestrator import Orchestrator

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


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
