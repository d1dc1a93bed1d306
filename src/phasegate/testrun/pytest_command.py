"""Recognise a pytest command and choose, outside the sandbox, the interpreter that runs it.

`python -m pytest -q`, `pytest tests/`, and either after `NAME=value`
assignments, are run through phasegate's bootstrap (`harness/bootstrap.py`)
instead of as written: the interpreter is found on phasegate's own PATH before
the run (never in the export), asked once where its prefixes are, and started
with `-I`. Anything else (shell operators, another runner) is not pytest and
runs through `/bin/sh -c` inside the same sandbox.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from phasegate.testrun.errors import ConfigError

_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_PYTHON = re.compile(r"^python(\d+(\.\d+)?)?$")
_PYTEST = ("pytest", "py.test")
_SHELL = set(";&|<>()$`\\\n*?[]{}~")
_PROBE = "import json, sys; print(json.dumps([sys.executable, sys.prefix, sys.base_prefix]))"


@dataclass(frozen=True)
class Interpreter:
    """A Python interpreter as it described itself: its real path and install prefixes."""

    executable: Path
    prefixes: tuple[Path, ...]


@dataclass(frozen=True)
class PytestCommand:
    """A test command phasegate runs through its own pytest bootstrap."""

    env: dict[str, str]
    interpreter: Interpreter
    args: tuple[str, ...]


def parse_pytest_command(command: str, path: str) -> PytestCommand | None:
    """The pytest invocation in `command`, or None if it is some other command."""
    if _SHELL & set(command):
        return None
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    env = {}
    while words and _ASSIGNMENT.match(words[0]):
        name, value = words.pop(0).split("=", 1)
        env[name] = value
    if not words:
        return None
    program, rest = words[0], words[1:]
    name = os.path.basename(program)
    if _PYTHON.match(name) and rest[:2] == ["-m", "pytest"]:
        return PytestCommand(env, interpreter(program, path), tuple(rest[2:]))
    if name in _PYTEST:
        return PytestCommand(env, interpreter(_shebang_python(program, path), path), tuple(rest))
    return None


def interpreters_named(command: str, path: str) -> list[Interpreter]:
    """The Python interpreters a shell command names, and `python3` on PATH, as far as found.

    A shell command runs as written, so the sandbox must show the interpreters it
    may start even where they live in a hidden directory (a venv or pyenv in HOME).
    """
    words = re.split(r"[\s;&|()<>'\"`]+", command)
    names = dict.fromkeys(w for w in [*words, "python3"] if _PYTHON.match(os.path.basename(w)))
    found = []
    for name in names:
        try:
            found.append(interpreter(name, path))
        except ConfigError:
            continue  # not there: the command fails inside, with its own message
    return found


def interpreter(program: str, path: str) -> Interpreter:
    """Find `program` on `path` and ask it where it lives; ConfigError if it can't be run."""
    found = shutil.which(program, path=path)
    if found is None:
        raise ConfigError(
            f"the test command's interpreter {program!r} was not found on PATH; "
            "install it or change test_command"
        )
    return _describe(found)  # not the real path: a venv's python is a link out of the venv


@cache
def _describe(executable: str) -> Interpreter:
    try:
        done = subprocess.run(
            [executable, "-I", "-c", _PROBE],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=60,
            check=True,
            cwd="/",
        )
        real, prefix, base = json.loads(done.stdout)
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        raise ConfigError(
            f"{executable} does not run as a Python interpreter ({exc}); fix test_command"
        ) from exc
    places = (prefix, base, os.path.dirname(os.path.realpath(real)))
    return Interpreter(Path(real), tuple(dict.fromkeys(Path(os.path.realpath(p)) for p in places)))


def _shebang_python(script: str, path: str) -> str:
    found = shutil.which(script, path=path)
    if found is None:
        raise ConfigError(f"{script!r} was not found on PATH; install pytest or fix test_command")
    with open(found, "rb") as f:
        first = f.readline(512).decode(errors="replace")
    words = first[2:].split() if first.startswith("#!") else []
    if words[:1] == ["/usr/bin/env"]:
        words = words[1:]
    if not words or not _PYTHON.match(os.path.basename(words[0])):
        raise ConfigError(
            f"{found} is not a Python script; write test_command as `python -m pytest …`"
        )
    return words[0]
