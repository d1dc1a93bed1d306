"""Tasks: design documents in the project, found by id prefix, name or path."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from phasegate.config import STATE_DIR, Project
from phasegate.errors import Ambiguous, InvalidInput, NotFound
from phasegate.store import queries as q
from phasegate.store.database import Database
from phasegate.timekeeping import Clock
from phasegate.workspace import RepositoryError, read_without_links


class Tasks:
    """The tasks of one project."""

    def __init__(self, project: Project, db: Database, clock: Clock) -> None:
        self.project = project
        self.db = db
        self.clock = clock

    def add(self, design: str | Path, name: str | None = None) -> dict[str, Any]:
        """Register a design document as a task; the file must exist in the project."""
        path = self._design_path(design)
        rel = path.relative_to(self.project.root).as_posix()
        name = name or path.stem
        with self.db.write() as conn:
            existing = [t for t in q.find_tasks(conn, rel) if t["design_path"] == rel]
            if existing:
                return dict(existing[0])
            if q.find_tasks(conn, name):
                name = f"{name}-{uuid.uuid4().hex[:6]}"
            row = {
                "id": uuid.uuid4().hex,
                "name": name,
                "design_path": rel,
                "created_at": self.clock(),
            }
            q.insert_task(conn, row)
        return row

    def list(self) -> list[dict[str, Any]]:
        with self.db.read() as conn:
            return [dict(t) for t in q.list_tasks(conn)]

    def resolve(self, ref: str, *, create: bool = True) -> dict[str, Any]:
        """A task by id prefix, name or design path; a new design file is added as a task."""
        if "\x00" in ref:
            raise InvalidInput(
                "a task reference can't contain a NUL character; pass a name or path"
            )
        with self.db.read() as conn:
            found = q.find_tasks(conn, ref)
            if not found:
                candidate = self._relative_design(ref)
                found = q.find_tasks(conn, candidate) if candidate else []
        if len(found) == 1:
            return dict(found[0])
        if len(found) > 1:
            raise Ambiguous(f"task {ref!r} matches {len(found)} tasks; use more of the id")
        if create and self._relative_design(ref):
            return self.add(ref)
        raise NotFound(
            f"no task {ref!r}; list tasks with `phasegate task ls` or pass a design file"
        )

    def _relative_design(self, ref: str) -> str | None:
        path = self._locate(ref)
        try:
            return path.relative_to(self.project.root).as_posix() if path.is_file() else None
        except ValueError:
            return None

    def _locate(self, design: str | Path) -> Path:
        """A design path as given: absolute, or relative to the cwd, else to the project."""
        path = Path(design)
        if path.is_absolute():
            return path.resolve()
        in_cwd = (Path.cwd() / path).resolve()
        return in_cwd if in_cwd.is_file() else (self.project.root / path).resolve()

    def _design_path(self, design: str | Path) -> Path:
        path = self._locate(design)
        if not path.is_file():
            raise NotFound(f"design file {design} does not exist; write it first, then add it")
        try:
            relative = path.relative_to(self.project.root).as_posix()
        except ValueError:
            raise InvalidInput(
                f"design file {path} is outside the project {self.project.root}; move it inside"
            ) from None
        if relative.split("/")[0] == STATE_DIR:
            raise InvalidInput(
                f"design file {relative} is in phasegate's own {STATE_DIR}/ (worktrees, state); "
                "put designs in the project itself"
            )
        try:
            read_without_links(self.project.root, relative).decode("utf-8")
        except (RepositoryError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"can't read design file {relative}: {exc}") from exc
        return path
