"""How well phasegate's state and the human's decision are kept from the agents.

Guarded mode runs `phasegate serve` as its own OS user with its state in a
directory only that user can enter; agents reach it over MCP with their token,
and humans decide with their token and a passphrase. This module checks a
guarded server's state before it starts (`state_problems`), and tells anyone
how a project is protected (`assess`): for `phasegate doctor` and the
dashboard's header.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from phasegate.config import CONFIG_FILE, STATE_DIR, Project
from phasegate.credentials import config_dir, credentials_file


def state_problems(project: Project, database_url: str) -> list[str]:
    """What keeps a guarded server's state its own: one line per path, naming the mode to fix.

    The state directory must sit outside the repository, belong to this user,
    and let nobody else in (mode 700); so must a SQLite database's directory.
    """
    problems: list[str] = []
    state = project.state_dir
    if not project.guarded_state:
        return [
            f"{state} is inside the repository, where agents work; give the server a state "
            "directory of its own with --state-dir (e.g. /var/lib/phasegate/<project>)"
        ]
    if state == project.root or project.root in state.parents:
        problems.append(
            f"{state} is inside the repository {project.root}, where agents work; "
            "put the state directory outside it"
        )
    problems.extend(_repository_problems(project.root))
    dirs = [state]
    if database_url.startswith("sqlite") and (database := make_url(database_url).database):
        dirs.append(Path(database).resolve().parent)
    for directory in dict.fromkeys(dirs):
        problems.extend(_private_dir_problems(directory))
    return problems


def _private_dir_problems(directory: Path) -> list[str]:
    try:
        info = directory.stat()
    except FileNotFoundError:
        return []  # created 0700 when the server starts
    except OSError as exc:
        return [f"{directory}: can't check it ({exc.strerror}); fix its permissions"]
    problems = []
    if info.st_uid != os.geteuid():
        problems.append(
            f"{directory} belongs to {_user(info.st_uid)}, not to {_user(os.geteuid())} who runs "
            f"the server; chown -R {_user(os.geteuid())} {directory}"
        )
    if stat.S_IMODE(info.st_mode) & 0o077:
        problems.append(
            f"{directory} has mode {stat.S_IMODE(info.st_mode):03o}: other users can "
            f"{_what(info.st_mode)} it; chmod 700 {directory}"
        )
    return problems


def _repository_problems(root: Path) -> list[str]:
    """The repository the server owns: if others can write its git dir, its config, its top
    directory or phasegate's directories in it, they choose what git runs as the server or
    swap a session's worktree for a link to the main checkout."""
    problems = []
    paths = [root, root / CONFIG_FILE, root / STATE_DIR, root / STATE_DIR / "worktrees"]
    paths += [root / ".git", root / ".git" / "config", root / ".git" / "worktrees"]
    for path in paths:
        try:
            info = path.lstat()
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(info.st_mode) or info.st_uid != os.geteuid():
            problems.append(
                f"{path} is not {_user(os.geteuid())}'s own; the server must own its repository: "
                f"chown -R {_user(os.geteuid())} {root}"
            )
        elif stat.S_IMODE(info.st_mode) & 0o022:
            problems.append(
                f"{path} has mode {stat.S_IMODE(info.st_mode):03o}: other users can write it; "
                f"chmod go-w {path} (agents need write access only inside their worktrees)"
            )
    return problems


def _what(mode: int) -> str:
    verbs = []
    if mode & 0o044:
        verbs.append("read")
    if mode & 0o022:
        verbs.append("write")
    if mode & 0o011 and not verbs:
        verbs.append("enter")
    return " and ".join(verbs)


def make_private_dir(directory: Path) -> None:
    """Create the state directory (mode 700) if it doesn't exist yet."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)


# --- the verdict ------------------------------------------------------------------


@dataclass(frozen=True)
class Exposure:
    """One piece of phasegate's state, and whether the agents' user can reach it."""

    what: str
    path: Path
    readable: bool
    writable: bool


@dataclass(frozen=True)
class Protection:
    """How a project is protected, as `phasegate doctor` and the dashboard say it."""

    guarded: bool
    agent_user: str
    exposures: tuple[Exposure, ...]
    sandbox: str | None  # None: test runs are sandboxed; else why not
    harnesses: dict[str, bool | None]

    @property
    def exposed(self) -> list[Exposure]:
        return [e for e in self.exposures if e.readable or e.writable]

    @property
    def headline(self) -> str:
        """One line: guarded or not, and what that means."""
        if self.guarded and not self.exposed:
            return (
                f"guarded: phasegate's state is out of reach of {self.agent_user}, and decisions "
                "need a human's passphrase"
            )
        if self.guarded:
            return (
                f"guarded, but {self.agent_user} can reach "
                f"{', '.join(e.what for e in self.exposed)}: fix the permissions"
            )
        return f"unguarded: agents running as {self.agent_user} can reach phasegate's state"


def assess(
    project: Project,
    database_url: str,
    *,
    guarded: bool,
    agent_user: str | None = None,
    sandbox: str | None = None,
    harnesses: dict[str, bool | None] | None = None,
) -> Protection:
    """Check what of phasegate's state `agent_user` can reach.

    By default that is whoever runs this when unguarded (agents usually run as
    the human), and any other user ("nobody") when guarded.
    """
    user = agent_user or ("nobody" if guarded else _user(os.geteuid()))
    candidates = [
        ("the state directory", project.state_dir),
        ("the dashboard's cookie secret", project.state_dir / "web-secret"),
        ("the audit keys", config_dir() / "audit-keys"),
    ]
    if database_url.startswith("sqlite") and (database := make_url(database_url).database):
        candidates.append(("the database", Path(database)))
    if not guarded:
        candidates.append(("the human's token", credentials_file()))
    exposures = tuple(
        Exposure(what, path, can_access(path, user, os.R_OK), can_access(path, user, os.W_OK))
        for what, path in candidates
        if path.exists()
    )
    shown = user if agent_user or not guarded else "other users"
    return Protection(guarded, shown, exposures, sandbox, harnesses or {})


def can_access(path: Path, user: str, mode: int) -> bool:
    """Whether `user` could read (R_OK) or write (W_OK) `path`, going by owners and modes."""
    try:
        account = pwd.getpwnam(user)
    except KeyError:
        return False
    if account.pw_uid == 0:
        return True
    groups = {account.pw_gid, *(g.gr_gid for g in grp.getgrall() if user in g.gr_mem)}
    path = path.absolute()
    for parent in reversed(path.parents):  # every directory on the way must let them in
        if not _allowed(parent, account.pw_uid, groups, os.X_OK):
            return False
    return _allowed(path, account.pw_uid, groups, mode)


def _allowed(path: Path, uid: int, groups: Iterable[int], mode: int) -> bool:
    try:
        info = path.stat()
    except OSError:
        return False
    bits = {os.R_OK: 4, os.W_OK: 2, os.X_OK: 1}[mode]
    if info.st_uid == uid:
        return bool(info.st_mode >> 6 & bits)
    if info.st_gid in set(groups):
        return bool(info.st_mode >> 3 & bits)
    return bool(info.st_mode & bits)


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"
