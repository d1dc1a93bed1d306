"""An agent can't read the project's secrets by naming them as a session's design.

phasegate sends a session's design text to its agents, so the files an agent may name as a new
task's design are limited to Markdown committed to the repository, outside dot-folders.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from mcp import Client
from phasegate.domain.principal import Principal
from phasegate.entrypoints.mcp import build_server
from phasegate.errors import PermissionDenied
from phasegate.orchestrator import Orchestrator

pytestmark = pytest.mark.anyio
SECRET = "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI-not-a-real-one"


def _plant(root: Path) -> dict[str, Path]:
    """Secrets a real checkout holds, and a design that is written but not committed."""
    (root / ".claude").mkdir(exist_ok=True)
    files = {
        ".env": root / ".env",
        ".claude/settings.local.json": root / ".claude" / "settings.local.json",
        "notes/keys.txt": root / "notes" / "keys.txt",
        "drafts/new.md": root / "drafts" / "new.md",
    }
    for path in files.values():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# looks like a design\n{SECRET}\n")
    return files


@pytest.mark.parametrize(
    "name",
    [".env", ".claude/settings.local.json", ".git/config", "notes/keys.txt", "drafts/new.md"],
)
async def test_an_agent_cannot_start_a_session_on_a_secret_file(
    orch: Orchestrator, agent: Principal, name: str
) -> None:
    """Over MCP the file is refused in one line; no task, no session, no text comes back."""
    _plant(orch.project.root)
    tasks_before, sessions_before = orch.list_tasks(), orch.list_sessions(include_finished=True)
    async with Client(build_server(orch, lambda: agent)) as client:
        result = await client.call_tool("start_session", {"task": name, "again": True})
    text = result.content[0].text  # type: ignore[union-attr]
    assert result.is_error and text.startswith("Error: "), text
    assert "not a design an agent may start from" in text and "phasegate task add" in text
    assert SECRET not in text and "[core]" not in text
    assert orch.list_tasks() == tasks_before
    assert orch.list_sessions(include_finished=True) == sessions_before


def test_a_committed_markdown_design_still_starts_and_a_human_may_name_any_file(
    orch: Orchestrator, agent: Principal, human: Principal
) -> None:
    """design.md (committed) starts for the agent; a human's `task add` of a draft works."""
    root = orch.project.root
    assert orch.start_session("design.md", agent, again=True).phase == "generating_tests"
    files = _plant(root)
    with pytest.raises(PermissionDenied):
        orch.start_session(str(files["drafts/new.md"]), agent, again=True)
    started = orch.start_session(str(files["drafts/new.md"]), human, again=True)
    assert started.context["design_path"] == "drafts/new.md"
    # once a human added it, the task is the agent's to work on too
    assert orch.start_session("drafts/new.md", agent, again=True).task_id == started.task_id


def test_a_request_design_is_never_written_through_a_linked_folder(
    orch: Orchestrator, tmp_path: Path
) -> None:
    """`task add --request` refuses a `designs` folder that is a link out of the project."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (orch.project.root / "designs").symlink_to(outside, target_is_directory=True)
    with pytest.raises(Exception, match="is a link or a file, not a folder"):
        orch.tasks.add_request("add two numbers", name="adder")
    assert list(outside.iterdir()) == []
    subprocess.run(["git", "status"], cwd=orch.project.root, check=True, capture_output=True)
