"""Security suite fixtures: a project whose every phasegate process sees only temporary homes.

An attack that works against today's code must harm nothing real, so every
phasegate process (CLI, MCP server, serve) and every test run it starts gets a
temporary HOME and config directory, and runs the tests with a throwaway
interpreter whose site-packages an attack may plant into.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import git
from tests.mcp.conftest import PHASEGATE, CliProject
from tests.security.machine import Machine

DESIGN = (
    "# Slugify\n\n`slugify(text)` lowercases `text` and joins its words (runs of letters and "
    "digits) with single dashes: `slugify('Hello, World!') == 'hello-world'`.\n"
)
# The product's default test command: plugin autoload on, nothing special.
CONFIG = 'test_command = "python -m pytest -q"\ntest_timeout_s = 60\n'
# What the throwaway interpreter needs to run pytest (pytest 9 on Python 3.11).
PYTEST_DISTRIBUTIONS = ("pytest", "_pytest", "pluggy", "iniconfig", "packaging", "pygments", "py")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def make_interpreter(dest: Path, python: str = sys.executable) -> Path:
    """A venv of `python` at `dest` with a copy (never a link) of pytest; its site-packages."""
    import pytest as real_pytest

    subprocess.run([python, "-m", "venv", "--without-pip", str(dest)], check=True)
    site = next(dest.glob("lib/python3*/site-packages"))
    source = Path(real_pytest.__file__).parent.parent
    for entry in source.iterdir():
        name = entry.name.removesuffix(".py").split("-")[0].lower()
        if name in PYTEST_DISTRIBUTIONS:
            # copy2 keeps mtimes, so the copied bytecode caches stay valid (fast imports).
            if entry.is_dir():
                shutil.copytree(entry, site / entry.name, copy_function=shutil.copy2)
            else:
                shutil.copy2(entry, site / entry.name)
    return site


def make_project(root: Path) -> Path:
    """The slugify project: a design, the default test command, no implementation yet."""
    root.mkdir(parents=True)
    (root / "design.md").write_text(DESIGN)
    (root / "phasegate.toml").write_text(CONFIG)
    (root / "pytest.ini").write_text("[pytest]\npythonpath = .\n")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", ".")
    git(root, "commit", "-qm", "initial")
    return root


@pytest.fixture
def machine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, _isolated_user_config: None
) -> Machine:
    """The machine as an attacker finds it, with every real user file out of reach."""
    home = tmp_path / "home"
    home.mkdir()
    (home / ".bashrc").write_text("# the user's shell startup file\nexport EDITOR=vi\n")
    # phasegate finds the interpreter on its PATH and shows it (read-only) inside the sandbox.
    interpreter = tmp_path / "venv"
    site = make_interpreter(interpreter)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("PHASEGATE_CONFIG_DIR", str(home / ".config" / "phasegate"))
    monkeypatch.setenv("PATH", f"{interpreter / 'bin'}{os.pathsep}{os.environ['PATH']}")
    for name in ("XDG_CONFIG_HOME", "PHASEGATE_TOKEN", "PHASEGATE_AGENT_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    project = CliProject(make_project(tmp_path / "project"))
    project.run("init", "--name", "alice")
    return Machine(
        project=project,
        home=home,
        config_dir=home / ".config" / "phasegate",
        interpreter_site=site,
        phasegate=PHASEGATE,
        scratch=tmp_path,
    )
