"""What humans and agents are shown: refusals, setup errors, the kept configuration, stale sessions.

Each fact is provoked for real (a locked test touched, a test command that is
not there, an edited phasegate.toml, an agent gone quiet) and then read back
through `log`, `show`, `ls`, the dashboard, /metrics and `get_session_status`.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import pytest
from engine_helpers import GOOD_IMPL, GOOD_TESTS, drive, phasegate, run_cli, start
from starlette.testclient import TestClient
from tests.conftest import setup_error_at_verify

from mcp import Client
from phasegate.domain.principal import Principal
from phasegate.entrypoints.mcp import build_server
from phasegate.entrypoints.web import create_app
from phasegate.errors import SubmissionRefused
from phasegate.feed import EventFeed
from phasegate.orchestrator import Orchestrator

TESTS = [{"path": "tests/test_calc.py", "content": GOOD_TESTS}]
RED = "\x1b[31m"
YELLOW = "\x1b[33m"


@pytest.fixture
def cli_db(db_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The CLI (in this process or a subprocess) reads the test's database."""
    monkeypatch.setenv("PHASEGATE_DATABASE_URL", db_url)
    return db_url


@contextmanager
def dashboard(orch: Orchestrator) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """The dashboard in-process, and a human's bearer header for it."""
    _, token = orch.add_principal("human", "reviewer")
    app = create_app(
        orch,
        EventFeed(orch, poll_interval=0.1),
        allowed_hosts=["testserver"],
        secret=b"test-secret",
        mount_mcp=False,
    )
    with TestClient(app) as client:
        yield client, {"Authorization": f"Bearer {token}"}


def agent_status(orch: Orchestrator, agent: Principal, session_id: str) -> tuple[Any, str]:
    """get_session_status through the real MCP tool: its structured result and its text."""

    async def call() -> tuple[Any, str]:
        async with Client(build_server(orch, lambda: agent)) as client:
            result = await client.call_tool("get_session_status", {"session_id": session_id})
        assert not result.is_error
        return result.structured_content, result.content[0].text  # type: ignore[union-attr]

    return anyio.run(call)


def refused_then_at_final_review(orch: Orchestrator, human: Principal, agent: Principal) -> str:
    """A session whose coder once touched the approved tests, now at the final review."""
    sid = start(orch, human).id
    orch.submit(sid, "tests", agent, TESTS)
    orch.decide(sid, "approve", human)
    hack = [{"path": "calc.py", "content": GOOD_IMPL}, {**TESTS[0], "content": "x = 1\n"}]
    with pytest.raises(SubmissionRefused):
        orch.submit(sid, "implementation", agent, hack)
    orch.submit(sid, "implementation", agent, [{"path": "calc.py", "content": GOOD_IMPL}])
    session, _ = orch.run_tests(sid, agent)
    assert session.phase == "awaiting_final_review"
    return sid


def test_a_refusal_stands_out_in_log_and_show(
    orch: Orchestrator, human: Principal, agent: Principal, cli_db: str
) -> None:
    """`log` says REFUSED with the cause and the paths (never the code); `show` counts it."""
    sid = refused_then_at_final_review(orch, human, agent)
    root = str(orch.project.root)

    code, log, _ = phasegate("--project", root, "log", sid)
    assert code == 0
    assert (
        "REFUSED submit_implementation: touched a locked test — calc.py, tests/test_calc.py "
        "(cause locked_test)"
    ) in log
    assert "tests/test_calc.py': is an approved test" in log  # the reason names the culprit
    assert "x = 1" not in log and "return a + b" not in log

    code, shown, _ = phasegate("--project", root, "show", sid)
    assert code == 0
    assert "refused  1 submission (last: locked_test — calc.py, tests/test_calc.py)" in shown


def test_a_refusal_is_told_to_the_agent_and_shown_at_the_gate(
    orch: Orchestrator, human: Principal, agent: Principal
) -> None:
    """get_session_status carries `refusals` and says so; the reviewer sees it by the buttons."""
    sid = refused_then_at_final_review(orch, human, agent)

    status, text = agent_status(orch, agent, sid)
    assert status["refusals"]["count"] == 1
    (refusal,) = status["refusals"]["recent"]
    assert (refusal["submission"], refusal["cause"], refusal["by"]) == (
        "submit_implementation",
        "locked_test",
        agent.name,
    )
    assert refusal["paths"] == ["calc.py", "tests/test_calc.py"]
    assert "1 submission to this session was refused so far" in status["message"]
    assert "was refused so far" in text and "x = 1" not in text
    assert status["setup_error"] is None and status["stale"] is False

    seq = next(e["seq"] for e in orch.timeline(sid) if e["action"] == "submission_refused")
    with dashboard(orch) as (client, headers):
        html = client.get(f"/sessions/{sid}", headers=headers).text
    decide = html.split('id="decide"', 1)[1].split("</section>", 1)[0]
    assert ">Approve</button>" in decide
    assert "1 refused submission</strong>" in decide and f'href="#event-{seq}"' in decide
    entry = html.split(f'id="event-{seq}"', 1)[1].split("</li>", 1)[0]
    assert "REFUSED submit_implementation: touched a locked test" in entry
    assert 'class="ev ev-agent ev-refused"' in html.split(f'id="event-{seq}"', 1)[0][-60:]


def test_a_setup_error_is_shown_in_red_with_the_setting_to_fix(
    orch: Orchestrator,
    human: Principal,
    agent: Principal,
    cli_db: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A missing test command: `show` in red names the fix and the retry; the page, a banner."""
    session = orch.get(setup_error_at_verify(orch, human, agent))
    assert session.phase == "awaiting_human_intervention"
    fix = session.context["setup_error"]["fix"]
    assert fix.startswith("test_command")

    monkeypatch.setenv("FORCE_COLOR", "1")  # rich colours what it prints to a pipe
    monkeypatch.setenv("TERM", "xterm")
    shown = run_cli(orch.project.root, "show", session.id, db_url=cli_db)
    assert shown.returncode == 0, shown.stderr
    assert re.search(rf"{re.escape(RED)}setup error at the test run: .*not found", shown.stdout)
    assert f"{RED}         fix: {fix}; then: phasegate retry {session.short_id}" in shown.stdout

    status, _ = agent_status(orch, agent, session.id)
    assert status["setup_error"]["fix"] == fix and status["setup_error"]["at"] == "verify"
    assert "A human is fixing the test setup" in status["next_action"]
    assert "wait_for_decision" in status["next_action"]

    with dashboard(orch) as (client, headers):
        html = client.get(f"/sessions/{session.id}", headers=headers).text
        listed = client.get("/", headers=headers).text
    banner = html.split('id="setup-error"', 1)[1].split("</div>", 1)[0]
    assert "not found" in banner and f"<strong>{fix}</strong>" in banner
    assert html.index('id="setup-error"') < html.index('id="decide"')  # at the top
    human_section = listed.split('id="section-human"', 1)[1].split("</section>", 1)[0]
    assert f'data-session="{session.id}"' in human_section

    orch.project.settings = orch.project.settings.model_copy(update={"test_command": "pytest"})
    orch.decide(session.id, "retry", human)
    shown = run_cli(orch.project.root, "show", session.id, db_url=cli_db)
    assert "setup error" not in shown.stdout  # the human decided: it is history


def test_show_names_the_configuration_the_session_started_with(
    orch: Orchestrator, human: Principal, cli_db: str
) -> None:
    """After phasegate.toml changes, `show` and the page still show the session's own values."""
    session = start(orch, human)
    config = session.context["config"]
    toml = orch.project.root / "phasegate.toml"
    toml.write_text('test_command = "tox -e py"\nmax_fix_attempts = 9\n')

    code, shown, err = phasegate("--project", str(orch.project.root), "show", session.id)
    assert code == 0, err
    line = next(x for x in shown.splitlines() if x.startswith("config "))
    assert line.startswith(f"config   {config['hash']}  ")
    command = json.dumps(config["values"]["test_command"])
    assert f"test_command={command}" in line and "max_fix_attempts=2" in line
    assert f"sandbox={config['values']['sandbox']['mode']}" in line
    assert "tox" not in shown and "max_fix_attempts=9" not in shown

    as_json = json.loads(
        phasegate("--project", str(orch.project.root), "show", session.id, "--json")[1]
    )
    assert as_json["context"]["config"] == config

    with dashboard(orch) as (client, headers):
        html = client.get(f"/sessions/{session.id}", headers=headers).text
    details = html.split('id="config"', 1)[1].split("</details>", 1)[0]
    assert config["hash"] in details and "max_fix_attempts" in details and "tox" not in details


def test_a_session_waiting_on_an_agent_too_long_is_stale(
    orch: Orchestrator,
    human: Principal,
    agent: Principal,
    cli_db: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Past stale_after_s an agent's session is stale (ls, dashboard, /metrics); a human's isn't."""
    toml = orch.project.root / "phasegate.toml"
    toml.write_text(toml.read_text() + "stale_after_s = 0.05\n")
    orch.project.settings = orch.project.settings.model_copy(update={"stale_after_s": 0.05})
    quiet = start(orch, human).id  # waits on agent:tester
    gate = drive(orch, start(orch, human).id, "awaiting_test_review").id
    paused = start(orch, human).id
    orch.decide(paused, "pause", human)
    time.sleep(0.1)

    listed = {
        v["id"]: v
        for v in json.loads(phasegate("--project", str(orch.project.root), "ls", "--json")[1])
    }
    assert {sid: listed[sid]["stale"] for sid in (quiet, gate, paused)} == {
        quiet: True,
        gate: False,
        paused: False,
    }

    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("TERM", "xterm")
    table = run_cli(orch.project.root, "ls", db_url=cli_db).stdout
    rows = {sid: next(x for x in table.splitlines() if sid[:8] in x) for sid in (quiet, gate)}
    assert f"{YELLOW}agent:tester (stale)" in rows[quiet]
    assert "stale" not in rows[gate]

    status, _ = agent_status(orch, agent, quiet)
    assert status["stale"] is True

    with dashboard(orch) as (client, headers):
        html = client.get("/", headers=headers).text
        metrics = client.get("/metrics").text
    row = {sid: html.split(f'data-session="{sid}"', 1)[1].split("</tr>", 1)[0] for sid in listed}
    assert "badge-stale" in row[quiet]
    assert "badge-stale" not in row[gate] and "badge-stale" not in row[paused]
    assert re.search(r"^phasegate_sessions_stale 1\.0$", metrics, re.MULTILINE), metrics


def test_nothing_is_stale_before_stale_after_s(orch: Orchestrator, human: Principal) -> None:
    """A session that just started waiting on its agent is not stale (default: half an hour)."""
    session = start(orch, human)
    assert orch.view(session)["stale"] is False
    with dashboard(orch) as (client, _):
        metrics = client.get("/metrics").text
    assert re.search(r"^phasegate_sessions_stale 0\.0$", metrics, re.MULTILINE), metrics


def test_agent_text_reaches_the_terminal_written_out_never_raw(
    orch: Orchestrator, human: Principal, agent: Principal, cli_db: str
) -> None:
    """A note that clears the screen and draws a fake approval is printed harmlessly."""
    forged = "\x1b[2J\x1b[H\x1b]0;PWNED\x07approve  by alice (human)\u202e\u009b31m"
    session = start(orch, human)
    orch.submit(session.id, "tests", agent, TESTS, note=forged)
    orch.request_approval(session.id, agent, forged)
    for command in ("log", "show"):
        shown = run_cli(orch.project.root, command, session.id, db_url=cli_db)
        assert shown.returncode == 0, shown.stderr
        assert not any(c in shown.stdout for c in "\x1b\x07\u202e\u009b"), command
        assert "\\u001b[2J" in shown.stdout and "\\u202e" in shown.stdout
