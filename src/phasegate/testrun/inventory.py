"""Pin the tests an approved run must contain, and check a later run against that pin.

An inventory maps each base node id (`tests/test_a.py::TestX::test_y`, no `[param]`
suffix) to how many instances must run: an int is exact, None means "one or more".
A run matches only if every pinned test ran, every instance of it passed, the
exact counts hold, and no test outside the inventory ran. Paths are as pytest
prints them, relative to its rootdir (assumed to be the repository root).

`collected_inventory` pins the ids a red run collected. When the tests cannot be
imported yet (TDD), `static_inventory` reads the approved files with pytest's
default rules; project settings (`python_files`, `python_classes`,
`python_functions`, `collect_imported_tests`) are not honoured:

- files: basename `test_*.py` or `*_test.py`; a module with `__test__ = False` has none;
- tests: top-level `def`/`async def test*` (not inside `if`/`try`), and `test*`
  methods of classes named `Test*` without `__init__`/`__new__`, of classes with
  `__test__ = True`, and of any subclass of a `*TestCase` base (unittest, Django:
  one instance each, nothing nested); nested test classes give
  `path::Outer::Inner::test`; later bindings replace earlier ones; `__test__ =
  False` and `@pytest.fixture` exclude; methods and marks are inherited only from
  bases defined in the same file; test functions imported from elsewhere are not
  pinned (an imported name may as well be a module such as `numpy.testing`);
- counts: each `parametrize` mark on the function, its classes (and their
  in-file bases) or in `pytestmark` multiplies by the length of a literal
  list/tuple (an empty one still gives one instance); other argvalues, and any
  decorator that is not a mark (it may hide a stored `parametrize`), make it None.

A test with no parametrize mark is pinned as exactly 1, not "one or more": an
agent that cannot edit the tests might still drop instances through config
(`--deselect`, `-k`), and exact counts catch that. But pytest also parametrizes
through fixtures with `params=` and `pytest_generate_tests` hooks, which the
test's own source does not show; where one is visible (in the module, or in a
`conftest.py` passed in whose directory contains it) every count in the module
is None. Plugins that do so unseen (`pytest-repeat`) need a collected inventory.
Suffixes are not checked, only numbers: a one-element parametrize and anyio's
`[asyncio]` both give one suffixed instance.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from posixpath import basename, dirname
from types import MappingProxyType
from typing import Any, Literal

Count = int | None
Source = Literal["collected", "static"]

_SOURCES = ("collected", "static")
_TEST_FILES = ("test_*.py", "*_test.py")
_LISTED = 5  # ids named in a description before "+N more"
_SEVERITY = {"passed": 0, "skipped": 1, "failed": 2, "error": 3}


def base_id(node_id: str) -> str:
    """Return a pytest node id without its `[param]` suffix."""
    path, sep, names = node_id.partition("::")
    # Python names cannot contain "[", so the first one after the path starts the
    # parameters, which may themselves contain "::" or "]".
    bracket = names.find("[")
    return node_id if not sep or bracket < 0 else f"{path}::{names[:bracket]}"


@dataclass(frozen=True)
class TestInventory:
    """The pinned base test ids and how many instances of each must run (None: one or more)."""

    __test__ = False  # not a pytest test class

    source: Source
    tests: Mapping[str, Count] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.source not in _SOURCES:
            raise ValueError(f"inventory source must be one of {_SOURCES}, not {self.source!r}")
        for test_id, count in self.tests.items():
            if not isinstance(test_id, str) or "::" not in test_id or base_id(test_id) != test_id:
                raise ValueError(f"{test_id!r} is not a base pytest node id")
            if count is not None and (type(count) is not int or count < 1):
                raise ValueError(f"{test_id}: count must be a positive int or None, not {count!r}")
        object.__setattr__(self, "tests", MappingProxyType(dict(sorted(self.tests.items()))))

    def __bool__(self) -> bool:
        return bool(self.tests)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-compatible dict (for event payloads)."""
        return {"source": self.source, "tests": dict(self.tests)}

    @classmethod
    def from_dict(cls, data: Any) -> TestInventory:
        """Rebuild an inventory from `to_dict` output; raise ValueError if it is malformed."""
        if not isinstance(data, dict) or set(data) != {"source", "tests"}:
            raise ValueError("an inventory must be a dict with exactly 'source' and 'tests'")
        if not isinstance(data["tests"], dict):
            raise ValueError("an inventory's 'tests' must be a dict of node id to count")
        return cls(data["source"], data["tests"])


def collected_inventory(ids: Iterable[str]) -> TestInventory:
    """Pin the exact node ids a run collected, counting instances per base id."""
    counts: dict[str, int] = {}
    for test_id in set(ids):
        if "::" not in test_id:
            raise ValueError(f"{test_id!r} is not a test id (a collection error for a file?)")
        counts[base_id(test_id)] = counts.get(base_id(test_id), 0) + 1
    return TestInventory("collected", counts)


def static_inventory(files: Mapping[str, str]) -> TestInventory:
    """Find the tests in approved test files (path -> source) by reading them; see module doc."""
    trees = {path: _parse(path, source) for path, source in files.items() if _is_read(path)}
    hiders = [path for path, tree in trees.items() if _hides_params(tree)]
    tests: dict[str, Count] = {}
    for path, tree in trees.items():
        if basename(path) == "conftest.py":
            continue
        try:
            found = _module_tests(path, tree)
        except RecursionError as exc:
            raise ValueError(f"{path}:1: nested too deeply to read") from exc
        tests.update(dict.fromkeys(found) if any(_covers(h, path) for h in hiders) else found)
    return TestInventory("static", tests)


@dataclass(frozen=True)
class InventoryCheck:
    """How a run differs from the inventory; every field empty means it matches."""

    missing: tuple[str, ...] = ()  # pinned base ids with no instance in the run
    unexpected: tuple[str, ...] = ()  # ids that ran whose base id is not pinned
    miscounted: tuple[str, ...] = ()  # "id: 3 expected, 1 ran"
    not_passed: tuple[str, ...] = ()  # "id: skipped" for pinned instances that did not pass

    @property
    def ok(self) -> bool:
        """Whether every pinned test ran as pinned and passed, and nothing else ran."""
        return not (self.missing or self.unexpected or self.miscounted or self.not_passed)

    def describe(self) -> str:
        """Return one line naming the differences, the first few ids of each kind."""
        kinds = [
            ("missing", self.missing),
            ("unexpected", self.unexpected),
            ("miscounted", self.miscounted),
            ("not passed", self.not_passed),
        ]
        parts = [f"{len(items)} {kind}: {_first_few(items)}" for kind, items in kinds if items]
        return "; ".join(parts) or "every pinned test ran and passed, and nothing else ran"


def check_inventory(inventory: TestInventory, ran: Iterable[tuple[str, str]]) -> InventoryCheck:
    """Compare (node id, outcome) pairs from a run with the inventory.

    An empty inventory pins nothing, so a run without tests matches it: callers
    must not rely on an empty (falsy) inventory. An id reported twice keeps its
    worst outcome; an unknown outcome counts as not passed.
    """
    outcomes: dict[str, str] = {}
    for test_id, outcome in ran:
        earlier = outcomes.get(test_id)
        if earlier is None or _severity(outcome) > _severity(earlier):
            outcomes[test_id] = outcome
    instances: dict[str, list[str]] = {}
    for test_id in outcomes:
        instances.setdefault(base_id(test_id), []).append(test_id)
    pinned = inventory.tests
    return InventoryCheck(
        missing=tuple(sorted(b for b in pinned if b not in instances)),
        unexpected=tuple(sorted(i for b, ids in instances.items() if b not in pinned for i in ids)),
        miscounted=tuple(
            f"{b}: {n} expected, {len(instances[b])} ran"
            for b, n in pinned.items()
            if n is not None and b in instances and len(instances[b]) != n
        ),
        not_passed=tuple(
            sorted(
                f"{i}: {outcomes[i]}"
                for i in outcomes
                if base_id(i) in pinned and outcomes[i] != "passed"
            )
        ),
    )


def _severity(outcome: str) -> int:
    return _SEVERITY.get(outcome, len(_SEVERITY))


def _first_few(items: tuple[str, ...]) -> str:
    shown = ", ".join(items[:_LISTED])
    return shown + (f" (+{len(items) - _LISTED} more)" if len(items) > _LISTED else "")


def _is_read(path: str) -> bool:
    name = basename(path)
    return name == "conftest.py" or any(fnmatchcase(name, pattern) for pattern in _TEST_FILES)


def _covers(hider: str, path: str) -> bool:
    """Whether hidden parametrizing in `hider` (the module or a conftest above) reaches `path`."""
    if hider == path:
        return True
    folder = dirname(hider)
    return basename(hider) == "conftest.py" and (not folder or path.startswith(folder + "/"))


def _parse(path: str, source: str) -> ast.Module:
    try:
        return ast.parse(source, filename=path)
    except SyntaxError as exc:
        raise ValueError(f"{path}:{exc.lineno or 1}: {exc.msg}") from exc
    except (ValueError, RecursionError, MemoryError) as exc:  # null bytes, absurd nesting
        raise ValueError(f"{path}:1: cannot be parsed ({type(exc).__name__}: {exc})") from exc


def _hides_params(tree: ast.Module) -> bool:
    """Whether a module parametrizes in ways its tests' source does not show."""
    functions = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    calls = [d for f in functions for d in f.decorator_list if isinstance(d, ast.Call)]
    hook = any(f.name == "pytest_generate_tests" for f in functions)
    return hook or any(k.arg == "params" for call in calls for k in call.keywords)


@dataclass(eq=False)  # compared by identity: one object per class statement
class _Class:
    """A class (or the module) as pytest's collector would see it."""

    members: dict[str, _Member] = field(default_factory=dict)  # None: not collectable
    count: Count = 1  # its own `pytestmark` and decorators
    test_attr: bool | None = None
    has_ctor: bool = False
    bases: tuple[_Class, ...] = ()  # bases defined in the same file
    outside_bases: tuple[str, ...] = ()  # dotted names of the others


@dataclass(frozen=True)
class _Func:
    count: Count


_Member = _Func | _Class | None
_Marks = Mapping[str, ast.expr]  # module-level names, to see through `cases = mark.parametrize(…)`


def _module_tests(path: str, tree: ast.Module) -> dict[str, Count]:
    marks = {
        target.id: stmt.value
        for stmt in tree.body
        if isinstance(stmt, ast.Assign)
        for target in stmt.targets
        if isinstance(target, ast.Name)
    }
    module = _Class()
    _bind(tree.body, module, module.members, marks)
    found: dict[str, Count] = {}
    if module.test_attr is not False:
        _emit(path, module.members, module.count, found)
    return found


def _bind(body: list[ast.stmt], scope: _Class, module: dict[str, _Member], marks: _Marks) -> None:
    """Record a body's bindings in order, so later ones replace earlier ones."""
    members = scope.members
    for stmt in body:
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
            scope.has_ctor |= stmt.name in ("__init__", "__new__")
            fixture = any(_callee(d).rsplit(".", 1)[-1] == "fixture" for d in stmt.decorator_list)
            members[stmt.name] = None if fixture else _Func(_decorated(stmt.decorator_list, marks))
        elif isinstance(stmt, ast.ClassDef):
            members[stmt.name] = _class(stmt, members, module, marks)
        elif isinstance(stmt, ast.Assign | ast.AnnAssign | ast.AugAssign):
            _assign(stmt, scope, marks)
        elif isinstance(stmt, ast.Delete):
            for target in stmt.targets:
                if isinstance(target, ast.Name):
                    members.pop(target.id, None)
        elif isinstance(stmt, ast.Import | ast.ImportFrom):
            # An imported name may be a module or a function: neither is pinned (see docs).
            members.update((a.asname or a.name.split(".")[0], None) for a in stmt.names)


def _class(
    node: ast.ClassDef, scope: dict[str, _Member], module: dict[str, _Member], marks: _Marks
) -> _Class:
    bases: list[_Class] = []
    outside: list[str] = []
    for base in node.bases:
        name = _dotted(base) or ""
        found = scope.get(name) or module.get(name)
        if isinstance(found, _Class):
            bases.append(found)
        else:
            outside.append(name)
    cls = _Class(bases=tuple(bases), outside_bases=tuple(outside))
    _bind(node.body, cls, module, marks)
    cls.count = _mul(cls.count, _decorated(node.decorator_list, marks))
    return cls


def _assign(stmt: ast.Assign | ast.AnnAssign | ast.AugAssign, scope: _Class, marks: _Marks) -> None:
    targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
    value = stmt.value
    for target in targets:
        if not isinstance(target, ast.Name):
            scope.members.update((n.id, None) for n in ast.walk(target) if isinstance(n, ast.Name))
        elif value is None:
            continue  # a bare annotation binds nothing
        elif target.id == "pytestmark":
            elements = value.elts if isinstance(value, ast.List | ast.Tuple) else [value]
            count = _mul(*(_mark_count(e, marks) for e in elements))
            scope.count = _mul(scope.count, count) if isinstance(stmt, ast.AugAssign) else count
        elif target.id == "__test__":
            literal = value.value if isinstance(value, ast.Constant) else None
            scope.test_attr = literal if isinstance(literal, bool) else None
        else:
            aliased = value.id if isinstance(value, ast.Name) else None
            plain = not isinstance(stmt, ast.AugAssign)
            scope.members[target.id] = scope.members.get(aliased or "") if plain else None


def _emit(prefix: str, members: dict[str, _Member], count: Count, found: dict[str, Count]) -> None:
    for name, member in members.items():
        if isinstance(member, _Func) and name.startswith("test"):
            found[f"{prefix}::{name}"] = _mul(count, member.count)
        elif isinstance(member, _Class):
            _emit_class(f"{prefix}::{name}", name, member, count, found)


def _emit_class(prefix: str, name: str, cls: _Class, count: Count, found: dict[str, Count]) -> None:
    mro = _mro(cls)
    test_attr = next((c.test_attr for c in mro if c.test_attr is not None), None)
    members: dict[str, _Member] = {}
    for c in reversed(mro):
        members.update(c.members)
    if test_attr is False:
        return
    if any(b.rsplit(".", 1)[-1].endswith("TestCase") for c in mro for b in c.outside_bases):
        # unittest runs each test method once and collects no nested classes.
        tests = (n for n, m in members.items() if isinstance(m, _Func) and n.startswith("test"))
        found.update((f"{prefix}::{n}", 1) for n in tests)
    elif (name.startswith("Test") or test_attr) and not any(c.has_ctor for c in mro):
        _emit(prefix, members, _mul(count, *(c.count for c in mro)), found)


def _mro(cls: _Class) -> list[_Class]:
    order = [cls]
    for base in cls.bases:
        order += [c for c in _mro(base) if c not in order]
    return order


def _decorated(decorators: list[ast.expr], marks: _Marks) -> Count:
    return _mul(*(_mark_count(d, marks) for d in decorators))


def _mark_count(expr: ast.expr, marks: _Marks) -> Count:
    """How many instances a decorator or mark makes of each test (None: cannot tell)."""
    if isinstance(expr, ast.Name) and expr.id in marks:
        expr = marks[expr.id]
    parts = _callee(expr).split(".")
    if parts[-1] == "parametrize":
        return _parametrize_count(expr) if isinstance(expr, ast.Call) else None
    if "mark" in parts[:-1] or parts in (["staticmethod"], ["classmethod"]):
        return 1
    return None


def _parametrize_count(call: ast.Call) -> Count:
    if len(call.args) > 1:
        values: ast.expr | None = call.args[1]
    else:
        values = next((k.value for k in call.keywords if k.arg == "argvalues"), None)
    if not isinstance(values, ast.List | ast.Tuple):
        return None
    if any(isinstance(e, ast.Starred) for e in values.elts):
        return None
    return max(len(values.elts), 1)  # an empty list still yields one (skipped) instance


def _mul(*counts: Count) -> Count:
    known = [c for c in counts if c is not None]
    return math.prod(known) if len(known) == len(counts) else None


def _callee(expr: ast.expr) -> str:
    return _dotted(expr.func if isinstance(expr, ast.Call) else expr) or ""


def _dotted(expr: ast.expr) -> str | None:
    if isinstance(expr, ast.Name):
        return expr.id
    if isinstance(expr, ast.Attribute):
        base = _dotted(expr.value)
        return None if base is None else f"{base}.{expr.attr}"
    return None
