"""Turning agent-written text into safe HTML: Markdown without raw HTML, highlighted code.

Everything an agent wrote is untrusted. markdown-it runs with HTML disabled (so
`<script>` shows as text) and refuses `javascript:` links; pygments escapes
the code it highlights. Plain text goes through Jinja's autoescape.
"""

from __future__ import annotations

from functools import lru_cache

from markdown_it import MarkdownIt
from markupsafe import Markup

# pygments ships no type information (types-Pygments is not a dependency).
from pygments import highlight  # type: ignore[import-untyped]
from pygments.formatters import HtmlFormatter  # type: ignore[import-untyped]
from pygments.lexer import Lexer  # type: ignore[import-untyped]
from pygments.lexers import (  # type: ignore[import-untyped]
    DiffLexer,
    TextLexer,
    get_lexer_for_filename,
)
from pygments.util import ClassNotFound  # type: ignore[import-untyped]

MAX_HIGHLIGHT_CHARS = 200_000

_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
_formatter = HtmlFormatter(cssclass="hl", wrapcode=True)


def markdown_html(text: str) -> Markup:
    """Markdown to HTML; raw HTML in the source is shown as text, never interpreted."""
    return Markup(_markdown.render(text))


@lru_cache(maxsize=256)
def _lexer_for(path: str) -> Lexer:
    try:
        return get_lexer_for_filename(path, stripnl=False)
    except ClassNotFound:
        return TextLexer(stripnl=False)


def code_html(text: str, path: str) -> Markup:
    """Syntax-highlighted source of one file (by its name); huge files are cut."""
    return Markup(highlight(_cut(text), _lexer_for(path), _formatter))


def diff_html(diff: str) -> Markup:
    """A unified diff with added and removed lines coloured."""
    return Markup(highlight(_cut(diff), DiffLexer(stripnl=False), _formatter))


def highlight_css() -> str:
    return str(_formatter.get_style_defs(".hl"))


def _cut(text: str) -> str:
    if len(text) <= MAX_HIGHLIGHT_CHARS:
        return text
    return (
        text[:MAX_HIGHLIGHT_CHARS] + f"\n… cut: {len(text) - MAX_HIGHLIGHT_CHARS} more characters\n"
    )
