"""Parse JUnit XML reports (pytest's xunit1/xunit2 and generic JUnit) into test results.

Test ids follow pytest's node ids (`tests/test_x.py::TestC::test_y[1]`), so
they can be compared with the ids a human approved. pytest's xunit2 report
has only a dotted `classname`, so the module part is found by looking for the
`.py` file under `root` when one is given, and by a naming heuristic if not.

The XML comes from code under test, so it is hostile input: DOCTYPE and
entity declarations are refused before parsing (no entity expansion, no
external fetches) and the size is capped.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from phasegate.testrun.errors import ReportError

Outcome = Literal["passed", "failed", "error", "skipped"]

MAX_REPORT_BYTES = 64 * 1024 * 1024
_MESSAGE_CHARS = 1024
_TRACEBACK_CHARS = 2048
_TRACEBACK_HEAD = 512  # the start says where it began; the end says what went wrong
_SEVERITY: dict[Outcome, int] = {"passed": 0, "skipped": 1, "failed": 2, "error": 3}
_CHILD_OUTCOMES: dict[str, Outcome] = {"failure": "failed", "error": "error", "skipped": "skipped"}


@dataclass(frozen=True)
class TestCaseResult:
    """One test's outcome; `traceback` is an excerpt of at most 2048 characters."""

    __test__ = False  # not a pytest test class

    id: str
    outcome: Outcome
    message: str = ""
    traceback: str = ""


@dataclass(frozen=True)
class JUnitReport:
    """All test cases in a report, one per id, in report order."""

    tests: tuple[TestCaseResult, ...]

    def counts(self) -> dict[str, int]:
        """Return total, passed, failed, errors and skipped counts."""
        outcomes = [t.outcome for t in self.tests]
        return {
            "total": len(outcomes),
            "passed": outcomes.count("passed"),
            "failed": outcomes.count("failed"),
            "errors": outcomes.count("error"),
            "skipped": outcomes.count("skipped"),
        }


def parse_junit(xml_bytes: bytes, root: Path | None = None) -> JUnitReport:
    """Parse a JUnit XML report; `root` is the directory test file paths are relative to."""
    _refuse_unsafe(xml_bytes)
    try:
        doc = ET.fromstring(xml_bytes)
    except ET.ParseError as exc:
        raise ReportError(
            f"the JUnit report is not well-formed XML ({exc}); "
            "the test run was probably interrupted while writing it"
        ) from exc
    if doc.tag not in ("testsuites", "testsuite"):
        raise ReportError(
            f"the JUnit report's root element is <{doc.tag}>, expected <testsuites> or "
            "<testsuite>; check the runner's report format option"
        )
    pytest_style = any(s.get("name", "").startswith("pytest") for s in doc.iter("testsuite"))
    merged: dict[str, TestCaseResult] = {}
    for case in doc.iter("testcase"):
        result = _case_result(case, root, pytest_style)
        earlier = merged.get(result.id)
        # pytest may report one test twice (a call failure plus a teardown error): keep the worst.
        if earlier is None or _SEVERITY[result.outcome] > _SEVERITY[earlier.outcome]:
            merged[result.id] = result
    return JUnitReport(tuple(merged.values()))


def _refuse_unsafe(xml_bytes: bytes) -> None:
    if len(xml_bytes) > MAX_REPORT_BYTES:
        raise ReportError(
            f"the JUnit report is {len(xml_bytes)} bytes, more than the "
            f"{MAX_REPORT_BYTES} phasegate reads; reduce captured output in the report"
        )
    if xml_bytes.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\0" in xml_bytes[:4096]:
        # A byte scan for DOCTYPE below only works on ASCII-compatible encodings.
        raise ReportError("the JUnit report is not UTF-8; configure the runner to write UTF-8")
    lowered = xml_bytes.lower()
    if b"<!doctype" in lowered or b"<!entity" in lowered:
        raise ReportError(
            "the JUnit report contains a DOCTYPE or ENTITY declaration, which phasegate "
            "refuses (entity expansion attacks); test runners never need one"
        )


def _case_result(case: ET.Element, root: Path | None, pytest_style: bool) -> TestCaseResult:
    outcome: Outcome = "passed"
    detail: ET.Element | None = None
    for child in case:
        found = _CHILD_OUTCOMES.get(child.tag)
        if found is not None and _SEVERITY[found] > _SEVERITY[outcome]:
            outcome, detail = found, child
    message = (detail.get("message") or "") if detail is not None else ""
    text = (detail.text or "") if detail is not None else ""
    return TestCaseResult(
        id=node_id(
            case.get("classname", ""),
            case.get("name", ""),
            case.get("file"),
            root,
            pytest_style=pytest_style,
        ),
        outcome=outcome,
        message=message[:_MESSAGE_CHARS],
        traceback=_excerpt(text),
    )


def _excerpt(text: str) -> str:
    if len(text) <= _TRACEBACK_CHARS:
        return text
    marker = "\n…\n"
    tail = _TRACEBACK_CHARS - _TRACEBACK_HEAD - len(marker)
    return text[:_TRACEBACK_HEAD] + marker + text[-tail:]


def node_id(
    classname: str,
    name: str,
    file: str | None = None,
    root: Path | None = None,
    *,
    pytest_style: bool = True,
) -> str:
    """Build a pytest-style node id from a JUnit test case's attributes."""
    parts = classname.split(".") if classname else []
    if not parts:
        # pytest reports a module that failed to import as classname="" name="pkg.mod".
        module = _module_path(name.split("."), root)
        if module is None and pytest_style:
            module = _module_path_by_name(name.split("."))
        return module[0] if module and not module[1] else name
    if file:
        module_parts = file.removesuffix(".py").replace("\\", "/").split("/")
        classes = parts[len(module_parts) :] if parts[: len(module_parts)] == module_parts else []
        return "::".join([file.replace("\\", "/"), *classes, name])
    found = _module_path(parts, root)
    if found is None and pytest_style:
        found = _module_path_by_name(parts)
    if found is None:
        return f"{classname}::{name}"
    path, classes = found
    return "::".join([path, *classes, name])


def _module_path(parts: list[str], root: Path | None) -> tuple[str, list[str]] | None:
    """Find the longest dotted prefix of `parts` that is a `.py` file under `root`."""
    if root is None or any(not p or p.startswith(".") for p in parts):
        return None
    for cut in range(len(parts), 0, -1):
        relative = "/".join(parts[:cut]) + ".py"
        if (root / relative).is_file():
            return relative, parts[cut:]
    return None


def _module_path_by_name(parts: list[str]) -> tuple[str, list[str]]:
    """Guess the module/class split the way pytest names things: classes start uppercase."""
    cut = next((i for i, p in enumerate(parts) if p[:1].isupper()), len(parts))
    if cut == 0:
        return parts[0] + ".py", parts[1:]
    return "/".join(parts[:cut]) + ".py", parts[cut:]
