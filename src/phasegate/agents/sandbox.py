"""The sandbox an agent CLI runs in: its worktree writable, phasegate's state and secrets hidden.

The same bubblewrap sandbox as a test run (`testrun.sandbox`, `sandbox_for`),
except that the network stays open (the model's API, phasegate's own
endpoint) and a wall-clock `timeout_s`, not a CPU or memory cap, bounds it:

- the session's worktree is writable; its `.git` file is read-only, so the
  agent can't point phasegate's own git commands at a repository it made;
- the main repository (so `.phasegate/`: the database, `web-secret`, logs,
  the other worktrees; and `.git`), phasegate's config directory
  (credentials, audit keys), the database's folder and `[sandbox] hide` are
  empty directories;
- HOME is the user's home directory, empty but for the agent CLIs' own
  config and login (`~/.claude`, `~/.claude.json`, `~/.codex`, `~/.gemini`,
  `$CLAUDE_CONFIG_DIR`, `$CODEX_HOME`, `$GEMINI_CLI_HOME/.gemini`) where they
  exist: its directories writable inside but thrown away after the run (an
  overlay), `~/.claude.json` read-only; /tmp is empty and private;
- the CLI's installation, where the sandbox would hide it (in HOME or /tmp),
  is shown read-only: the PATH entries there, the install prefix of each
  program the command names and of its script interpreter, and the files the
  command names;
- the prompt file is shown read-only.

With `sandbox = "none"` the agent runs as before, unconfined, with a warning.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from phasegate.kernel import Kernel
from phasegate.testrun import Bind, Limits
from phasegate.verification import sandbox_for

log = logging.getLogger("phasegate.agents")

AGENT_HOMES = (".claude", ".claude.json", ".codex", ".gemini")  # the agent CLIs' config and login
AGENT_HOME_ENV = (("CLAUDE_CONFIG_DIR", ""), ("CODEX_HOME", ""), ("GEMINI_CLI_HOME", ".gemini"))
_HIDDEN_BY_DEFAULT = ("/tmp", "/var/tmp", "/run", "/dev/shm")
_WORD_BREAKS = re.compile(r"[\s;&|()<>'\"`=]+")
_NO_CAP = 1 << 40  # memory and CPU: the agent's bound is its timeout_s, not a test run's caps


@dataclass(frozen=True)
class AgentLaunch:
    """The command line and environment an agent CLI starts with."""

    argv: list[str]
    env: dict[str, str]
    sandboxed: bool


def agent_launch(
    kernel: Kernel,
    command: str,
    worktree: Path,
    env: Mapping[str, str],
    *,
    show: Sequence[Path] = (),
) -> AgentLaunch:
    """How to start `command` in `worktree`: in the sandbox, or unconfined if the project opts out.

    `show` are more paths to show read-only (the prompt's directory).
    Raises SandboxUnavailable if the sandbox can't be made here.
    """
    shell = ["/bin/sh", "-c", command]
    box = sandbox_for(kernel)
    if box.mode == "none":
        log.warning(
            'agent runs UNSANDBOXED (sandbox = "none"): it can read phasegate\'s state '
            "and your credentials"
        )
        return AgentLaunch(shell, dict(env), sandboxed=False)
    limits = Limits(
        memory_bytes=_NO_CAP,
        processes=box.limits.processes,
        file_bytes=box.limits.file_bytes,
        cpu_s=7 * 86400,
    )
    sandbox = replace(box, network=True, hide=(*box.hide, kernel.project.root), limits=limits)
    home = Path.home()
    binds = [
        *_agent_homes(home, env),
        *_installation(command, env.get("PATH", ""), home),
        *(Bind(path, path) for path in show),
        Bind(worktree / ".git", worktree / ".git"),
        *_resolver(),
    ]
    argv = sandbox.wrap(shell, worktree, binds=binds)
    return AgentLaunch(argv, {**env, "HOME": str(home), "TMPDIR": "/tmp"}, sandboxed=True)


def _agent_homes(home: Path, env: Mapping[str, str]) -> list[Bind]:
    """The agent CLIs' own config and login, where they exist: writable inside, but nothing
    written there reaches the host (a hostile agent could plant a hook that runs, unsandboxed,
    the next time you start that CLI yourself)."""
    places = [home / name for name in AGENT_HOMES]
    places += [Path(env[var]).expanduser() / sub for var, sub in AGENT_HOME_ENV if env.get(var)]
    return [Bind(p, p, scratch=True) for p in dict.fromkeys(places) if p.exists()]


def _installation(command: str, path: str, home: Path) -> list[Bind]:
    """The CLI's own files where the sandbox would hide them, shown read-only."""
    places = [Path(entry) for entry in path.split(os.pathsep) if entry]
    for word in _WORD_BREAKS.split(command):
        named = os.path.expanduser(word)
        if os.path.isabs(named) and os.path.exists(named):
            places.append(Path(named))
            if os.path.isfile(named) and os.access(named, os.X_OK):
                places += _program_places(Path(named), path)
        elif word and "/" not in word and (found := shutil.which(word, path=path)):
            places += _program_places(Path(found), path)
    hidden_roots = [home, *map(Path, _HIDDEN_BY_DEFAULT)]
    return [
        Bind(place, place)
        for place in dict.fromkeys(Path(os.path.abspath(p)) for p in places)
        if place != home and any(place.is_relative_to(root) for root in hidden_roots)
    ]


def _program_places(program: Path, path: str) -> list[Path]:
    """Where a program lives: its directory and install prefix, and its script interpreter's."""
    places = [program.parent, _prefix(program), _prefix(Path(os.path.realpath(program)))]
    interpreter = _shebang(program, path)
    if interpreter is not None:
        places += [interpreter.parent, _prefix(interpreter)]
        places.append(_prefix(Path(os.path.realpath(interpreter))))
    return places


def _prefix(program: Path) -> Path:
    """`P` for `P/bin/x` or `P/lib/node_modules/…`; else the program's own folder."""
    parts = program.parts
    if "node_modules" in parts:
        at = parts.index("node_modules")
        return Path(*parts[: at - 1 if parts[at - 1] == "lib" else at])
    return program.parent.parent if program.parent.name == "bin" else program.parent


def _shebang(program: Path, path: str) -> Path | None:
    """The interpreter a script names on its `#!` line (through `/usr/bin/env`), if found."""
    try:
        with open(program, "rb") as handle:
            first = handle.readline(512).decode(errors="replace")
    except OSError:
        return None
    words = first[2:].split() if first.startswith("#!") else []
    if words[:1] == ["/usr/bin/env"]:
        words = [w for w in words[1:] if not w.startswith("-")]
        found = shutil.which(words[0], path=path) if words else None
        return Path(found) if found else None
    return Path(words[0]) if words and os.path.isabs(words[0]) else None


def _resolver() -> list[Bind]:
    """The DNS resolver's folder if it is in /run (systemd-resolved): the sandbox empties /run."""
    real = Path(os.path.realpath("/etc/resolv.conf"))
    return [Bind(real.parent, real.parent)] if real.is_relative_to("/run") else []
