"""Tasks: design documents in the project, found by id prefix, name or path.

A task may also start from a short request (for the `spec` workflow): the
request is written as a stub design document, which a designer agent then
turns into the design in the session's worktree.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

from phasegate.config import STATE_DIR, Project
from phasegate.errors import Ambiguous, InvalidInput, NotFound, PermissionDenied
from phasegate.store import queries as q
from phasegate.store.database import Database
from phasegate.timekeeping import Clock
from phasegate.workspace import RepositoryError, read_without_links
from phasegate.workspace.git import Git

MAX_REQUEST_CHARS = 20_000
REQUEST_DIR = "designs"  # where a request's stub design document is written
DESIGN_SUFFIXES = (".md", ".markdown")  # what an agent may name as a new task's design


def _slug(text: str) -> str:
    """A file-name-safe task name from its first words: 'Add a slugify()' → 'add-a-slugify'."""
    words = re.findall(r"[a-z0-9]+", text.lower())[:6]
    return "-".join(words)[:60].strip("-")


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

    def add_request(self, request: str, name: str | None = None) -> dict[str, Any]:
        """Register a short request as a task: its stub design is written to designs/<name>.md."""
        text = request.strip()
        if not text:
            raise InvalidInput(
                "the request is empty; say in a sentence or two what to build, "
                'e.g. --request "a slugify(text) function for URLs"'
            )
        if len(request) > MAX_REQUEST_CHARS:
            raise InvalidInput(
                f"the request is {len(request):,} characters, over the {MAX_REQUEST_CHARS:,} "
                "allowed; shorten it, or write a design file and `phasegate task add` that"
            )
        if "\x00" in request:
            raise InvalidInput("the request contains a NUL character; pass plain text")
        slug = _slug(name or text)
        if not slug:
            raise InvalidInput("the task name has no letters or digits; pass --name NAME")
        folder = self.project.root / REQUEST_DIR
        if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
            raise InvalidInput(
                f"{REQUEST_DIR}/ in the project is a link or a file, not a folder; "
                "make it a plain folder (phasegate writes request designs there)"
            )
        path = folder / f"{slug}.md"
        rel = path.relative_to(self.project.root).as_posix()
        if path.exists() or path.is_symlink():
            raise InvalidInput(
                f"{rel} already exists; pass another --name, or `phasegate task add {rel}`"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "x", encoding="utf-8") as handle:  # never over a file made meanwhile
            handle.write(f"# {slug}\n\n## Request\n\n{text}\n")
        return self.add(path, slug)

    def list(self) -> list[dict[str, Any]]:
        with self.db.read() as conn:
            return [dict(t) for t in q.list_tasks(conn)]

    def resolve(self, ref: str, *, create: bool = True, by_agent: bool = False) -> dict[str, Any]:
        """A task by id prefix, name or design path; a new design file is added as a task.

        `by_agent`: an agent may add only a design committed to the repository (`_agent_may_add`).
        """
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
        relative = self._relative_design(ref) if create else None
        if relative:
            if by_agent:
                self._design_path(ref)  # its own refusals first (outside, in .phasegate/, …)
                self._agent_may_add(relative)
            return self.add(ref)
        raise NotFound(
            f"no task {ref!r}; list tasks with `phasegate task ls` or pass a design file"
        )

    def _agent_may_add(self, relative: str) -> None:
        """An agent names a file as its design, and phasegate sends the agent the file's text:
        only a Markdown file committed to the repository, outside dot-folders, may be one.
        Anything else (`.env`, `.git/config`, a harness's token file) could be a secret."""
        parts = relative.split("/")
        committed = (
            Git(self.project.root)
            .run("ls-files", "--error-unmatch", "--", relative, ok_codes=(0, 1))
            .returncode
            == 0
        )
        if not (
            Path(relative).suffix.lower() in DESIGN_SUFFIXES
            and not any(part.startswith(".") for part in parts)
            and committed
        ):
            raise PermissionDenied(
                f"{relative} is not a design an agent may start from: an agent may start a "
                "session on an existing task, or on a Markdown design committed to the "
                "repository; ask a human to add it (phasegate task add)"
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
