"""Engine suite fixtures: the shared orchestrator, with a fix budget of two failed runs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from phasegate.config import Project, Settings
from phasegate.orchestrator import Orchestrator

TEST_COMMAND = "python -m pytest -q -p no:cacheprovider"
MAX_FIX_ATTEMPTS = 2


@pytest.fixture
def orch(project_root: Path, db_url: str) -> Iterator[Orchestrator]:
    """An orchestrator whose fix loop escalates after two failed runs."""
    project = Project(
        project_root,
        Settings(database_url=db_url, test_command=TEST_COMMAND, max_fix_attempts=MAX_FIX_ATTEMPTS),
    )
    orchestrator = Orchestrator.open(project)
    yield orchestrator
    orchestrator.close()
