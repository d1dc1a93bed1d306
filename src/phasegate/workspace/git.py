"""A tiny, hardened git runner: argv only, no hooks, no system or global config."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from phasegate.workspace.errors import GitError

# Hooks and fsmonitor run arbitrary programs; commit signing may prompt for a passphrase.
SAFETY_CONFIG = (
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "core.fsmonitor=false",
    "-c",
    "commit.gpgSign=false",
    "-c",
    "tag.gpgSign=false",
)
_IDENTITY = {
    "GIT_AUTHOR_NAME": "phasegate",
    "GIT_AUTHOR_EMAIL": "phasegate@localhost",
    "GIT_COMMITTER_NAME": "phasegate",
    "GIT_COMMITTER_EMAIL": "phasegate@localhost",
}
DEFAULT_TIMEOUT_SECONDS = 120.0
GUARDED_ENV = "PHASEGATE_GUARDED"  # set by `serve --guarded` for its own process


def base_env() -> dict[str, str]:
    """The caller's environment without GIT_* variables, plus our isolation settings."""
    # Inherited GIT_DIR / GIT_WORK_TREE / GIT_INDEX_FILE (e.g. when run from a hook)
    # would silently point every command at another repository.
    env = {key: value for key, value in os.environ.items() if not key.startswith("GIT_")}
    env.update(
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_TERMINAL_PROMPT="0",
        GIT_OPTIONAL_LOCKS="0",
        # Paths are data: a file named "*" or ":(top)x" must not match other files.
        GIT_LITERAL_PATHSPECS="1",
        LC_ALL="C",
    )
    return env


def guarded_config() -> tuple[str, ...]:
    """On a guarded server, what git creates in the git dir is group-readable, never writable.

    Its umask lets the agents' group write the worktrees' files; without this,
    the same umask would let them write `.git/worktrees/<id>/commondir` and so
    choose the config (and its filters) git runs with as phasegate's user.
    """
    return ("-c", "core.sharedRepository=0640") if os.environ.get(GUARDED_ENV) == "1" else ()


def worktree_pin(cwd: Path) -> dict[str, str]:
    """``GIT_DIR`` and ``GIT_WORK_TREE`` for a phasegate worktree, from the repository's records.

    A linked worktree's ``.git`` is a file, and whoever can write in the
    worktree (an agent, in guarded mode) could point it at a repository of its
    own, whose config runs programs (a clean filter on ``git add``) as
    phasegate's user, or whose objects lie to the test lock. phasegate never
    follows it: a worktree at ``<root>/.phasegate/worktrees/<id>`` uses the git
    dir ``<root>/.git/worktrees/<id>`` that the main repository keeps.
    """
    here = Path(os.path.abspath(cwd))
    if here.parent.name != "worktrees" or here.parent.parent.name != ".phasegate":
        return {}
    refuse_linked_worktree(here)
    git_dir = here.parents[2] / ".git" / "worktrees" / here.name
    if not git_dir.is_dir():
        return {}
    return {"GIT_DIR": str(git_dir), "GIT_WORK_TREE": str(here)}


def refuse_linked_worktree(worktree: Path) -> None:
    """A session worktree (`<root>/.phasegate/worktrees/<id>`) must be reached through no link.

    Whoever can write beside it could swap `<id>`, `worktrees` or `.phasegate`
    for a link to the main checkout, and phasegate would then write and commit
    there. (A guarded server also keeps those two directories unwritable for
    the agents' group.)
    """
    here = Path(os.path.abspath(worktree))
    for part in (here.parent.parent, here.parent, here):
        if part.is_symlink() or (part.exists() and not part.is_dir()):
            raise GitError(
                f"{part} is a link or not a directory, where phasegate keeps a session's "
                "worktree; remove it and recreate the session (nothing was written)"
            )


class Git:
    """Runs git in one directory; raises ``GitError`` with git's stderr on failure."""

    def __init__(
        self, cwd: Path, *, timeout: float = DEFAULT_TIMEOUT_SECONDS, identity: bool = True
    ) -> None:
        """``identity=False`` for read-only commands: skips the ``user.*`` config lookups."""
        self.cwd = Path(cwd)
        self.timeout = timeout
        self.identity = identity
        self._env: dict[str, str] | None = None

    def run(
        self,
        *args: str,
        input: bytes | None = None,  # same name as subprocess.run's argument
        ok_codes: Sequence[int] = (0,),
        extra_env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[bytes]:
        """Run ``git <args>`` and return the completed process (stdout/stderr as bytes)."""
        argv = ["git", *SAFETY_CONFIG, *guarded_config(), *args]
        env = {**self.env(), **(extra_env or {})}
        try:
            done = subprocess.run(
                argv,
                cwd=self.cwd,
                env=env,
                input=input,
                stdin=None if input is not None else subprocess.DEVNULL,
                capture_output=True,
                timeout=self.timeout,
                check=False,
            )
        except FileNotFoundError as exc:
            raise GitError(
                f"cannot run git in {self.cwd}: {exc}; install git or check the path"
            ) from exc
        except subprocess.TimeoutExpired:
            raise GitError(
                f"git {' '.join(args[:2])} timed out after {self.timeout:.0f}s in {self.cwd}; "
                "check for a stale lock or a very large repository and retry",
                argv=argv,
            ) from None
        if done.returncode not in ok_codes:
            stderr = done.stderr.decode("utf-8", "replace").strip()
            raise GitError(
                f"git {' '.join(args[:2])} failed (exit {done.returncode}) in {self.cwd}: "
                f"{stderr or 'no error output'}; fix the repository state and retry",
                argv=argv,
                stderr=stderr,
            )
        return done

    def text(self, *args: str, input: bytes | None = None) -> str:
        """Run git and return stdout decoded as UTF-8 with the trailing newline removed."""
        return self.run(*args, input=input).stdout.decode("utf-8", "replace").rstrip("\n")

    def succeeds(self, *args: str) -> bool:
        """Whether git exits 0 (for questions like "does this revision exist?")."""
        return self.run(*args, ok_codes=range(256)).returncode == 0

    def env(self) -> dict[str, str]:
        """The environment git runs with, with phasegate's identity if the repo has none."""
        if self._env is None:
            env = {**base_env(), **worktree_pin(self.cwd)}
            self._env = env  # needed by the config lookups below
            if self.identity and not (
                self._has_config("user.name") and self._has_config("user.email")
            ):
                env.update(_IDENTITY)
        return self._env

    def _has_config(self, key: str) -> bool:
        argv = ["git", *SAFETY_CONFIG, "config", "--get", key]
        try:
            done = subprocess.run(
                argv, cwd=self.cwd, env=self._env, capture_output=True, check=False
            )
        except OSError:  # cwd missing: the command itself will report it clearly
            return False
        return done.returncode == 0 and bool(done.stdout.strip())
