"""Start-up: each entry point imports only what it uses, and `phasegate mcp` answers at once.

The times are bench/startup.py's business; these tests check the outcomes that
keep them low. A process run here records `sorted(sys.modules)` when it exits
(BOOTSTRAP below runs the real `phasegate` entry point, as the console script
does), so "never imported" covers its whole life, not one moment.

The MCP SDK itself imports Starlette, uvicorn (through sse-starlette) and httpx2
on `import mcp`, so for `phasegate mcp` the rule is: nothing heavy beyond what
the SDK's own `MCPServer` already loads.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import anyio
import pytest
from mcp.client.stdio import stdio_client

import phasegate
from mcp import Client, StdioServerParameters
from tests.conftest import make_project_repo
from tests.mcp.conftest import CliProject

BOOTSTRAP = """\
import atexit, json, os, sys

def record():
    with open(os.environ["PHASEGATE_TEST_MODULES"], "w") as out:
        json.dump(sorted(sys.modules), out)

atexit.register(record)
sys.argv = ["phasegate", *sys.argv[1:]]
from phasegate.entrypoints.cli import main

main()
"""
#: Never needed by the CLI's information commands: the database, the MCP SDK, validation, rich.
HEAVY_FOR_INFO = ("sqlalchemy", "alembic", "mcp", "pydantic", "rich", "httpx", "starlette")
#: Never needed on stdio or by a local command: the HTTP side (its servers, clients, templates,
#: metrics, the dashboard's Markdown) and the CLI's client of a guarded server.
WEB_SIDE = (
    "starlette",
    "uvicorn",
    "sse_starlette",
    "httpx",
    "jinja2",
    "prometheus_client",
    "markdown_it",
    "pygments",
    "phasegate.entrypoints.web",
    "phasegate.entrypoints.mcp.http",
    "phasegate.entrypoints.cli.remote",
)
#: Never needed by `phasegate mcp` at all (migrations are current; no ORM; nothing printed).
NOT_ON_STDIO = (*WEB_SIDE, "alembic", "sqlalchemy.orm", "rich")


@pytest.fixture
def project(tmp_path: Path) -> CliProject:
    project = CliProject(make_project_repo(tmp_path / "project"))
    project.run("init", "--name", "alice")
    return project


def loaded(names: list[str], packages: tuple[str, ...]) -> list[str]:
    """The modules in `names` that are one of `packages` or inside one."""
    return [n for n in names if any(n == p or n.startswith(p + ".") for p in packages)]


def run_recorded(tmp_path: Path, *args: str, cwd: Path | None = None) -> list[str]:
    """Run `phasegate ARGS` (exit 0 expected) and return the modules it had imported."""
    record = tmp_path / "modules.json"
    done = subprocess.run(
        [sys.executable, "-c", BOOTSTRAP, *args],
        env={**os.environ, "PHASEGATE_TEST_MODULES": str(record)},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    names: list[str] = json.loads(record.read_text())
    return names


def sdk_modules() -> set[str]:
    """What the SDK's own server imports (a bare `MCPServer`): what `phasegate mcp` stands on."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json, sys\nfrom mcp.server import MCPServer\nMCPServer('floor')\n"
            "print(json.dumps(sorted(sys.modules)))",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return set(json.loads(done.stdout))


@pytest.mark.parametrize("args", [("--version",), ("--help",)])
def test_version_and_help_load_no_database_sdk_or_validation(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    """`phasegate --version` and `--help` import no SQLAlchemy, MCP SDK, pydantic or rich."""
    names = run_recorded(tmp_path, *args)
    assert "phasegate.entrypoints.cli" in names  # the real entry point ran
    assert loaded(names, HEAVY_FOR_INFO) == []


def test_help_still_lists_every_command(tmp_path: Path) -> None:
    """Commands register as before: `phasegate --help` names every one of them."""
    from phasegate.entrypoints.cli import cli

    shown = subprocess.run(
        [sys.executable, "-c", BOOTSTRAP, "--help"],
        env={**os.environ, "PHASEGATE_TEST_MODULES": str(tmp_path / "m.json")},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    listed = {line.split()[0] for line in shown.split("Commands:")[1].splitlines() if line.strip()}
    assert listed == set(cli.commands)


@pytest.mark.slow
def test_local_commands_load_no_web_side_sdk_or_migrations(
    project: CliProject, tmp_path: Path
) -> None:
    """`ls`, `show` and a decision on a local project import no HTTP, MCP or alembic module."""
    session = project.start()
    for args in (("ls",), ("show", session), ("pause", session)):
        names = run_recorded(tmp_path, "--project", str(project.root), *args, cwd=project.root)
        assert "phasegate.orchestrator" in names  # it did open the project
        assert loaded(names, (*WEB_SIDE, "mcp", "alembic", "sqlalchemy.orm")) == [], args


@pytest.mark.slow
def test_stdio_server_loads_nothing_heavy_beyond_the_sdk(
    project: CliProject, tmp_path: Path
) -> None:
    """Through a whole stdio session (handshake, tools/list, a tool call), `phasegate mcp` adds
    no HTTP server, client, templates, rich or alembic to what the SDK itself imports."""
    record = tmp_path / "modules.json"
    params = StdioServerParameters(
        command=sys.executable,
        args=["-c", BOOTSTRAP, "mcp", "--project", str(project.root)],
        env={**os.environ, "PHASEGATE_TEST_MODULES": str(record)},
        cwd=str(project.root),
    )

    async def session() -> None:
        async with Client(params, read_timeout_seconds=60) as client:
            assert client.server_info is not None and client.server_info.name == "phasegate"
            assert "list_sessions" in {t.name for t in (await client.list_tools()).tools}
            result = await client.call_tool("list_sessions", {})
            assert not result.is_error, result.content

    anyio.run(session)
    names = json.loads(record.read_text())
    assert "phasegate.orchestrator" in names  # the tool call did reach the project
    floor = sdk_modules()
    added = [n for n in names if n not in floor]
    assert loaded(added, NOT_ON_STDIO) == []
    assert loaded(names, ("httpx", "jinja2", "alembic", "sqlalchemy.orm")) == []


class SilentDatabase:
    """A PostgreSQL "server" that never answers: the kernel completes each TCP handshake into
    the listening socket's backlog and nobody reads, until `close` resets them all."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=16)
        self.url = f"postgresql://nobody@127.0.0.1:{self.listener.getsockname()[1]}/phasegate"

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def silent_database() -> Iterator[SilentDatabase]:
    database = SilentDatabase()
    yield database
    database.close()


@pytest.mark.slow
def test_stdio_answers_the_handshake_before_opening_the_database_then_says_why_it_failed(
    project: CliProject, tmp_path: Path, silent_database: SilentDatabase
) -> None:
    """`initialize` is answered while the database hangs; when it fails, the server exits
    and says why on stderr, in one line, as any command does."""
    params = StdioServerParameters(
        command=sys.executable,
        args=["-c", BOOTSTRAP, "mcp", "--project", str(project.root)],
        env={
            **os.environ,
            "PHASEGATE_TEST_MODULES": str(tmp_path / "modules.json"),
            "PHASEGATE_DATABASE_URL": silent_database.url,
        },
        cwd=str(project.root),
    )
    stderr = tmp_path / "stderr.txt"

    async def session(errlog: TextIO) -> None:
        async with Client(stdio_client(params, errlog=errlog), read_timeout_seconds=60) as client:
            assert client.server_info is not None and client.server_info.name == "phasegate"
            silent_database.close()  # now opening fails
            with pytest.raises(Exception):  # noqa: B017 - the server exits: the stream closes
                await client.list_tools()

    with stderr.open("w") as errlog:
        anyio.run(session, errlog)
    assert "phasegate: can't reach the database at postgresql://nobody@" in stderr.read_text()


def test_public_names_import_lazily_and_all_resolve() -> None:
    """`import phasegate` loads no SQLAlchemy; every name in `__all__` still imports."""
    done = subprocess.run(
        [sys.executable, "-c", "import sys, phasegate; print('sqlalchemy' in sys.modules)"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.strip() == "False"
    from phasegate import Orchestrator

    assert Orchestrator.__name__ == "Orchestrator"
    for name in phasegate.__all__:
        assert getattr(phasegate, name) is not None
    with pytest.raises(AttributeError):
        phasegate.no_such_name  # noqa: B018


def test_the_newest_migration_file_names_alembics_head() -> None:
    """The migration check without alembic reads the newest revision from the file names."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from phasegate.store.database import MIGRATIONS, newest_revision

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert newest_revision() == ScriptDirectory.from_config(config).get_current_head()


@pytest.mark.slow
def test_a_stdio_server_that_cannot_open_answers_the_waiting_request_and_exits(
    project: CliProject, tmp_path: Path
) -> None:
    """Without the audit key, a `tools/list` already waiting gets the reason as its error,
    and the process ends with it in one line: a client that sends nothing more never hangs."""
    empty_config = tmp_path / "no-config"
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "phasegate", "mcp", "--project", str(project.root)],
        env={**os.environ, "PHASEGATE_CONFIG_DIR": str(empty_config)},
        cwd=str(project.root),
    )
    stderr = tmp_path / "stderr.txt"
    errors: list[str] = []

    async def session(errlog: TextIO) -> None:
        with anyio.fail_after(90):
            async with Client(
                stdio_client(params, errlog=errlog), read_timeout_seconds=60
            ) as client:
                try:
                    await client.list_tools()
                except Exception as exc:  # the server's answer, or the stream closing after it
                    errors.append(str(exc))

    with stderr.open("w") as errlog:
        anyio.run(session, errlog)
    assert errors and "audit key is missing" in errors[0], errors
    lines = [line for line in stderr.read_text().splitlines() if line.startswith("phasegate:")]
    assert len(lines) == 1 and "audit key is missing" in lines[0], stderr.read_text()
