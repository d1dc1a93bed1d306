"""`phasegate mcp` with a server URL: a stdio bridge to the guarded server's /mcp.

Real processes throughout: `phasegate serve` on the project, and `phasegate mcp`
in an agent's copy of the repository that has no `.phasegate/`, with a
database URL and a user config directory that would fail (or show up on disk)
if the bridge ever opened them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from mcp.shared.exceptions import MCPError
from mcp.types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS

from mcp import Client, StdioServerParameters
from tests.conftest import GOOD_TESTS
from tests.mcp.conftest import PHASEGATE, CliProject, HttpServer, free_port

pytestmark = [pytest.mark.anyio, pytest.mark.slow]
ERAS = {"auto": MODERN_PROTOCOL_VERSIONS, "legacy": HANDSHAKE_PROTOCOL_VERSIONS}
TOOLS = {
    "list_sessions",
    "start_session",
    "get_session_status",
    "submit_tests",
    "submit_implementation",
    "run_tests",
    "fix_failures",
    "request_approval",
    "wait_for_decision",
    "claim_next",
    "submit",
    "pre_review",
}
NO_TOKEN = (
    "phasegate: set PHASEGATE_AGENT_TOKEN to your agent token "
    "(phasegate token add --agent NAME, run by the server's admin)\n"
)


@dataclass
class Bridge:
    """`phasegate mcp` run in an agent's checkout, as the agent's OS user would run it."""

    root: Path
    env: dict[str, str]
    untouched: tuple[Path, ...]  # what the bridge must never create

    def params(self) -> StdioServerParameters:
        return StdioServerParameters(
            command=PHASEGATE, args=["mcp"], env=self.env, cwd=str(self.root)
        )

    def run(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [PHASEGATE, "mcp"],
            cwd=self.root,
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def assert_untouched(self) -> None:
        assert [path for path in self.untouched if path.exists()] == []


def bridge(
    project: CliProject,
    tmp_path: Path,
    server_url: str,
    *,
    token: str | None,
    in_config: bool = True,
    database_url: str | None = None,
) -> Bridge:
    """A copy of the project without `.phasegate/`, finding the server in its config or env."""
    root = tmp_path / "agent-checkout"
    shutil.copytree(project.root, root, ignore=shutil.ignore_patterns(".phasegate"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHASEGATE_")}
    env["PHASEGATE_CONFIG_DIR"] = str(tmp_path / "agent-user-config")
    env["PHASEGATE_DATABASE_URL"] = database_url or f"sqlite:///{tmp_path}/nowhere/phasegate.db"
    if in_config:
        with (root / "phasegate.toml").open("a") as toml:
            toml.write(f'\n[server]\nurl = "{server_url}"\n')
    else:
        env["PHASEGATE_SERVER_URL"] = server_url
    if token is not None:
        env["PHASEGATE_AGENT_TOKEN"] = token
    untouched = (root / ".phasegate", tmp_path / "nowhere", tmp_path / "agent-user-config")
    return Bridge(root, env, untouched)


def base_url(server: HttpServer) -> str:
    return f"http://127.0.0.1:{server.port}"


async def call(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_an_agent_drives_a_session_through_the_bridge(
    cli_project: CliProject, http_server: HttpServer, tmp_path: Path, mode: str
) -> None:
    """Tools, a resource, the prompt and a submission's progress pass through, in both eras."""
    agent = bridge(cli_project, tmp_path, base_url(http_server), token=cli_project.agent_token())
    progress: list[str] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append(message or "")

    async with Client(agent.params(), mode=mode, read_timeout_seconds=120) as client:  # type: ignore[arg-type]
        assert client.protocol_version in ERAS[mode]  # the bridge keeps the client's era
        assert {tool.name for tool in (await client.list_tools()).tools} == TOOLS
        assert (await call(client, "list_sessions"))["count"] == 0
        started = await call(client, "start_session", task="design.md", again=True)
        session_id = started["session_id"]
        assert started["phase"] == "generating_tests"
        status = await call(client, "get_session_status", session_id=session_id)
        assert "Calculator" in status["design"]
        design = await client.read_resource(f"phasegate://sessions/{session_id}/design")
        assert "Calculator" in design.contents[0].text  # type: ignore[union-attr]
        prompt = await client.get_prompt("drive_session", {"session_id": session_id})
        assert prompt.messages

        submitted = await client.call_tool(
            "submit_tests",
            {
                "session_id": session_id,
                "files": [{"path": "tests/test_calc.py", "content": GOOD_TESTS}],
            },
            progress_callback=on_progress,
        )
        assert not submitted.is_error, submitted.content
        result = submitted.structured_content or {}
        assert result["phase"] == "awaiting_test_review"
        assert result["red_run"]["status"] == "failed"  # the server ran them
    assert progress, "no progress notification reached the agent"

    assert cli_project.json("show", session_id)["phase"] == "awaiting_test_review"
    assert cli_project.json("log", session_id)[-1]["actor_id"] == "bot"
    agent.assert_untouched()


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
async def test_the_bridge_never_opens_a_database(
    cli_project: CliProject, http_server: HttpServer, tmp_path: Path, database: str
) -> None:
    """With PHASEGATE_SERVER_URL and a database URL that can't be opened, the bridge still works."""
    unreachable = {
        "sqlite": f"sqlite:///{tmp_path}/nowhere/phasegate.db",
        "postgres": f"postgresql://phasegate@127.0.0.1:{free_port()}/nowhere",
    }[database]
    agent = bridge(
        cli_project,
        tmp_path,
        base_url(http_server),
        token=cli_project.agent_token(),
        in_config=False,
        database_url=unreachable,
    )
    async with Client(agent.params(), read_timeout_seconds=60) as client:
        assert (await call(client, "list_sessions"))["count"] == 0
    agent.assert_untouched()


async def test_an_outage_or_a_revoked_token_reaches_the_agent_as_a_clear_error(
    cli_project: CliProject, http_server: HttpServer, tmp_path: Path
) -> None:
    """Mid-session failures are errors that say what to do; the bridge carries on after them."""
    agent = bridge(cli_project, tmp_path, base_url(http_server), token=cli_project.agent_token())
    async with Client(agent.params(), mode="legacy", read_timeout_seconds=60) as client:
        await call(client, "list_sessions")
        http_server.stop()
        with pytest.raises(
            MCPError, match=r"can't reach the phasegate server at .*phasegate serve"
        ):
            await client.call_tool("list_sessions", {})
        http_server.start()
        await call(client, "list_sessions")

        cli_project.run("token", "revoke", "bot")
        with pytest.raises(MCPError, match="refused the token in PHASEGATE_AGENT_TOKEN"):
            await client.call_tool("list_sessions", {})


def test_without_a_token_the_bridge_says_what_to_set(
    cli_project: CliProject, tmp_path: Path
) -> None:
    """No PHASEGATE_AGENT_TOKEN: one line naming it and who makes tokens, exit 1."""
    agent = bridge(cli_project, tmp_path, f"http://127.0.0.1:{free_port()}", token=None)
    done = agent.run()
    assert (done.returncode, done.stdout, done.stderr) == (1, "", NO_TOKEN)
    agent.assert_untouched()


def test_a_refused_token_is_one_line_that_says_why(
    cli_project: CliProject, http_server: HttpServer, tmp_path: Path
) -> None:
    """An unknown token and a human's token are refused by the server before any relaying."""
    cases = {"pga_not-a-token": "unknown or revoked", cli_project.human_token(): "human token"}
    for token, why in cases.items():
        agent = bridge(cli_project, tmp_path / why, base_url(http_server), token=token)
        done = agent.run()
        assert done.returncode == 1 and done.stdout == ""
        [line] = done.stderr.splitlines()
        assert line.startswith(
            f"phasegate: the phasegate server at {base_url(http_server)} refused the token "
            "in PHASEGATE_AGENT_TOKEN"
        )
        assert why in line and "a human token can't be used by an agent" in line
        agent.assert_untouched()


def test_a_server_that_is_down_is_named_with_what_to_do(
    cli_project: CliProject, tmp_path: Path
) -> None:
    """Nothing listening at the URL: one line naming it, saying to start `phasegate serve`."""
    url = f"http://127.0.0.1:{free_port()}"
    agent = bridge(cli_project, tmp_path, url, token="pga_whatever")
    done = agent.run()
    assert done.returncode == 1 and done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith(f"phasegate: can't reach the phasegate server at {url} (")
    assert "start `phasegate serve` there, or check [server] url" in line
    agent.assert_untouched()
