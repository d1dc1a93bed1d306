"""Guarded mode with real OS users: the state and the human's decision out of an agent's reach.

`phasegate serve --guarded` runs as one user with its state in a directory only
that user can enter; the agent runs as another user with a shell, as Claude
Code's Bash tool would. Every way in that an agent would try is tried, and
each attempt is asserted to have failed and changed nothing; the agent still
drives a whole session over HTTP MCP, and a human decides with token and
passphrase through the CLI and the API.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from phasegate.entrypoints.web.auth import COOKIE_NAME
from tests.conftest import GOOD_IMPL, GOOD_TESTS, make_project_repo
from tests.security.os_users import (
    OsUser,
    chown_tree,
    ensure_group,
    ensure_user,
    shared_python,
)

pytestmark = pytest.mark.slow
PASSPHRASE = "correct horse battery staple"

# Each probe script starts with this: `attempt` records how each try ended.
ATTEMPT = r"""
tried = {}
def attempt(name, action):
    try:
        action()
        tried[name] = "succeeded"
    except Exception as exc:
        tried[name] = type(exc).__name__
"""

AGENT_PROBES = (
    r"""
import json, os, sqlite3, sys
state, repo = sys.argv[1], sys.argv[2]
"""
    + ATTEMPT
    + r"""
attempt("list the state", lambda: os.listdir(state))
attempt("read the database", lambda: open(os.path.join(state, "phasegate.db"), "rb").read())
attempt("read the cookie secret", lambda: open(os.path.join(state, "web-secret")).read())
config = os.path.join(state, "config")
attempt("read the credentials", lambda: open(os.path.join(config, "credentials.json")).read())
attempt("read the audit keys", lambda: os.listdir(os.path.join(config, "audit-keys")))
def add_principal():
    db = sqlite3.connect(os.path.join(state, "phasegate.db"))
    db.execute("INSERT INTO principals (id, name, kind, roles, token_hash, created_at) "
               "VALUES ('x', 'evil', 'human', '[]', 'f00', '2026-01-01')")
    db.commit()
attempt("add a principal", add_principal)
attempt("write into the state", lambda: open(os.path.join(state, "planted"), "w").write("x"))
git_config = os.path.join(repo, ".git", "config")
attempt("write the repository's git config", lambda: open(git_config, "a").write("[x]\n"))
print(json.dumps(tried))
"""
)

MCP_STEP = r"""
import asyncio, json, sys
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
url, token, tool, arguments = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
async def main():
    headers = {"Authorization": f"Bearer {token}"}
    timeout = httpx2.Timeout(30, read=300)
    async with httpx2.AsyncClient(headers=headers, timeout=timeout) as http:
        transport = streamable_http_client(url, http_client=http)
        async with Client(transport, read_timeout_seconds=300) as c:
            result = await c.call_tool(tool, arguments)
            print(json.dumps({"error": result.is_error, "data": result.structured_content,
                              "text": result.content[0].text if result.content else ""}))
asyncio.run(main())
"""


@dataclass
class Guarded:
    """A guarded server running as `server`, and an agent user next to it."""

    server: OsUser
    agent: OsUser
    repo: Path
    state: Path
    url: str
    human_token: str
    agent_token: str
    process: subprocess.Popen[str]

    def api(self, method: str, path: str, *, token: str | None = None, **kwargs: Any) -> Any:
        headers = {
            "Authorization": f"Bearer {token or self.human_token}",
            **kwargs.pop("headers", {}),
        }
        return httpx.request(method, f"{self.url}{path}", headers=headers, timeout=120, **kwargs)

    def mcp(self, tool: str, **arguments: Any) -> dict[str, Any]:
        """One MCP tool call by the agent, from a process running as the agent user."""
        return self.agent.python_json(  # type: ignore[no-any-return]
            MCP_STEP, f"{self.url}/mcp", self.agent_token, tool, json.dumps(arguments)
        )

    def session(self, session_id: str) -> dict[str, Any]:
        return self.api("GET", f"/api/sessions/{session_id}").json()  # type: ignore[no-any-return]

    def principals(self) -> list[str]:
        done = self.server.phasegate(
            "--project", str(self.repo), "--state-dir", str(self.state), "token", "ls", "--json"
        )
        assert done.returncode == 0, done.stderr
        return sorted(p["name"] for p in json.loads(done.stdout))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(url: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("the guarded server did not come up")


@pytest.fixture(scope="module")
def base() -> Iterator[Path]:
    """A directory both users can enter (pytest's own tmp is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="phasegate-guarded-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=False)


@pytest.fixture(scope="module")
def users(base: Path) -> tuple[OsUser, OsUser]:
    assert os.geteuid() == 0, "guarded-mode tests create OS users: run the suite as root (CI does)"
    python = shared_python(base / "venv")
    homes = base / "homes"
    homes.mkdir(mode=0o755)
    names = ("pg-guard-server", "pg-guard-agent")
    accounts = [ensure_user(name) for name in names]
    share = ensure_group("pg-guard-share", list(names))  # the worktrees' group
    found = []
    for account in accounts:
        home = homes / account.pw_name
        home.mkdir(mode=0o700)
        os.chown(home, account.pw_uid, account.pw_gid)
        found.append(OsUser(account, python, home, (share,)))
    return found[0], found[1]


@pytest.fixture(scope="module")
def guarded(base: Path, users: tuple[OsUser, OsUser]) -> Iterator[Guarded]:
    server, agent = users
    repo = make_project_repo(base / "project")
    chown_tree(repo, server.account)
    # The agents' group may write the worktrees the server creates (setgid: they inherit the
    # group), never the repository, its git dir or phasegate's directories around the worktrees.
    os.chown(repo, server.account.pw_uid, server.groups[0])
    repo.chmod(0o2755)
    state = base / "state"
    state.mkdir(mode=0o700)
    os.chown(state, server.account.pw_uid, server.account.pw_gid)
    common = ("--project", str(repo), "--state-dir", str(state))
    init = server.phasegate(*common, "init", "--name", "alice")
    assert init.returncode == 0, init.stderr
    human_token = next(w for w in init.stdout.split() if w.startswith("pgh_"))
    set_phrase = server.phasegate(
        *common, "token", "passphrase", "alice", "--passphrase-stdin", input=PASSPHRASE + "\n"
    )
    assert set_phrase.returncode == 0, set_phrase.stderr
    added = server.phasegate(
        *common, "token", "add", "--agent", "bot", "--role", "tester", "--role", "coder", "--json"
    )
    assert added.returncode == 0, added.stderr
    agent_token = json.loads(added.stdout)["token"]
    port = free_port()
    process = server.popen(
        *common, "serve", "--guarded", "--port", str(port), "--agent-user", agent.name, cwd=repo
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process)
        yield Guarded(server, agent, repo, state, url, human_token, agent_token, process)
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_the_agent_user_can_neither_read_nor_change_the_state(guarded: Guarded) -> None:
    """Reading the database, the secrets or the keys, adding a principal, planting a file,
    rewriting git config: every attempt is refused, and the principals are as they were."""
    before = guarded.principals()
    tried = guarded.agent.python_json(AGENT_PROBES, str(guarded.state), str(guarded.repo))
    assert len(tried) == 8 and "succeeded" not in tried.values(), tried
    assert tried["read the database"] == tried["read the credentials"] == "PermissionError"
    cli = guarded.agent.phasegate(
        "--project",
        str(guarded.repo),
        "--state-dir",
        str(guarded.state),
        "token",
        "add",
        "--agent",
        "evil",
        "--role",
        "tester",
    )
    assert cli.returncode != 0 and "Traceback" not in cli.stderr
    assert guarded.principals() == before == ["alice", "bot"]
    assert not (guarded.state / "planted").exists()


def test_the_agent_cannot_forge_a_login_or_decide(guarded: Guarded) -> None:
    """An agent token can't decide; a forged cookie is no login; the human's token without the
    passphrase (or with a wrong one) decides nothing; the session stays as it was."""
    started = guarded.mcp("start_session", task="design.md", again=True)
    sid = started["data"]["session_id"]
    before = guarded.session(sid)
    as_agent = guarded.api(
        "POST", f"/api/sessions/{sid}/cancel", token=guarded.agent_token, json={}
    )
    assert as_agent.status_code == 403
    forged = httpx.get(
        f"{guarded.url}/api/sessions",
        cookies={COOKIE_NAME: "eyJoIjoiZm9vIn0.forged-signature"},
        timeout=30,
    )
    assert forged.status_code == 401
    bare = guarded.api("POST", f"/api/sessions/{sid}/cancel", json={})
    assert bare.status_code == 403 and "passphrase" in bare.json()["error"]["message"]
    wrong = guarded.api(
        "POST", f"/api/sessions/{sid}/cancel", json={}, headers={"X-Phasegate-Passphrase": "guess"}
    )
    assert wrong.status_code == 403 and "wrong passphrase" in wrong.json()["error"]["message"]
    right_too_soon = guarded.api(
        "POST",
        f"/api/sessions/{sid}/cancel",
        json={},
        headers={"X-Phasegate-Passphrase": PASSPHRASE},
    )
    assert right_too_soon.status_code == 403 and "try again in" in right_too_soon.text
    after = guarded.session(sid)
    assert (after["phase"], after["version"]) == (before["phase"], before["version"])
    time.sleep(1.1)  # the first wrong guess costs a second


def test_the_agent_drives_a_session_and_the_human_decides_with_the_passphrase(
    guarded: Guarded,
) -> None:
    """Over HTTP MCP the agent writes tests and code; phasegate runs them (sandboxed, as the
    server's user); the human approves from the CLI and the API, each time with the passphrase."""
    sid = guarded.mcp("start_session", task="design.md", again=True)["data"]["session_id"]
    tests = guarded.mcp(
        "submit_tests",
        session_id=sid,
        files=[{"path": "tests/test_calc.py", "content": GOOD_TESTS}],
    )
    assert not tests["error"], tests["text"]
    assert tests["data"]["phase"] == "awaiting_test_review"

    cli_env = {
        **os.environ,
        "PHASEGATE_SERVER_URL": guarded.url,
        "PHASEGATE_TOKEN": guarded.human_token,
    }
    approve = subprocess.run(
        [*PHASEGATE_CLI, "--project", str(guarded.repo), "approve", sid, "--passphrase-stdin"],
        input=PASSPHRASE + "\n",
        env=cli_env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert approve.returncode == 0, approve.stderr
    assert f"approved session {sid[:8]}; it is now in generating implementation" in approve.stdout

    impl = guarded.mcp(
        "submit_implementation", session_id=sid, files=[{"path": "calc.py", "content": GOOD_IMPL}]
    )
    assert not impl["error"], impl["text"]
    ran = guarded.mcp("run_tests", session_id=sid)
    assert not ran["error"], ran["text"]
    assert guarded.session(sid)["phase"] == "awaiting_final_review", ran["text"]
    final = guarded.api(
        "POST",
        f"/api/sessions/{sid}/approve",
        json={"comment": "ship it"},
        headers={"X-Phasegate-Passphrase": PASSPHRASE},
    )
    assert final.status_code == 200, final.text
    assert final.json()["phase"] == "completed"
    audit = guarded.server.phasegate(
        "--project", str(guarded.repo), "--state-dir", str(guarded.state), "audit", "verify"
    )
    assert audit.returncode == 0, audit.stdout + audit.stderr


def test_the_cli_never_reads_a_guarded_servers_state(guarded: Guarded) -> None:
    """`ls` through the server works for the human; a wrong passphrase from the CLI is refused."""
    guarded.mcp(
        "start_session", task="design.md", again=True
    )  # this test may run first on its server
    env = {
        **os.environ,
        "PHASEGATE_SERVER_URL": guarded.url,
        "PHASEGATE_TOKEN": guarded.human_token,
    }
    listed = subprocess.run(
        [*PHASEGATE_CLI, "--project", str(guarded.repo), "ls", "--all", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    sessions = json.loads(listed.stdout)
    assert sessions
    sid = sessions[0]["id"]
    refused = subprocess.run(
        [*PHASEGATE_CLI, "--project", str(guarded.repo), "pause", sid, "--passphrase-stdin"],
        input="not the passphrase\n",
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert refused.returncode == 1
    assert (
        refused.stderr.startswith("phasegate: wrong passphrase")
        and "Traceback" not in refused.stderr
    )
    assert guarded.session(sid)["version"] == sessions[0]["version"]
    time.sleep(1.1)


def test_doctor_says_guarded_for_the_server_and_unguarded_for_a_plain_project(
    guarded: Guarded, tmp_path: Path
) -> None:
    """The verdict names who can reach what."""
    verdict = guarded.server.phasegate(
        "--project",
        str(guarded.repo),
        "--state-dir",
        str(guarded.state),
        "doctor",
        "--agent-user",
        guarded.agent.name,
    )
    assert verdict.returncode == 0, verdict.stderr
    assert verdict.stdout.startswith(
        f"guarded: phasegate's state is out of reach of {guarded.agent.name}"
    )
    plain = make_project_repo(tmp_path / "plain")
    init = subprocess.run(
        [*PHASEGATE_CLI, "--project", str(plain), "init"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert init.returncode == 0, init.stderr
    unguarded = subprocess.run(
        [*PHASEGATE_CLI, "--project", str(plain), "doctor"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert unguarded.stdout.startswith(
        "unguarded: agents running as root can reach phasegate's state"
    )
    assert "the database" in unguarded.stdout and "serve --guarded" in unguarded.stdout
    (plain / ".claude").mkdir()  # a Claude Code project without phasegate's rules yet

    def doctor() -> str:
        done = subprocess.run(
            [*PHASEGATE_CLI, "--project", str(plain), "doctor"],
            capture_output=True,
            text=True,
            check=False,
        )
        return done.stdout

    assert "claude: no deny rules for phasegate's state; run `phasegate init --agent claude`" in (
        doctor()
    )
    init_claude = subprocess.run(
        [*PHASEGATE_CLI, "--project", str(plain), "init", "--agent", "claude"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert init_claude.returncode == 0, init_claude.stderr
    assert "claude: phasegate's deny rules are in place" in doctor()


@pytest.mark.parametrize("problem", ["open mode", "wrong owner", "inside the repository"])
def test_serve_guarded_refuses_state_others_can_reach(
    guarded: Guarded, base: Path, problem: str
) -> None:
    """One line per problem, naming the path and what to do; the server never starts."""
    state = base / f"state-{problem.replace(' ', '-')}"
    if problem == "inside the repository":
        state = guarded.repo / "state"
    state.mkdir(mode=0o700)
    owner = guarded.agent if problem == "wrong owner" else guarded.server
    os.chown(state, owner.account.pw_uid, owner.account.pw_gid)
    if problem == "open mode":
        state.chmod(0o755)
    done = guarded.server.phasegate(
        "--project",
        str(guarded.repo),
        "--state-dir",
        str(state),
        "serve",
        "--guarded",
        "--port",
        str(free_port()),
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr
    expected = {
        "open mode": f"phasegate: {state} has mode 755: other users can read it; chmod 700 {state}",
        "wrong owner": f"chown -R {guarded.server.name} {state}",
        "inside the repository": "is inside the repository",
    }[problem]
    assert expected in done.stderr, done.stderr
    assert not (state / "phasegate.db").exists()


PHASEGATE_CLI = [sys.executable, "-c", "from phasegate.entrypoints.cli import main; main()"]


REPOINT = r"""
import json, os, subprocess, sys, tempfile
worktree, git_dir, marker = sys.argv[1], sys.argv[2], sys.argv[3]
evil = tempfile.mkdtemp(prefix="evil-")
os.chmod(evil, 0o755)
subprocess.run(["git", "init", "-q", "--bare", evil], check=True)
with open(os.path.join(evil, "config"), "a") as config:
    config.write(f"[filter \"evil\"]\n\tclean = touch {marker} && cat\n")
os.makedirs(os.path.join(evil, "info"), exist_ok=True)
with open(os.path.join(evil, "info", "attributes"), "w") as attributes:
    attributes.write("* filter=evil\n")
for root, dirs, files in os.walk(evil):
    for name in dirs + files:
        os.chmod(os.path.join(root, name), 0o755)
tried = {}
try:
    open(os.path.join(git_dir, "commondir"), "w").write(evil)
    tried["commondir"] = "succeeded"
except OSError as exc:
    tried["commondir"] = type(exc).__name__
os.remove(os.path.join(worktree, ".git"))
with open(os.path.join(worktree, ".git"), "w") as dot_git:
    dot_git.write(f"gitdir: {evil}\n")
os.makedirs(os.path.join(worktree, "tests"), exist_ok=True)
with open(os.path.join(worktree, "tests", "test_calc.py"), "w") as tests:
    tests.write(sys.stdin.read() if False else os.environ["TESTS"])
tried["wrote the worktree"] = "succeeded"
print(json.dumps(tried))
"""


def test_a_worktree_repointed_at_the_agents_own_repository_runs_nothing_as_the_server(
    guarded: Guarded, base: Path
) -> None:
    """The agent rewrites its worktree's `.git` to a repository of its own whose config has a
    clean filter, and tries to rewrite the worktree's git dir: the server's git follows neither,
    the filter never runs, and the submission lands in the server's repository."""
    sid = guarded.mcp("start_session", task="design.md", again=True)["data"]["session_id"]
    worktree = guarded.repo / ".phasegate" / "worktrees" / sid
    marker = base / f"filter-ran-{sid[:8]}"
    tried = guarded.agent.python_json(
        REPOINT,
        str(worktree),
        str(guarded.repo / ".git" / "worktrees" / sid),
        str(marker),
        TESTS=GOOD_TESTS,
    )
    assert tried == {"commondir": "PermissionError", "wrote the worktree": "succeeded"}, tried
    submitted = guarded.mcp("submit_tests", session_id=sid)  # the worktree's changes
    assert not submitted["error"], submitted["text"]
    assert not marker.exists()
    shown = subprocess.run(
        [
            "git",
            "-c",
            "safe.directory=*",
            "-C",
            str(guarded.repo),
            "show",
            f"phasegate/{sid}:tests/test_calc.py",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert shown.stdout == GOOD_TESTS


BRIDGED = r"""
import asyncio, json, os, sys
from mcp import Client, StdioServerParameters
python, cli, repo = sys.argv[1], sys.argv[2], sys.argv[3]
async def main():
    params = StdioServerParameters(
        command=python, args=["-c", cli, "mcp", "--project", repo], env=dict(os.environ), cwd=repo
    )
    async with Client(params) as client:
        tools = sorted(t.name for t in (await client.list_tools()).tools)
        listed = await client.call_tool("list_sessions", {"scope": "all"})
        print(json.dumps({"tools": tools, "error": listed.is_error,
                          "sessions": listed.structured_content["count"]}))
asyncio.run(main())
"""


def test_the_stdio_bridge_reaches_the_guarded_server_as_the_agent(guarded: Guarded) -> None:
    """`phasegate mcp`, run by the agent user with the server's URL, relays to it: the tools and
    the sessions are the server's, though that user can't open the server's database."""
    guarded.mcp("start_session", task="design.md", again=True)
    said = guarded.agent.python_json(
        BRIDGED,
        str(guarded.agent.python),
        "from phasegate.entrypoints.cli import main; main()",
        str(guarded.repo),
        PHASEGATE_SERVER_URL=guarded.url,
        PHASEGATE_AGENT_TOKEN=guarded.agent_token,
    )
    assert not said["error"] and said["sessions"] >= 1
    assert "submit_tests" in said["tools"] and "approve" not in said["tools"]


SWAP_AND_LINK = (
    r"""
import json, os, sys
worktree, secret = sys.argv[1], sys.argv[2]
"""
    + ATTEMPT
    + r"""
attempt("rename the worktree", lambda: os.rename(worktree, worktree + ".moved"))
attempt("link beside the worktree", lambda: os.symlink("../..", worktree + ".link"))
attempt("plant a link to the secret", lambda: os.symlink(secret, os.path.join(worktree, "d.md")))
print(json.dumps(tried))
"""
)


def test_the_agent_can_neither_swap_its_worktree_nor_read_the_state_through_a_design(
    guarded: Guarded,
) -> None:
    """Swapping the worktree for a link to the main checkout is refused by the file system; a
    design path inside phasegate's directory (a planted link to the cookie secret) is refused,
    and the secret appears in no answer."""
    sid = guarded.mcp("start_session", task="design.md", again=True)["data"]["session_id"]
    worktree = guarded.repo / ".phasegate" / "worktrees" / sid
    tried = guarded.agent.python_json(
        SWAP_AND_LINK, str(worktree), str(guarded.state / "web-secret")
    )
    assert tried == {
        "rename the worktree": "PermissionError",
        "link beside the worktree": "PermissionError",
        "plant a link to the secret": "succeeded",  # its own worktree: it may write there
    }, tried
    secret = (guarded.state / "web-secret").read_text().strip()
    answer = guarded.mcp("start_session", task=f".phasegate/worktrees/{sid}/d.md")
    assert answer["error"] and secret not in json.dumps(answer)
    plain = guarded.agent.python_json(
        "import json, sys; open(sys.argv[1], 'w').write('# a design'); print(json.dumps(1))",
        str(worktree / "plain.md"),
    )
    assert plain == 1
    inside = guarded.mcp("start_session", task=f".phasegate/worktrees/{sid}/plain.md")
    assert inside["error"] and "phasegate's own .phasegate/" in inside["text"]
