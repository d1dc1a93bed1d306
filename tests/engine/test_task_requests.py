"""`phasegate task add --request`: a short request becomes a task; bad input is one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from engine_helpers import make_project_repo

PHASEGATE = str(Path(sys.executable).with_name("phasegate"))


def run(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PHASEGATE, "--project", str(root), *args],
        cwd=root,
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_project_repo(tmp_path / "project")


def test_a_request_becomes_a_task_with_a_stub_design(repo: Path) -> None:
    """The request is written to designs/<name>.md and the task says how to start it."""
    done = run(repo, "task", "add", "--request", "Add a slugify() for URLs")
    assert done.returncode == 0, done.stderr
    assert "task add-a-slugify-for-urls" in done.stdout
    assert "phasegate start add-a-slugify-for-urls --workflow spec" in done.stdout
    stub = (repo / "designs" / "add-a-slugify-for-urls.md").read_text()
    assert stub.endswith("## Request\n\nAdd a slugify() for URLs\n")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ("--request", "   "),
            'the request is empty; say in a sentence or two what to build, e.g. --request "a '
            'slugify(text) function for URLs"',
        ),
        (
            ("--request", "x" * 20_001),
            "the request is 20,001 characters, over the 20,000 allowed; shorten it, or write a "
            "design file and `phasegate task add` that",
        ),
        (
            ("--request", "!!!"),
            "the task name has no letters or digits; pass --name NAME",
        ),
    ],
)
def test_bad_requests_are_one_line_and_write_nothing(
    repo: Path, args: tuple[str, ...], expected: str
) -> None:
    """An empty, too long or nameless request: one line, exit 1, no file and no task."""
    done = run(repo, "task", "add", *args)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr == f"phasegate: {expected}\n"
    assert not (repo / "designs").exists()
    assert "no tasks yet" in run(repo, "task", "ls").stdout


def test_a_request_never_overwrites_a_design(repo: Path) -> None:
    """A second request with the same name is refused; the first stub is kept."""
    assert run(repo, "task", "add", "--request", "first", "--name", "calc").returncode == 0
    done = run(repo, "task", "add", "--request", "second", "--name", "calc")
    assert done.returncode == 1
    assert done.stderr == (
        "phasegate: designs/calc.md already exists; pass another --name, or "
        "`phasegate task add designs/calc.md`\n"
    )
    assert "first" in (repo / "designs" / "calc.md").read_text()
