"""The evidence of one test run: what phasegate itself observed, ready to store and show."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from phasegate.testrun.errors import ReportError
from phasegate.testrun.junit import TestCaseResult

Status = Literal["passed", "failed", "error"]

_COUNT_KEYS = ("total", "passed", "failed", "errors", "skipped")


def empty_counts() -> dict[str, int]:
    """Return counts for a run that produced no report."""
    return dict.fromkeys(_COUNT_KEYS, 0)


@dataclass(frozen=True)
class TestRunEvidence:
    """One run's verdict and why; `infrastructure` runs must not count as a fix attempt."""

    __test__ = False  # not a pytest test class

    status: Status
    reason: str
    infrastructure: bool
    exit_code: int | None
    duration_s: float
    command: str
    commit: str
    counts: dict[str, int] = field(default_factory=empty_counts)
    failures: tuple[TestCaseResult, ...] = ()
    collected: tuple[str, ...] = ()
    output_tail: str = ""
    sandbox: str = "none"  # how the run was confined: "bwrap", "bwrap +network" or "none"
    flags: tuple[str, ...] = ()  # harness tampering found, "path:line: why: code"
    killed_by: str | None = None  # the limit that ended the run, if one did
    names_tests: bool = False  # pytest, or a configured JUnit report: the run can name its tests
    # The command or phasegate, not the code, stopped the run: a human fixes the setup.
    setup_error: bool = False

    @property
    def unsandboxed(self) -> bool:
        """Whether the run had no sandbox: its evidence deserves less trust."""
        return self.sandbox == "none"

    @property
    def flagged(self) -> bool:
        """Whether the run found code reaching into the test harness: a human must look."""
        return bool(self.flags)

    @property
    def counts_as_attempt(self) -> bool:
        """Whether this run should use up one of the session's fix attempts."""
        return self.status != "passed" and not self.infrastructure and not self.setup_error

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-compatible dict (for event payloads)."""
        data = asdict(self)
        data["failures"] = [asdict(f) for f in self.failures]
        data["collected"] = list(self.collected)
        data["flags"] = list(self.flags)
        return data

    def to_json(self) -> str:
        """Return the evidence as a JSON document."""
        return json.dumps(self.to_dict(), ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TestRunEvidence:
        """Rebuild evidence from `to_dict` output."""
        try:
            return cls(
                status=data["status"],
                reason=data["reason"],
                infrastructure=bool(data["infrastructure"]),
                exit_code=data["exit_code"],
                duration_s=float(data["duration_s"]),
                command=data["command"],
                commit=data["commit"],
                counts={k: int(data["counts"].get(k, 0)) for k in _COUNT_KEYS},
                failures=tuple(TestCaseResult(**f) for f in data["failures"]),
                collected=tuple(data["collected"]),
                output_tail=data["output_tail"],
                # Runs recorded before sandboxing carry none of these: they were unsandboxed.
                sandbox=str(data.get("sandbox", "none")),
                flags=tuple(str(f) for f in data.get("flags", ())),
                killed_by=data.get("killed_by"),
                names_tests=bool(data.get("names_tests", False)),
                setup_error=bool(data.get("setup_error", data["infrastructure"])),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ReportError(
                f"stored test-run evidence is incomplete or malformed ({exc!r}); "
                "it was not written by TestRunEvidence.to_json"
            ) from exc

    @classmethod
    def from_json(cls, text: str) -> TestRunEvidence:
        """Rebuild evidence from `to_json` output."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ReportError(f"stored test-run evidence is not JSON ({exc})") from exc
        if not isinstance(data, dict):
            raise ReportError("stored test-run evidence is not a JSON object")
        return cls.from_dict(data)


def summarize(evidence: TestRunEvidence, *, max_failures: int = 10) -> str:
    """Return a short human-readable report: the verdict, counts, and the first failures."""
    c = evidence.counts
    lines = [
        f"{evidence.status.upper()}: {evidence.reason}",
        f"commit {evidence.commit[:12]} · {evidence.duration_s:.1f} s · exit "
        f"{'none (killed)' if evidence.exit_code is None else evidence.exit_code}",
    ]
    if c["total"]:
        lines.append(
            f"{c['total']} tests: {c['passed']} passed, {c['failed']} failed, "
            f"{c['errors']} errors, {c['skipped']} skipped"
        )
    if evidence.unsandboxed:
        lines.append('UNSANDBOXED: this run was not confined (sandbox = "none")')
    if evidence.infrastructure:
        lines.append("not the code's fault: this run does not count as a fix attempt")
    for flag in evidence.flags[:max_failures]:
        lines.append(f"  FLAGGED {flag}")
    for failure in evidence.failures[:max_failures]:
        first_line = failure.message.splitlines()[0] if failure.message else ""
        lines.append(f"  {failure.outcome.upper():7} {failure.id}  {first_line}".rstrip())
    if len(evidence.failures) > max_failures:
        lines.append(f"  … and {len(evidence.failures) - max_failures} more")
    return "\n".join(lines)
