"""Real transports: stdout carries protocol only; HTTP refuses strangers, survives restarts."""

from __future__ import annotations

import httpx
import pytest

from mcp import Client
from tests.conftest import GOOD_TESTS
from tests.mcp.conftest import CliProject, HttpServer, http_client, stdio_params

pytestmark = [pytest.mark.anyio, pytest.mark.slow]
FLOOD = "head -c 3000000 /dev/zero | tr '\\\\0' x; python -m pytest -q -p no:cacheprovider"


async def test_a_test_command_printing_megabytes_does_not_corrupt_stdio(
    cli_project: CliProject,
) -> None:
    """3 MB of test output during a red run leaves the JSON-RPC stream on stdout intact."""
    (cli_project.root / "phasegate.toml").write_text(f'test_command = "{FLOOD}"\n')
    session_id = cli_project.start()
    async with Client(stdio_params(cli_project), read_timeout_seconds=120) as client:
        result = await client.call_tool(
            "submit_tests",
            {
                "session_id": session_id,
                "files": [{"path": "tests/test_calc.py", "content": GOOD_TESTS}],
            },
        )
        assert not result.is_error, result.content
        assert result.structured_content["phase"] == "awaiting_test_review"  # type: ignore[index]
        status = await client.call_tool("get_session_status", {"session_id": session_id})
        assert len(status.content[0].text) < 100_000  # type: ignore[union-attr]


async def test_the_stdio_agent_is_a_local_agent_that_cannot_decide(cli_project: CliProject) -> None:
    """Without a token the stdio server acts as `stdio-agent`, an agent with the working roles."""
    session_id = cli_project.start()
    async with Client(stdio_params(cli_project)) as client:
        await client.call_tool(
            "submit_tests",
            {
                "session_id": session_id,
                "files": [{"path": "tests/test_calc.py", "content": GOOD_TESTS}],
            },
        )
    principals = {p["name"]: p for p in cli_project.json("token", "ls")}
    assert principals["stdio-agent"]["kind"] == "agent"
    assert set(principals["stdio-agent"]["roles"]) == {"tester", "coder", "runner"}
    log = cli_project.json("log", session_id)
    assert log[-1]["actor_id"] == "stdio-agent" and log[-1]["actor_kind"] == "agent"


async def test_a_human_token_is_refused_as_the_stdio_agent(cli_project: CliProject) -> None:
    """PHASEGATE_AGENT_TOKEN holding a human token stops the server: agents never act as humans."""
    params = stdio_params(cli_project, PHASEGATE_AGENT_TOKEN=cli_project.human_token())
    with pytest.raises(Exception):  # noqa: B017 - the server exits before the handshake
        async with Client(params, read_timeout_seconds=10) as client:
            await client.list_tools()


def test_http_refuses_missing_wrong_and_human_tokens_and_bad_host_or_origin(
    cli_project: CliProject, http_server: HttpServer
) -> None:
    """401 without or with an unknown token, 403 for a human token or a foreign Origin, 421 Host."""
    agent = cli_project.agent_token()
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    accept = {"Accept": "application/json, text/event-stream"}

    def post(**headers: str) -> int:
        return httpx.post(
            http_server.url, json=body, headers={**accept, **headers}, follow_redirects=True
        ).status_code

    assert post() == 401
    assert post(Authorization="Bearer pga_not-a-token") == 401
    assert post(Authorization=f"Bearer {cli_project.human_token()}") == 403
    assert post(Authorization=f"Bearer {agent}", Origin="http://evil.example") == 403
    assert post(Authorization=f"Bearer {agent}", Host="evil.example") in (400, 421)  # serve: 400
    assert post(Origin="http://evil.example") == 403  # checked before the token


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_a_restarted_server_keeps_serving_a_connected_client(
    cli_project: CliProject, http_server: HttpServer, mode: str
) -> None:
    """Stateless HTTP: after a restart the same client session goes on working."""
    token = cli_project.agent_token()
    session_id = cli_project.start()
    async with http_client(http_server.url, token, mode) as client:
        before = await client.call_tool("get_session_status", {"session_id": session_id})
        assert not before.is_error
        http_server.stop()
        http_server.start()
        after = await client.call_tool("get_session_status", {"session_id": session_id})
        assert not after.is_error, after.content
        assert after.structured_content["phase"] == "generating_tests"  # type: ignore[index]


async def test_the_mcp_app_itself_keeps_the_sdks_host_and_origin_answers(orch: object) -> None:
    """Without a host in front, a foreign Host gets the SDK's 421 and a foreign Origin 403."""
    from phasegate.entrypoints.mcp import create_http_app

    app, _ = create_http_app(orch)  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:9") as client:
        assert (await client.post("/", headers={"Host": "evil.example"})).status_code == 421
        foreign = {"Origin": "http://evil.example"}
        assert (await client.post("/", headers=foreign)).status_code == 403
        assert (await client.post("/")).status_code == 401
