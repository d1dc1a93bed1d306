"""The session page's evidence, shaped for reading: diffs per file, test results per test.

A reviewer reads a change file by file (a list first, then each file's diff),
and a run test by test, with failures grouped by reason so sixteen identical
`NotImplementedError` tracebacks read as one reason, sixteen tests.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from markupsafe import Markup

from phasegate.entrypoints.web.render import diff_html

MAX_DIFF_FILES = 60
_FILE_HEADER = re.compile(r"^diff --git a/(.*?) b/(.*)$")
_STATUS_LINES = (("new file", "added"), ("deleted file", "deleted"), ("rename from", "renamed"))


@dataclass
class FileDiff:
    path: str
    added: int = 0
    removed: int = 0
    status: str = "modified"  # added, deleted, renamed, modified
    lines: list[str] = field(default_factory=list)
    in_hunk: bool = False

    @property
    def anchor(self) -> str:
        return "file-" + re.sub(r"[^A-Za-z0-9_-]+", "-", self.path).strip("-")

    @property
    def html(self) -> Markup:
        return diff_html("\n".join(self.lines) + "\n")


def split_diff(text: str) -> list[FileDiff]:
    """A `git diff` cut into one entry per file, each with its added and removed line counts."""
    files: list[FileDiff] = []
    for line in text.splitlines():
        header = _FILE_HEADER.match(line)
        if header:
            files.append(FileDiff(header.group(2)))
            continue
        if not files:
            continue
        current = files[-1]
        if line.startswith("@@"):
            current.in_hunk = True
        elif current.in_hunk:
            current.added += line.startswith("+")
            current.removed += line.startswith("-")
        else:
            # Headers (new file mode, index, ---/+++): the file list says what they say.
            for prefix, status in _STATUS_LINES:
                current.status = status if line.startswith(prefix) else current.status
            continue
        current.lines.append(line)
    return files[:MAX_DIFF_FILES]


@dataclass(frozen=True)
class FailureGroup:
    """Tests that failed for the same reason, and one traceback standing for all of them."""

    reason: str
    where: str  # the traceback's last line: `ttl_cache.py:14: NotImplementedError`
    outcome: str
    tests: tuple[str, ...]
    traceback: str


def failure_groups(failures: Sequence[Mapping[str, Any]]) -> list[FailureGroup]:
    """Failures grouped by message and the line they ended at, the biggest group first."""
    groups: dict[tuple[str, str, str], list[Mapping[str, Any]]] = {}
    for failure in failures:
        key = (str(failure.get("outcome")), str(failure.get("message") or ""), _last_line(failure))
        groups.setdefault(key, []).append(failure)
    shaped = [
        FailureGroup(
            reason=message or "(no message)",
            where=where,
            outcome=outcome,
            tests=tuple(str(f.get("id")) for f in members),
            traceback=str(members[0].get("traceback") or ""),
        )
        for (outcome, message, where), members in groups.items()
    ]
    return sorted(shaped, key=lambda g: -len(g.tests))


def _last_line(failure: Mapping[str, Any]) -> str:
    lines = [x for x in str(failure.get("traceback") or "").splitlines() if x.strip()]
    return lines[-1].strip() if lines else ""


@dataclass(frozen=True)
class TestRow:
    __test__ = False  # not a pytest test class

    id: str
    outcome: str
    reason: str


def result_rows(evidence: Mapping[str, Any]) -> list[TestRow]:
    """One row per test the run collected (failures first), with its outcome and reason."""
    failed = {str(f.get("id")): f for f in evidence.get("failures") or []}
    counts = evidence.get("counts") or {}
    fine = "passed" if not counts.get("skipped") else "passed or skipped"
    ids = list(dict.fromkeys([*failed, *(str(i) for i in evidence.get("collected") or [])]))
    rows = [
        TestRow(i, str(failed[i].get("outcome")), str(failed[i].get("message") or ""))
        if i in failed
        else TestRow(i, fine, "")
        for i in ids
    ]
    return sorted(rows, key=lambda r: (r.id not in failed, r.id))
