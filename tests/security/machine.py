"""What an agent that explored the machine knows: absolute paths of everything worth attacking."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tests.mcp.conftest import CliProject

# The approved tests of every attack session: they import a module that does not exist
# before the implementation, so the red run can't collect them (ordinary TDD).
TEST_PATH = "tests/test_slugify.py"
APPROVED_TESTS = """\
from slugify import slugify


def test_lowercases():
    assert slugify("Hello") == "hello"


def test_joins_words_with_dashes():
    assert slugify("Hello, World!") == "hello-world"
"""
APPROVED_IDS = (
    f"{TEST_PATH}::test_lowercases",
    f"{TEST_PATH}::test_joins_words_with_dashes",
)


@dataclass(frozen=True)
class Machine:
    """A project set up with `phasegate init` under a temporary HOME, and its neighbours."""

    project: CliProject
    home: Path
    config_dir: Path
    interpreter_site: Path  # site-packages of the interpreter that runs the tests
    phasegate: str  # the absolute path of the `phasegate` executable
    scratch: Path  # a directory of the test's own, outside the project

    @property
    def root(self) -> Path:
        return self.project.root

    @property
    def database(self) -> Path:
        return self.root / ".phasegate" / "phasegate.db"

    @property
    def credentials(self) -> Path:
        return self.config_dir / "credentials.json"

    @property
    def git_dir(self) -> Path:
        return self.root / ".git"

    def worktree(self, session_id: str) -> Path:
        return self.root / ".phasegate" / "worktrees" / session_id

    def human_token(self) -> str:
        """The token `phasegate init` stored for the human (read here only to look for leaks)."""
        stored = json.loads(self.credentials.read_text())
        (entry,) = stored.values()
        return str(entry["token"])
