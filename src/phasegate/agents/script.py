"""The `script` adapter: replays prepared files, for demos, tests and benchmarks.

A script directory holds one folder per submission kind, with the files to
submit at their paths in the project:

    <dir>/tests/tests/test_calc.py        submitted in generating_tests
    <dir>/implementation/calc.py          submitted in generating_implementation
    <dir>/fix/calc.py                     submitted in fixing_failures

A kind's folder may instead hold numbered attempts (`fix/1/…`, `fix/2/…`):
the n-th submission of that kind in a session replays folder n, or the
highest one if there are fewer. A `.note` file in the replayed folder becomes
the submission's note instead of being submitted.
"""

from __future__ import annotations

from pathlib import Path

from phasegate.agents.base import AgentCancelled, AgentFailed, Job, Submission
from phasegate.domain.workflow import SUBMIT_ACTIONS
from phasegate.errors import ConfigError

NOTE_FILE = ".note"


class ScriptAgent:
    """Submits the prepared files for the claimed session's phase, after an optional delay."""

    holds_claim = True
    submits_itself = False

    def __init__(self, script_dir: Path, *, delay_s: float = 0.0) -> None:
        if not script_dir.is_dir():
            raise ConfigError(
                f"script directory {script_dir} does not exist; pass --script-dir DIR"
            )
        self.script_dir = script_dir
        self.delay_s = delay_s

    def work(self, job: Job) -> Submission:
        """The files of this attempt's folder, as a submission."""
        kind = job.kind
        folder = self._folder(kind, self._attempt(job, kind))
        if job.cancelled.wait(self.delay_s):  # the agent's "thinking time", cut short by a cancel
            raise AgentCancelled("cancelled while thinking")
        files = [
            {
                "path": path.relative_to(folder).as_posix(),
                "content": path.read_text(encoding="utf-8"),
            }
            for path in sorted(folder.rglob("*"))
            if path.is_file() and path.name != NOTE_FILE
        ]
        note_file = folder / NOTE_FILE
        note = (
            note_file.read_text(encoding="utf-8") if note_file.is_file() else f"replayed {folder}"
        )
        return Submission(files=files, note=note)

    def _attempt(self, job: Job, kind: str) -> int:
        action = SUBMIT_ACTIONS[kind]
        earlier = sum(1 for event in job.orch.timeline(job.session.id) if event["action"] == action)
        return earlier + 1

    def _folder(self, kind: str, attempt: int) -> Path:
        base = self.script_dir / kind
        if not base.is_dir():
            raise AgentFailed(f"the script has no {kind}/ folder in {self.script_dir}")
        numbered = sorted(
            (int(p.name), p) for p in base.iterdir() if p.is_dir() and p.name.isdigit()
        )
        if not numbered:
            return base
        fitting = [p for n, p in numbered if n <= attempt]
        return fitting[-1] if fitting else numbered[0][1]
