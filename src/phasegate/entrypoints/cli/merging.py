"""Closing the loop: `merge`, `diff` and `export`, and the lines `show` prints about a result."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import click

from phasegate.entrypoints.cli.base import Context, cli, out, pass_ctx
from phasegate.errors import InvalidInput

if TYPE_CHECKING:
    from phasegate.domain.session import Session

#: How a diff line looks in a terminal, by its start (the first match wins).
_DIFF_STYLES = (
    ("diff --git", "bold"),
    ("+++", "bold"),
    ("---", "bold"),
    ("@@", "cyan"),
    ("+", "green"),
    ("-", "red"),
)
# Agents wrote the code: an escape sequence in it must not drive the user's terminal.
_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0)) if c != 0x09}
_MODE_WORDS = {"merge": "merge commit", "squash": "squashed commit", "ff-only": "fast-forward"}


@cli.command()
@click.argument("session_ref", metavar="SESSION")
@click.option("--squash", is_flag=True, help="One new commit on the target with the whole change.")
@click.option("--ff-only", is_flag=True, help="Only fast-forward; refuse if the target can't.")
@click.option("--into", metavar="BRANCH", help="Merge into BRANCH, not the one it started from.")
@click.option(
    "--allow-moved-base",
    is_flag=True,
    help="Merge even if the target moved since the session started.",
)
@pass_ctx
def merge(
    ctx: Context,
    session_ref: str,
    squash: bool,
    ff_only: bool,
    into: str | None,
    allow_moved_base: bool,
) -> None:
    """Merge a completed session's branch into the branch it started from."""
    if squash and ff_only:
        raise InvalidInput("--squash and --ff-only exclude each other; pass one of them")
    mode = "squash" if squash else "ff-only" if ff_only else "merge"
    session = ctx.orch.merge(
        session_ref, ctx.human(), into=into, mode=mode, allow_moved_base=allow_moved_base
    )
    merged = session.context["merged"]
    out.print(
        f"merged session {session.short_id} into {merged['target']} at "
        f"{merged['commit'][:10]} ({_MODE_WORDS[merged['mode']]}; it was at "
        f"{merged['previous'][:10]})"
    )
    if merged["base_moved"]:
        out.print(f"note: {merged['target']} had moved since the session started")


@cli.command("diff")
@click.argument("session_ref", metavar="SESSION")
@click.option("--since-review", is_flag=True, help="Only what changed since a human last looked.")
@pass_ctx
def diff_cmd(ctx: Context, session_ref: str, since_review: bool) -> None:
    """Show a session's change (in colour on a terminal, plain when piped)."""
    found = ctx.orch.diff(session_ref, since_review=since_review)
    span = f"{found.since[:10]}..{found.head[:10]}"
    what = f"{span}, from {found.since_what}"
    click.echo(f"diff {what}" if found.text else f"no changes in {what}", err=True)
    if not out.is_terminal:
        click.echo(found.text, nl=False, color=True)  # exactly the diff: click strips ANSI else
        return
    from rich.text import Text

    for line in found.text.splitlines():
        style = next((s for start, s in _DIFF_STYLES if line.startswith(start)), "")
        out.print(Text(line.translate(_CONTROLS), style=style))


@cli.command("export")
@click.argument("session_ref", metavar="SESSION")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The patch file (default: phasegate-<id>-<task>.patch here).",
)
@click.option("--force", is_flag=True, help="Overwrite the file if it exists.")
@pass_ctx
def export_cmd(ctx: Context, session_ref: str, output: Path | None, force: bool) -> None:
    """Write a session's commits as a patch file (`git am` applies it)."""
    done = ctx.orch.export_patch(session_ref, output, force=force)
    plural = "" if done.commits == 1 else "s"
    out.print(f"wrote {done.path}: {done.commits} commit{plural} (apply with git am {done.path})")


def closing_lines(session: Session) -> Iterator[str]:
    """What `show` says about a session's result: final commit, fixes, how to merge it."""
    from phasegate.merging import closing

    end = closing(session)
    if end.head:
        yield f"{'final' if end.final else 'head':<15}{end.head[:10]}"
    for fix in end.fixes:
        yield f"{'fix':<15}{fix['commit'][:10]}  {', '.join(fix['paths'])}"
    if end.merged:
        merged = end.merged
        yield (
            f"merged   into {merged['target']} at {merged['commit'][:10]} "
            f"({_MODE_WORDS.get(merged['mode'], merged['mode'])})"
        )
    if end.merge_command:
        yield f"merge    {end.merge_command}"
        yield f"look     {'  ·  '.join(end.look_commands)}"
