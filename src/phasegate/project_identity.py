"""One project per database: the database records the repository it belongs to.

A repository is known by its root commits (`git rev-list --max-parents=0 HEAD`):
every clone of it has the same ones, on any machine, whatever its path, so the
team setup (several `serve`/`worker` processes on several machines sharing one
PostgreSQL) is accepted, while another repository has other root commits and
is refused. The path is kept for the message only. Sharing one root commit is
enough, so a repository that later merges in another history stays itself.

The first open records the identity in `meta` (a database made before this
adopts the first project that opens it); later opens compare with one meta
read. The identity is computed with git once and cached in the state directory.
A repository without commits, or a shallow clone (its root commits are cut),
can't tell: it is neither recorded nor refused.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection

from phasegate.config import Project
from phasegate.errors import ConfigError
from phasegate.store import queries as q
from phasegate.store.database import Database

PROJECT = "project"  # meta row: {"root_commits": [...], "path": "..."}, written on first open
CACHE_FILE = "project-identity.json"
_MARK = "phasegate-identity"  # in `.git`: which repository the cached identity belongs to


@dataclass(frozen=True)
class ProjectIdentity:
    """A repository's root commits, and where it was seen (for messages)."""

    root_commits: tuple[str, ...]
    path: str

    def same_repository(self, other: ProjectIdentity) -> bool:
        return bool(set(self.root_commits) & set(other.root_commits))

    def describe(self) -> str:
        return f"{self.path} (root commit {self.root_commits[0][:8]})"

    def to_json(self) -> str:
        return json.dumps({"root_commits": list(self.root_commits), "path": self.path})

    @classmethod
    def from_json(cls, text: str) -> ProjectIdentity | None:
        try:
            data = json.loads(text)
            roots = tuple(str(r) for r in data["root_commits"])
            return cls(roots, str(data["path"])) if roots else None
        except (ValueError, KeyError, TypeError):
            return None


def check_project(project: Project, db: Database) -> None:
    """Refuse a database that belongs to another repository; record ours on first open."""
    with db.read() as conn:
        recorded = _read_meta(conn, db).get(PROJECT)
    ours = project_identity(project)
    if ours is None:
        return
    if recorded is None:
        with db.write() as conn:
            q.lock_meta(conn)
            recorded = q.read_meta(conn).get(PROJECT)
            if recorded is None:  # still unrecorded now that we hold the lock
                q.insert_meta(conn, PROJECT, ours.to_json())
                return
    theirs = ProjectIdentity.from_json(recorded)
    if theirs is not None and not theirs.same_repository(ours):
        raise ConfigError(
            f"this database belongs to the repository {theirs.describe()}, not to "
            f"{ours.describe()}; open it from that repository (or a clone of it), "
            "or set PHASEGATE_DATABASE_URL to another database"
        )


def project_identity(project: Project) -> ProjectIdentity | None:
    """This repository's identity, from the cache while `.git` is the same one."""
    stamp = _git_stamp(project.root)
    cache = project.state_dir / CACHE_FILE
    try:
        cached = json.loads(cache.read_text(encoding="utf-8"))
        if stamp is not None and cached["stamp"] == stamp:
            return ProjectIdentity(tuple(cached["root_commits"]), str(project.root))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    roots = _root_commits(project.root)
    if not roots:
        return None  # not cached: the first commit will give it one
    stamp = stamp or _mark(project.root)
    if stamp is not None:
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_text(json.dumps({"stamp": stamp, "root_commits": roots}), encoding="utf-8")
        except OSError:
            pass  # a read-only state directory: compute it each time
    return ProjectIdentity(tuple(roots), str(project.root))


def _git_stamp(root: Path) -> str | None:
    """Which `.git` this is: the mark phasegate left in it. A repository made again in the same
    place has none (its inode may well be the old one's, so the inode can't tell)."""
    try:
        return (root / ".git" / _MARK).read_text(encoding="utf-8").strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def _mark(root: Path) -> str | None:
    """Leave a mark in `.git` (git ignores files it doesn't know); None where it can't."""
    mark = uuid.uuid4().hex
    try:
        (root / ".git" / _MARK).write_text(mark, encoding="utf-8")
    except OSError:
        return None  # `.git` is a file (a worktree) or read-only: no cache, git each time
    return mark


def _root_commits(root: Path) -> list[str]:
    """The root commits of HEAD, sorted; none without commits, in a shallow clone, or off git."""
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", str(root), *args],
                capture_output=True,
                text=True,
                env=env,
                timeout=30,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout if done.returncode == 0 else None

    if (git("rev-parse", "--is-shallow-repository") or "").strip() != "false":
        return []
    return sorted((git("rev-list", "--max-parents=0", "HEAD") or "").split())


def _read_meta(conn: Connection, db: Database) -> dict[str, str]:
    return q.read_meta_of(conn, db.display_url)
