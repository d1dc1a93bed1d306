"""A tool call that arrives while `phasegate mcp` is still opening gets the same checks as later.

The stdio server answers `initialize` at once and adds its tools in a thread;
a call written in the same breath as the handshake is held until then, and
must not skip the argument checks (a typo like `file=` would otherwise submit
whatever the worktree holds).
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.security.machine import APPROVED_TESTS, TEST_PATH, Machine

INIT = {
    "jsonrpc": "2.0",
    "id": 0,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "hostile", "version": "1"},
    },
}
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}


def answer(proc: subprocess.Popen[bytes], wanted: int, timeout_s: float = 60) -> dict[str, Any]:
    """The JSON-RPC answer with id `wanted`, read from the server's stdout."""
    buffer, deadline = b"", time.monotonic() + timeout_s
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            message = json.loads(line)
            if message.get("id") == wanted:
                return message  # type: ignore[no-any-return]
        if select.select([proc.stdout], [], [], 0.5)[0]:
            chunk = os.read(proc.stdout.fileno(), 1 << 20)
            assert chunk, "the server hung up"
            buffer += chunk
    raise TimeoutError(f"no answer to request {wanted}")


def head(worktree: Path) -> str:
    return subprocess.run(
        ["git", "-C", str(worktree), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout


@pytest.mark.parametrize("early", [True, False], ids=["with-the-handshake", "after-it"])
def test_a_typo_in_an_argument_is_refused_even_during_start_up(
    machine: Machine, early: bool
) -> None:
    """`file=` instead of `files=` is refused, and the worktree's scratch is not submitted."""
    sid = machine.project.json("start", "design.md")["id"]
    worktree = machine.worktree(sid)
    (worktree / "tests").mkdir(exist_ok=True)
    (worktree / "tests" / "test_scratch.py").write_text("def test_wip():\n    assert True\n")
    before = head(worktree)
    call = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {
            "name": "submit_tests",
            "arguments": {
                "session_id": sid,
                "file": [{"path": TEST_PATH, "content": APPROVED_TESTS}],
            },
        },
    }
    proc = subprocess.Popen(
        [machine.phasegate, "mcp", "--project", str(machine.project.root)],
        cwd=machine.project.root,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdin is not None
    try:
        messages = [INIT, INITIALIZED, call] if early else [INIT, INITIALIZED]
        proc.stdin.write(b"".join(json.dumps(m).encode() + b"\n" for m in messages))
        proc.stdin.flush()
        answer(proc, 0)
        if not early:
            proc.stdin.write(json.dumps(call).encode() + b"\n")
            proc.stdin.flush()
        result = answer(proc, 1)["result"]
    finally:
        proc.stdin.close()
        proc.wait(20)
    text = result["content"][0]["text"]
    assert result["isError"] is True
    assert text.startswith("Error: submit_tests: unknown argument 'file'")
    assert head(worktree) == before  # nothing was submitted
