"""pre_review's bounds over MCP: one `Error:` line, and the session as it was."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mcp import Client
from phasegate.config import Project, Settings
from phasegate.domain.principal import Principal
from phasegate.orchestrator import Orchestrator
from phasegate.reviews import MAX_PRE_REVIEWS_PER_GATE
from tests.conftest import GOOD_TESTS, TEST_COMMAND

pytestmark = pytest.mark.anyio
FINDING = {"path": "tests/test_calc.py", "line": 4, "comment": "no test for zero"}


@pytest.fixture
def orch(project_root: Path, db_url: str) -> Iterator[Orchestrator]:
    """The tdd workflow with pre-review on."""
    settings = Settings(
        database_url=db_url, test_command=TEST_COMMAND, workflows={"tdd": {"pre_review": True}}
    )
    orchestrator = Orchestrator.open(Project(project_root, settings))
    yield orchestrator
    orchestrator.close()


@pytest.fixture
def agent(orch: Orchestrator) -> Principal:
    """The client's agent: a tester and a reviewer."""
    return orch.add_principal("agent", "bot", ["tester", "reviewer"])[0]


async def refused(client: Client, **arguments: Any) -> str:
    result = await client.call_tool("pre_review", arguments)
    text: str = result.content[0].text  # type: ignore[union-attr]
    assert result.is_error and text.startswith("Error: ") and "\n" not in text, text
    return text


async def test_pre_review_over_its_bounds_is_one_error_line_and_writes_nothing(
    client: Client, orch: Orchestrator, human: Principal, agent: Principal
) -> None:
    """A too-long finding and the 21st pre-review at a gate each get one `Error:` line; the
    session's version and timeline stay as they were."""
    sid = orch.start_session("design.md", human, again=True).id
    orch.submit(sid, "tests", agent, [{"path": "tests/test_calc.py", "content": GOOD_TESTS}])
    base = {"session_id": sid, "verdict": "reject", "summary": "misses zero"}
    long = [{**FINDING, "comment": "c" * 3_000}]
    before = (orch.get(sid).version, len(orch.timeline(sid)))
    text = await refused(client, **base, findings=long)
    assert "'findings[0].comment' must be a string of at most 2000 characters" in text
    assert (orch.get(sid).version, len(orch.timeline(sid))) == before

    for _ in range(MAX_PRE_REVIEWS_PER_GATE):
        done = await client.call_tool("pre_review", {**base, "findings": [FINDING]})
        assert not done.is_error, done.content[0].text  # type: ignore[union-attr]
    before = (orch.get(sid).version, len(orch.timeline(sid)))
    text = await refused(client, **base, findings=[FINDING])
    assert "already attached 20 pre-reviews at this gate" in text and "wait_for_decision" in text
    assert (orch.get(sid).version, len(orch.timeline(sid))) == before
