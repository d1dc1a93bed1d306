"""The `phasegate` group, its shared context, and `main`: errors become one line.

A command imports what it uses when it runs: `--version` and `--help` load
neither SQLAlchemy nor pydantic nor rich, `ls` no web server (tests/test_startup.py).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from phasegate import credentials
from phasegate.entrypoints.timeline import showable
from phasegate.errors import ConfigError, PhasegateError, Unauthenticated

if TYPE_CHECKING:
    from rich.console import Console

    from phasegate.config import Project
    from phasegate.domain.principal import Principal
    from phasegate.entrypoints.cli.remote import Remote
    from phasegate.orchestrator import Orchestrator


class LazyConsole:
    """The console commands print to, made at the first print (rich loads only then)."""

    def __init__(self) -> None:
        self._console: Console | None = None

    @property
    def console(self) -> Console:
        if self._console is None:
            from rich.console import Console

            # markup off: agents write some of what we print.
            self._console = Console(highlight=False, soft_wrap=True, markup=False)
        return self._console

    def print(self, *objects: Any, **options: Any) -> None:
        """Print; control and invisible characters in text are written out, never sent raw."""
        shown = (showable(o) if isinstance(o, str) else o for o in objects)
        self.console.print(*shown, **options)

    @property
    def is_terminal(self) -> bool:
        return self.console.is_terminal


out = LazyConsole()
NOTIFY_FLUSH_S = 3.0  # what a command can't deliver by then waits in the outbox


class Context:
    """Opens the project and orchestrator lazily, so `--help` never touches the disk."""

    def __init__(self, project_dir: Path | None, state_dir: Path | None = None) -> None:
        self.project_dir = project_dir
        self.state_dir = state_dir
        self._orch: Orchestrator | None = None
        self._found_project: Project | None = None
        if state_dir is not None:
            # A guarded server keeps everything in its state directory: the
            # audit key and the admin's own credentials too.
            os.environ.setdefault("PHASEGATE_CONFIG_DIR", str(state_dir.resolve() / "config"))

    def found(self) -> Project:
        """The project as its directory and phasegate.toml say, read once per command."""
        if self._found_project is None:
            from phasegate.config import open_project

            self._found_project = open_project(self.project_dir)
        return self._found_project

    def project(self) -> Project:
        """The project, with its state where `--state-dir` says (guarded) or in `.phasegate/`."""
        project = self.found()
        if self.state_dir is None:
            return project
        from phasegate.config import Project

        return Project(project.root, project.settings, state_dir=self.state_dir)

    def remote(self) -> Remote | None:
        """The guarded server this project names, if any: then the CLI decides through it."""
        url = self.found().server_url
        if not url or self.state_dir is not None:
            return None
        from phasegate.entrypoints.cli.remote import Remote  # httpx only when needed

        remote = Remote.for_server(url)
        click_ctx = click.get_current_context(silent=True)
        if click_ctx is not None:  # its connection ends with the command, not at exit
            click_ctx.find_root().call_on_close(remote.close)
        return remote

    @property
    def orch(self) -> Orchestrator:
        if self._orch is None:
            project = self.project()
            if project.server_url and self.state_dir is None:
                # Opening a database here would start a second, empty phasegate.
                raise ConfigError(
                    f"this project's sessions live with the guarded server at "
                    f"{project.server_url}; here, use ls, show and the decisions (or the "
                    "dashboard); run this command on the server, as its user, with --state-dir"
                )
            from phasegate.orchestrator import Orchestrator

            self._orch = Orchestrator.open(project)
            self._notify_before_exit(self._orch)
        return self._orch

    def _notify_before_exit(self, orch: Orchestrator) -> None:
        """Queue webhook notifications for this command's changes, sent as it ends (≤ 3 s)."""
        click_ctx = click.get_current_context(silent=True)
        if not orch.project.settings.notify.configured or click_ctx is None:
            return
        from phasegate.notify import Notifier  # httpx only where webhooks are configured

        notifier = Notifier(orch)
        notifier.attach()
        click_ctx.find_root().call_on_close(lambda: notifier.flush(NOTIFY_FLUSH_S))

    def use(self, orch: Orchestrator) -> None:
        """Work with an orchestrator opened elsewhere (`init` opens the project it creates)."""
        self._orch = orch

    def human(self) -> Principal:
        """The human principal whose token `phasegate init` stored for this project."""
        key = project_key(self.orch.project)
        token = credentials.stored_human_token(key)
        if token is None:
            raise Unauthenticated(
                f"no human token for {key}; run `phasegate init` here, or set PHASEGATE_TOKEN "
                "to a human token"
            )
        principal = self.orch.authenticate(token)
        if not principal.is_human:
            raise Unauthenticated(
                "PHASEGATE_TOKEN holds an agent token; the CLI decides as a human"
            )
        return principal


def project_key(project: Project) -> str:
    return str(project.root)


pass_ctx = click.make_pass_decorator(Context)


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--project",
    "project_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="The project directory (default: found from the current directory).",
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, readable=False, path_type=Path),
    envvar="PHASEGATE_STATE_DIR",
    help="Keep phasegate's state here, outside the repository (a guarded server's).",
)
@click.version_option(package_name="phasegate")
@click.pass_context
def cli(click_ctx: click.Context, project_dir: Path | None, state_dir: Path | None) -> None:
    """phasegate walks AI coding agents through design → tests → review → code, durably."""
    click_ctx.obj = Context(project_dir, state_dir)


def passphrase_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """`--passphrase` (asked for, hidden) and `--passphrase-stdin` (one line, for scripts)."""
    command = click.option(
        "--passphrase-stdin",
        is_flag=True,
        help="Read the passphrase from the first line of standard input.",
    )(command)
    return click.option(
        "--passphrase", is_flag=True, help="Ask for the passphrase (typed, never shown)."
    )(command)


def read_passphrase(*, new: bool = False, stdin: bool = False) -> str:
    """A passphrase from standard input's first line, or typed at a hidden prompt."""
    if stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return str(click.prompt("passphrase", hide_input=True, confirmation_prompt=new))


def duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def fail(message: str) -> NoReturn:
    click.echo(f"phasegate: {message}", err=True)
    sys.exit(1)


def main() -> None:
    """Run the CLI; PhasegateErrors become one line on stderr and exit code 1."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.Abort:
        fail("aborted")
    except Exception as exc:
        from phasegate.workspace import WorkspaceError  # loaded already if it raised one

        if not isinstance(exc, PhasegateError | WorkspaceError):
            exc = _storage_error(exc)
        for line in str(exc).splitlines() or [""]:  # several problems: one line each
            click.echo(f"phasegate: {line}", err=True)
        sys.exit(1)


def _storage_error(exc: Exception) -> PhasegateError:
    """A busy, full or failing database the store didn't translate, in one line; else re-raise."""
    if type(exc).__module__.split(".")[0] in {"sqlalchemy", "sqlite3", "psycopg"}:
        from phasegate.store.database import storage_error  # loaded already if it raised

        if (known := storage_error(exc)) is not None:
            return known
    raise exc
