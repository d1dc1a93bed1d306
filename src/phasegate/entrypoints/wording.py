"""Human words for workflow identifiers, for the sentences a person reads (the CLI's, for now).

`reopen_tests` and `awaiting_human_intervention` stay as they are wherever a
program reads them (JSON, MCP results, the audit log, error codes); a person
types `phasegate reopen-tests` and reads "awaiting human intervention".
"""

from __future__ import annotations

#: What a human decision did, as the start of "approved session 3f2a…".
DONE_WORDS = {
    "approve": "approved",
    "reject": "rejected",
    "retry": "retried",
    "rerun_tests": "reran the tests of",
    "reopen_tests": "reopened the tests of",
    "pause": "paused",
    "resume": "resumed",
    "cancel": "cancelled",
}


def command_name(action: str) -> str:
    """The CLI command a human types for a decision: `reopen_tests` → `reopen-tests`."""
    return action.replace("_", "-")


def phase_words(phase: str) -> str:
    """A phase in a sentence: `awaiting_human_intervention` → `awaiting human intervention`."""
    return phase.replace("_", " ")


def done_words(action: str) -> str:
    """What a decision did, in the past tense (`rerun_tests` → `reran the tests of`)."""
    return DONE_WORDS.get(action, f"{command_name(action)}:")
