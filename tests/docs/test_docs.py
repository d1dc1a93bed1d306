"""The documentation matches the code: every command, every MCP tool, every link."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import anyio
import click
import pytest

from phasegate.config import Project, Settings
from phasegate.entrypoints.cli import cli
from phasegate.entrypoints.mcp.server import build_server
from phasegate.orchestrator import Orchestrator

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"\[[^\]\n]*\]\(([^)\s]+)\)")


def walk(command: click.Command, path: tuple[str, ...] = ()) -> Iterator[tuple[str, click.Command]]:
    """Every visible command under `command`, with its space-separated path."""
    yield " ".join(path), command
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            if not sub.hidden:
                yield from walk(sub, (*path, name))


COMMANDS = list(walk(cli))


def code_and_headings(text: str) -> str:
    """The text of fenced blocks, inline code and headings, whitespace collapsed."""
    parts = list(FENCE.findall(text))
    prose = FENCE.sub("", text)
    parts += INLINE_CODE.findall(prose)
    parts += [line for line in prose.splitlines() if line.startswith("#")]
    return " ".join(" ".join(part.split()) for part in parts)


def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = heading.lstrip("#").strip().lower().replace("`", "")
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The anchors of every heading on `page`."""
    prose = FENCE.sub("", page.read_text(encoding="utf-8"))
    return {slug(line) for line in prose.splitlines() if line.startswith("#")}


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[p or "phasegate" for p, _ in COMMANDS])
def test_every_command_has_help(path: str, command: click.Command) -> None:
    """Every command and group of the CLI has a non-empty help text."""
    assert (command.help or "").strip(), f"`phasegate {path}` has no help text"


@pytest.mark.parametrize("path", [p for p, _ in COMMANDS if p])
def test_every_command_is_in_the_cli_reference(path: str) -> None:
    """Every command appears in docs/cli.md as code or a heading (`phasegate token add`)."""
    documented = code_and_headings((DOCS / "cli.md").read_text(encoding="utf-8"))
    assert re.search(rf"phasegate {re.escape(path)}(?![\w-])", documented), (
        f"`phasegate {path}` is not documented in docs/cli.md"
    )


def test_every_mcp_tool_resource_and_prompt_is_in_the_mcp_reference(tmp_path: Path) -> None:
    """Every tool, resource template and prompt the MCP server registers is named in docs/mcp.md."""
    orch = Orchestrator.open(Project(tmp_path, Settings()))
    try:
        server = build_server(orch, lambda: None)
        tools = anyio.run(server.list_tools)
        templates = anyio.run(server.list_resource_templates)
        prompts = anyio.run(server.list_prompts)
    finally:
        orch.close()
    names = [t.name for t in tools] + [t.uri_template for t in templates]
    names += [p.name for p in prompts]
    assert len(tools) >= 10
    text = (DOCS / "mcp.md").read_text(encoding="utf-8")
    missing = [name for name in names if f"`{name}`" not in text]
    assert not missing, f"not documented in docs/mcp.md: {missing}"


def relative_links() -> Iterator[tuple[Path, str]]:
    """Each (page, target) of a link that is not a URL, outside code blocks."""
    for page in PAGES:
        for target in LINK.findall(FENCE.sub("", page.read_text(encoding="utf-8"))):
            if not re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, mailto: …
                yield page, target


LINKS = list(relative_links())


@pytest.mark.parametrize(("page", "target"), LINKS, ids=[f"{p.name}->{t}" for p, t in LINKS])
def test_every_relative_link_resolves(page: Path, target: str) -> None:
    """Every relative link in README.md and docs/*.md names a file (and heading) that exists."""
    file_part, _, anchor = target.partition("#")
    linked = (page.parent / file_part).resolve() if file_part else page
    assert linked.exists(), f"{page.name} links to {target}, which does not exist"
    if anchor and linked.suffix == ".md":
        assert anchor in anchors(linked), f"{page.name} links to {target}: no such heading"
