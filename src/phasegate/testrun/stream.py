"""The evidence stream: per-test results the harness sent while the tests ran, and its cross-check.

`harness/evidence.py` writes one JSON line per event to a pipe phasegate
holds outside the sandbox; `StreamReader` drains it while the run goes on and
`parse_stream` turns the lines into a `StreamEvidence`. `disagreement` then
compares the three accounts of a run (the stream, the JUnit report, the exit
status): any difference means something rewrote one of them, and the run
fails. The stream is hostile input too: lines are capped, malformed lines are
counted, and duplicates are kept so that a result can't be "corrected" later.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field

from phasegate.testrun.junit import JUnitReport

MAX_STREAM_BYTES = 32 << 20


class StreamReader(threading.Thread):
    """Read a pipe to EOF into memory, up to MAX_STREAM_BYTES."""

    def __init__(self, fd: int) -> None:
        super().__init__(name="testrun-evidence", daemon=True)
        self._fd = fd
        self._chunks: list[bytes] = []
        self.size = 0
        self.overflowed = False

    def run(self) -> None:
        try:
            while chunk := os.read(self._fd, 1 << 16):
                if self.size + len(chunk) > MAX_STREAM_BYTES:
                    self.overflowed = True
                    continue  # keep draining so the writer never blocks
                self._chunks.append(chunk)
                self.size += len(chunk)
        except OSError:
            pass
        finally:
            os.close(self._fd)

    def text(self) -> str:
        return b"".join(self._chunks).decode(errors="replace")


@dataclass
class StreamEvidence:
    """What the harness said while the run happened."""

    starts: int = 0
    finishes: list[int] = field(default_factory=list)
    collected: list[str] | None = None
    outcomes: dict[str, str] = field(default_factory=dict)  # test id → passed|failed|error|skipped
    collect_errors: list[str] = field(default_factory=list)
    tampering: list[str] = field(default_factory=list)
    plugin_paths: list[str] = field(default_factory=list)
    malformed: int = 0
    overflowed: bool = False


def parse_stream(text: str, *, overflowed: bool = False) -> StreamEvidence:
    """Fold the stream's lines into one account; never raises on bad input."""
    stream = StreamEvidence(overflowed=overflowed)
    phases: dict[str, dict[str, str]] = {}
    for line in text.splitlines():
        try:
            record = json.loads(line)
            _apply(stream, phases, record)
        except (ValueError, TypeError, KeyError, AttributeError):
            stream.malformed += 1
    stream.outcomes = {test_id: _outcome(seen) for test_id, seen in phases.items()}
    return stream


def _apply(stream: StreamEvidence, phases: dict[str, dict[str, str]], record: dict) -> None:  # type: ignore[type-arg]
    kind = record["e"]
    if kind == "start":
        stream.starts += 1
    elif kind == "finish":
        stream.finishes.append(int(record["exitstatus"]))
    elif kind == "collected":
        if stream.collected is not None:
            raise ValueError("collected twice")
        stream.collected = [str(i) for i in record["ids"]]
    elif kind == "report":
        seen = phases.setdefault(str(record["id"]), {})
        when, outcome = str(record["when"]), str(record["outcome"])
        if when in seen and seen[when] != outcome:
            raise ValueError("a result was reported twice, differently")
        seen[when] = outcome
    elif kind == "collect_error":
        stream.collect_errors.append(str(record["id"]))
    elif kind == "tamper":
        stream.tampering.append(str(record["what"]))
    elif kind == "plugins":
        stream.plugin_paths = [str(p) for p in record["paths"]]
    else:
        raise ValueError(f"unknown record {kind!r}")


def _outcome(seen: dict[str, str]) -> str:
    """One test's result from its setup/call/teardown reports, as the JUnit report classes it."""
    if seen.get("call") == "failed":
        return "failed"
    if "failed" in (seen.get("setup"), seen.get("teardown")):
        return "error"
    if "skipped" in (seen.get("setup"), seen.get("call")):
        return "skipped"
    return "passed" if seen.get("call") == "passed" else "error"


def disagreement(stream: StreamEvidence, report: JUnitReport | None, exit_code: int | None) -> str:
    """Why the stream, the report and the exit status don't tell one story; "" if they do."""
    if stream.overflowed:
        return "the evidence stream exceeded its size limit"
    if stream.malformed:
        return f"{stream.malformed} lines of the evidence stream were not phasegate's"
    if not (stream.starts or stream.finishes or stream.outcomes) and report is None:
        return ""  # pytest stopped before its session began (a broken conftest): exit code rules
    if stream.starts != 1:
        return f"the harness started {stream.starts} times"
    if len(stream.finishes) != 1:
        return (
            "the harness never finished (something ended the run early)"
            if not stream.finishes
            else f"the harness finished {len(stream.finishes)} times"
        )
    if stream.finishes[0] != exit_code:
        return f"pytest finished with status {stream.finishes[0]} but the run exited {exit_code}"
    if report is None:
        return "" if not stream.outcomes else "the tests ran but no JUnit report was written"
    return _compare_report(stream, report)


def _compare_report(stream: StreamEvidence, report: JUnitReport) -> str:
    # Counts, not ids: the report's ids are rebuilt from dotted class names, the
    # stream's are pytest's own, and a rewrite that kept every count gains nothing
    # because the verdict reads the stream's ids.
    junit = [t.outcome for t in report.tests if not _collection_error(t.id)]
    ours = list(stream.outcomes.values())
    if len(junit) != len(ours):
        return f"the report lists {len(junit)} tests but {len(ours)} ran"
    if junit.count("passed") != ours.count("passed"):
        return f"the report says {junit.count('passed')} passed but {ours.count('passed')} did"
    return ""


def _collection_error(test_id: str) -> bool:
    return test_id.endswith(".py") and "::" not in test_id
