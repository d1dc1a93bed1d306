"""The `phasegate` group, its shared context, and `main`: errors become one line."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, NoReturn

import click
from rich.console import Console

from phasegate import credentials
from phasegate.config import Project, open_project
from phasegate.domain.principal import Principal
from phasegate.errors import PhasegateError, Unauthenticated
from phasegate.orchestrator import Orchestrator

out = Console(highlight=False, soft_wrap=True, markup=False)  # agents write some of what we print


class Context:
    """Opens the project and orchestrator lazily, so `--help` never touches the disk."""

    def __init__(self, project_dir: Path | None) -> None:
        self.project_dir = project_dir
        self._orch: Orchestrator | None = None

    @property
    def orch(self) -> Orchestrator:
        if self._orch is None:
            self._orch = Orchestrator.open(open_project(self.project_dir))
        return self._orch

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
@click.version_option(package_name="phasegate")
@click.pass_context
def cli(click_ctx: click.Context, project_dir: Path | None) -> None:
    """phasegate walks AI coding agents through design → tests → review → code, durably."""
    click_ctx.obj = Context(project_dir)


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
    from phasegate.workspace import WorkspaceError

    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.Abort:
        fail("aborted")
    except (PhasegateError, WorkspaceError) as exc:
        fail(str(exc))
