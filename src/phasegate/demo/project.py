"""The demo's example project: a TTL cache to build test-first, in a fresh git repository."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from phasegate import credentials
from phasegate.config import Project, load_settings
from phasegate.errors import InvalidInput, Unauthenticated
from phasegate.orchestrator import Orchestrator

EXAMPLE = Path(__file__).with_name("example")
MARKER = ".phasegate-demo"
HUMAN, AGENT = "demo-reviewer", "demo-agent"


@dataclass(frozen=True)
class DemoProject:
    orch: Orchestrator
    human_token: str
    agent_token: str

    @property
    def root(self) -> Path:
        return self.orch.project.root


def agent_file(name: str) -> str:
    """A file the scripted agent submits (tests, the buggy and the fixed implementation)."""
    return (EXAMPLE / "agent" / name).read_text(encoding="utf-8")


def prepare(directory: Path) -> DemoProject:
    """Create (or reuse) the example project with git, phasegate, a reviewer and an agent."""
    root = directory.resolve()
    if root.exists() and any(root.iterdir()) and not (root / MARKER).exists():
        raise InvalidInput(
            f"{root} exists and is not a phasegate demo; pass --dir with a new or empty folder"
        )
    fresh = not (root / MARKER).exists()
    if fresh:
        shutil.copytree(EXAMPLE / "project", root, dirs_exist_ok=True)
        (root / MARKER).write_text("made by `phasegate demo`\n", encoding="utf-8")
        _git(root, "init", "-q", "-b", "main")
        (root / ".git" / "info" / "exclude").write_text("/.phasegate/\n", encoding="utf-8")
        _git(root, "add", "-A")
        _git(root, "commit", "-q", "-m", "TTLCache: design and stub")
    project = Project(root, load_settings(root))
    orch = Orchestrator.open(project)
    human_token = _human_token(orch)
    _, agent_token = orch.add_principal(
        "agent",
        orch.unused_principal_name(AGENT),
        ["designer", "tester", "coder", "reviewer", "runner"],
    )
    return DemoProject(orch, human_token, agent_token)


def _human_token(orch: Orchestrator) -> str:
    """The reviewer's token, stored like `phasegate init` does so the CLI works in the folder."""
    key = str(orch.project.root)
    stored = credentials.stored_human_token(key)
    if stored:
        try:
            orch.authenticate(stored)
            return stored
        except Unauthenticated:
            pass  # the database was reset; make a new reviewer
    principal, token = orch.add_principal("human", orch.unused_principal_name(HUMAN))
    credentials.store_human_token(key, principal.name, token)
    return token


def _git(root: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=phasegate demo", "-c", "user.email=demo@localhost", *args],
        cwd=root,
        check=True,
        capture_output=True,
    )
