"""What the timeline keeps of an agent CLI's output: its text, its tool calls, how it ended."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from phasegate.agents.harness_clis import (
    CLIS,
    STEP_CHARS,
    TRANSCRIPT_CHARS,
    TRANSCRIPT_STEPS,
    Step,
    bounded,
)

CLAUDE_LINES = [
    {"type": "system", "subtype": "init", "tools": ["mcp__phasegate__submit_tests"]},
    {
        "type": "assistant",
        "message": {
            "content": [
                {"type": "text", "text": "Reading the session first."},
                {
                    "type": "tool_use",
                    "name": "mcp__phasegate__submit_tests",
                    "input": {"session_id": "abc", "files": [{"path": "t.py", "content": "x"}]},
                },
            ]
        },
    },
    {"type": "user", "message": {"content": [{"type": "tool_result", "content": "{}"}]}},
    {"type": "result", "subtype": "success", "is_error": False, "result": "Submitted."},
]
CODEX_LINES = [
    {"type": "thread.started", "thread_id": "t1"},
    {"type": "item.completed", "item": {"type": "reasoning", "text": "The phase wants tests."}},
    {
        "type": "item.completed",
        "item": {
            "type": "mcp_tool_call",
            "server": "phasegate",
            "tool": "fix_failures",
            "arguments": {"session_id": "abc", "note": "n" * 200},
        },
    },
    {"type": "item.completed", "item": {"type": "agent_message", "text": "Done."}},
    {"type": "turn.completed", "usage": {}},
]
GEMINI_LINES = [
    {"type": "init", "session_id": "s"},
    {"type": "message", "role": "user", "content": "the prompt"},
    {"type": "message", "role": "assistant", "content": "I will ", "delta": True},
    {"type": "message", "role": "assistant", "content": "submit.", "delta": True},
    {
        "type": "tool_use",
        "tool_name": "mcp_phasegate_submit_implementation",
        "parameters": {"session_id": "abc"},
    },
    {"type": "tool_result", "tool_id": "1", "status": "success", "output": "{}"},
    {"type": "result", "status": "success", "stats": {}},
]


def _steps(name: str, lines: list[object]) -> list[Step]:
    return list(CLIS[name].steps(json.dumps(line) + "\n" for line in lines))


def test_claude_code_stream_json_becomes_text_tool_and_result_steps() -> None:
    """File contents never reach the timeline: a list argument shows as its length."""
    assert _steps("claude", CLAUDE_LINES) == [
        Step("text", "Reading the session first."),
        Step("tool", "submit_tests(session_id=abc, files=[1 item(s)])"),
        Step("result", "Submitted."),
    ]


def test_codex_json_events_become_steps_with_long_arguments_cut() -> None:
    """A long argument is cut at 80 characters in the tool step."""
    steps = _steps("codex", CODEX_LINES)
    assert [s.kind for s in steps] == ["text", "tool", "text", "result"]
    assert steps[1].text == f"fix_failures(session_id=abc, note={'n' * 80}…)"


def test_gemini_streamed_pieces_make_one_text_step() -> None:
    """The user's own prompt is not the agent's text; deltas join into one step."""
    assert _steps("gemini", GEMINI_LINES) == [
        Step("text", "I will submit."),
        Step("tool", "submit_implementation(session_id=abc)"),
        Step("result", "success"),
    ]


def test_lines_that_are_not_json_are_kept_as_text() -> None:
    """A CLI printing garbage still shows what it printed."""
    steps = list(CLIS["claude"].steps(["\x00 not json {{\n", "\n", "[1, 2]\n"]))
    assert steps == [Step("text", "\x00 not json {{"), Step("text", "[1, 2]")]


@given(st.lists(st.text(max_size=3000), max_size=600))
def test_a_transcript_is_bounded_and_keeps_its_first_and_last_steps(texts: list[str]) -> None:
    """At most TRANSCRIPT_STEPS steps (plus a marker), about TRANSCRIPT_CHARS of text, the first
    and the last step kept whole (to STEP_CHARS), and the marker counts what was left out."""
    steps = [Step("text", t) for t in texts]
    kept = bounded(steps)
    marker = [k for k in kept if k["text"].endswith("left out: the log has them all]")]
    real = [k for k in kept if k not in marker]
    assert len(real) <= TRANSCRIPT_STEPS
    assert sum(len(k["text"]) for k in kept) <= TRANSCRIPT_CHARS
    if marker:
        assert marker[0]["text"].startswith(f"[{len(steps) - len(real)} step(s)")
    else:
        assert len(real) == len(steps)
    if real:
        assert real[0]["text"] == texts[0][:STEP_CHARS]
    if len(real) > 1:
        assert real[-1]["text"] == texts[-1][:STEP_CHARS]
