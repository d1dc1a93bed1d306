"""Bad tool arguments in phasegate's words: which argument, what it must be, the call to make.

The SDK checks arguments with pydantic before a tool runs, and pydantic's text
(several lines, `[type=…]`, a docs URL) is written for programmers. This turns
its structured errors into one sentence a model can act on, worded from the
tool's own input schema, so the sentence and the schema can't disagree.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

#: Arguments a harness adds to every call on its own (Gemini CLI: `wait_for_previous`).
HARNESS_ARGUMENTS = frozenset({"wait_for_previous"})
SHOWN_PROBLEMS = 3
HEX = "^[0-9a-fA-F]+$"
Schema = Mapping[str, Any]


def unknown_arguments(arguments: Mapping[str, Any], schema: Schema) -> list[str]:
    """The arguments the tool doesn't have (a typo like `file=` must not be ignored)."""
    known = _properties(schema)
    return sorted(k for k in arguments if k not in known and k not in HARNESS_ARGUMENTS)


def stringly_lists(arguments: Mapping[str, Any], schema: Schema) -> list[str]:
    """List arguments sent as a string that is no JSON list (`files: "null"`).

    The SDK decodes a JSON string for a non-string argument (some harnesses send
    `"[{…}]"`), so `"null"` would become None: "submit the worktree" instead of
    the files meant. Such an argument is refused, not guessed at.
    """
    wrong = []
    for name, prop in _properties(schema).items():
        value = arguments.get(name)
        if isinstance(value, str) and _resolve(prop, schema).get("type") == "array":
            try:
                decoded = json.loads(value)
            except ValueError:
                decoded = None
            if not isinstance(decoded, list):
                wrong.append(name)
    return wrong


def explain_unknown(tool: str, unknown: Sequence[str], schema: Schema) -> str:
    known = list(_properties(schema))
    close = {u: m[0] for u in unknown if (m := difflib.get_close_matches(u, known, 1, 0.6))}
    guesses = "".join(f" (did you mean '{close[u]}'?)" for u in unknown if u in close)
    what = ", ".join(shown_name(u) for u in unknown[:SHOWN_PROBLEMS])
    if len(unknown) > SHOWN_PROBLEMS:
        what += f" (and {len(unknown) - SHOWN_PROBLEMS} more)"
    return (
        f"{tool}: unknown argument{'s' if len(unknown) > 1 else ''} {what}{guesses}; "
        f"{tool} takes {', '.join(known) or 'no arguments'}; nothing was done; "
        f"call {call_example(tool, schema, [close[u] for u in unknown if u in close])}"
    )


def explain_stringly(tool: str, names: Sequence[str], schema: Schema) -> str:
    what = ", ".join(f"'{n}'" for n in names)
    return (
        f"{tool}: {what} must be a list (a JSON array), not a string; to submit the changes "
        f"left in the worktree, leave it out; nothing was done; call "
        f"{call_example(tool, schema, names)}"
    )


def shown_name(name: str) -> str:
    """An agent's argument name as an error may quote it: printable, short, quoted."""
    clean = "".join(ch if ch.isprintable() else "?" for ch in name)
    return repr(clean[:40] + "…" if len(clean) > 40 else clean)


def explain_validation(
    tool: str, error: ValidationError, schema: Schema, unknown: Sequence[str] = ()
) -> str:
    """One line for all of pydantic's complaints about a call's arguments (and unknown ones)."""
    details = error.errors(include_url=False)
    problems = [f"unknown argument {shown_name(u)}" for u in unknown]
    problems += dict.fromkeys(_problem(e, schema) for e in details)
    shown = "; ".join(problems[:SHOWN_PROBLEMS])
    more = f" (and {len(problems) - SHOWN_PROBLEMS} more)" if len(problems) > SHOWN_PROBLEMS else ""
    focus = [str(e["loc"][0]) for e in details if e["loc"]]
    return f"{tool}: {shown}{more}; nothing was done; call {call_example(tool, schema, focus)}"


def call_example(tool: str, schema: Schema, focus: Sequence[str] = ()) -> str:
    """`tool(a, b=[...])`: the required arguments, and the ones to fix with a placeholder."""
    props = _properties(schema)
    required = [str(r) for r in schema.get("required") or []]
    names = [*required, *(f for f in dict.fromkeys(focus) if f in props and f not in required)]
    parts = [f"{n}={_placeholder(props[n], schema)}" if n in focus else n for n in names]
    return f"{tool}({', '.join(parts)})"


def _problem(error: Mapping[str, Any], root: Schema) -> str:
    loc = tuple(error.get("loc") or ())
    name = _dotted(loc)
    kind = str(error.get("type", ""))
    if kind == "missing":
        return f"'{name}' is required"
    if kind == "extra_forbidden":
        return f"'{name}' is not a field here"
    node = _schema_at(root, loc)
    limits = not kind.endswith(("_type", "_parsing"))  # a wrong type: the type is the news
    return (
        f"'{name}' must be {_expected(node, root, limits)} (got {_got(error.get('input'), kind)})"
    )


def _expected(node: Schema, root: Schema, limits: bool = True) -> str:
    node = _resolve(node, root)
    if "enum" in node:
        return "one of " + ", ".join(repr(v) for v in node["enum"])
    kind = node.get("type")
    if kind == "string":
        pattern = node.get("pattern")
        base = "a hex string" if pattern == HEX else "a string"
        if limits:
            base += _length(node.get("minLength"), node.get("maxLength"), "character")
        return base + (f" matching {pattern}" if pattern and pattern != HEX else "")
    if kind in ("integer", "number"):
        low, high = node.get("minimum"), node.get("maximum")
        base = "an integer" if kind == "integer" else "a number"
        if not limits:
            return base
        if low is not None and high is not None:
            return f"{base} from {low} to {high}"
        return base + (f" ≥ {low}" if low is not None else f" ≤ {high}" if high is not None else "")
    if kind == "boolean":
        return "true or false"
    if kind == "array":
        items = _resolve(node.get("items") or {}, root)
        most = node.get("maxItems")
        return f"a list of {_shape(items, root)}" + (f", at most {most}" if limits and most else "")
    if kind == "object" or "properties" in node:
        return _shape(node, root)
    return "valid"


def _shape(node: Schema, root: Schema) -> str:
    """`{path, content}` for an object, else what a single value must be."""
    node = _resolve(node, root)
    if "properties" in node:
        return "{" + ", ".join(node["properties"]) + "}"
    return _expected(node, root, False) if node else "values"


def _length(low: Any, high: Any, unit: str) -> str:
    if low is not None and high is not None and low > 1:
        return f" of {low} to {high} {unit}s"
    if high is not None:
        return f" of at most {high} {unit}s"
    if low is not None and low > 1:
        return f" of at least {low} {unit}s"
    return " (not empty)" if low == 1 else ""


def _got(value: Any, kind: str) -> str:
    """What the caller sent, in a few words (never a whole file)."""
    if kind.startswith("string_too") and isinstance(value, str) and len(value) > 40:
        return f"{len(value)} characters"
    if kind in ("too_long", "too_short") and isinstance(value, list | dict):
        return f"{len(value)} items"
    noun = _noun(value)
    if kind.endswith(("_type", "_parsing")) or isinstance(value, list | dict):
        return noun
    text = repr(value)
    return text if len(text) <= 40 else f"{noun} of {len(str(value))} characters"


def _noun(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object" if isinstance(value, dict) else type(value).__name__


def _placeholder(node: Schema, root: Schema) -> str:
    node = _resolve(node, root)
    if "enum" in node:
        return repr(node["enum"][0])
    kind = node.get("type")
    if kind == "array":
        return "[...]"
    if kind == "object" or "properties" in node:
        return "{...}"
    if kind in ("integer", "number"):
        return str(node.get("default", node.get("minimum", 0)))
    if kind == "boolean":
        return "true"
    return '"..."'


def _schema_at(root: Schema, loc: Sequence[Any]) -> Schema:
    """The schema of the argument (or nested field) at a pydantic error location."""
    node: Schema = root
    for part in loc:
        node = _resolve(node, root)
        if isinstance(part, int) and "items" in node:
            node = node["items"]
        elif isinstance(part, str) and part in (node.get("properties") or {}):
            node = node["properties"][part]
        # anything else (a union member's tag) stays on the same node
    return _resolve(node, root)


def _resolve(node: Schema, root: Schema) -> Schema:
    """Follow `$ref`s and drop the `null` of an optional value."""
    for _ in range(10):
        if "$ref" in node:
            name = str(node["$ref"]).rsplit("/", 1)[-1]
            node = (root.get("$defs") or {}).get(name, {})
        elif "anyOf" in node:
            options = [o for o in node["anyOf"] if o.get("type") != "null"]
            if len(options) != 1:
                return node
            node = {**{k: v for k, v in node.items() if k != "anyOf"}, **options[0]}
        else:
            return node
    return node


def _properties(schema: Schema) -> Mapping[str, Any]:
    return schema.get("properties") or {}


def _dotted(loc: Sequence[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and not any(c in part for c in "[]()|,"):
            out += f".{part}" if out else part
    return out or "arguments"
