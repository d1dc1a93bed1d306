"""The pinned test inventory: static discovery, collected ids, storage and checking a run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from textwrap import dedent
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from phasegate.testrun.inventory import (
    InventoryCheck,
    TestInventory,
    base_id,
    check_inventory,
    collected_inventory,
    static_inventory,
)


def found(source: str, path: str = "tests/test_m.py", **more: str) -> dict[str, int | None]:
    return dict(static_inventory({path: dedent(source), **more}).tests)


def passed(*ids: str) -> list[tuple[str, str]]:
    return [(i, "passed") for i in ids]


# --- static discovery -------------------------------------------------------------------------


def test_module_level_test_functions_are_found_sync_and_async() -> None:
    """Module-level `test*` functions, async ones included, are tests; helpers are not."""
    source = """
        def helper(): pass
        def test_a(): pass
        async def test_b(): pass
        def testing_too(): pass
        def check_c(): pass
    """
    assert found(source) == {
        "tests/test_m.py::test_a": 1,
        "tests/test_m.py::test_b": 1,
        "tests/test_m.py::testing_too": 1,
    }


def test_only_pytest_default_test_file_names_are_read() -> None:
    """`test_*.py` and `*_test.py` are read; conftest, helpers and non-Python files are not."""
    body = "def test_x(): pass\n"
    inventory = static_inventory(
        {
            "tests/test_a.py": body,
            "tests/b_test.py": body,
            "tests/conftest.py": body,
            "tests/helpers.py": body,
            "tests/test_data.txt": body,
            "tests/Test_upper.py": body,
        }
    )
    assert set(inventory.tests) == {"tests/test_a.py::test_x", "tests/b_test.py::test_x"}
    assert inventory.source == "static"


def test_test_classes_without_constructor_contribute_their_methods() -> None:
    """`Test*` classes give `path::Class::test*`; a class with __init__ or __new__ gives none."""
    source = """
        class TestGood:
            def test_a(self): pass
            def helper(self): pass
        class TestInit:
            def __init__(self): pass
            def test_b(self): pass
        class TestNew:
            def __new__(cls): pass
            def test_c(self): pass
        class NotATest:
            def test_d(self): pass
    """
    assert found(source) == {"tests/test_m.py::TestGood::test_a": 1}


def test_dunder_test_attribute_switches_collection_on_and_off() -> None:
    """`__test__ = False` hides a class, `__test__ = True` collects any class name."""
    source = """
        class TestHidden:
            __test__ = False
            def test_a(self): pass
        class Checks:
            __test__ = True
            def test_b(self): pass
    """
    assert found(source) == {"tests/test_m.py::Checks::test_b": 1}
    assert found("__test__ = False\ndef test_a(): pass\n") == {}


def test_unittest_classes_are_found_by_base_name_with_inherited_methods() -> None:
    """Any subclass of a *TestCase base is collected, with in-file mixin and base methods."""
    source = """
        import unittest
        from unittest import IsolatedAsyncioTestCase, TestCase
        class Mixin:
            def test_mixed(self): pass
        class Plain(unittest.TestCase):
            def test_a(self): pass
            class TestNested:
                def test_never(self): pass
        class Derived(Mixin, Plain):
            def test_b(self): pass
        class Short(TestCase):
            def test_c(self): pass
        class Async(IsolatedAsyncioTestCase):
            async def test_d(self): pass
    """
    assert found(source) == {
        "tests/test_m.py::Plain::test_a": 1,
        "tests/test_m.py::Derived::test_mixed": 1,
        "tests/test_m.py::Derived::test_a": 1,
        "tests/test_m.py::Derived::test_b": 1,
        "tests/test_m.py::Short::test_c": 1,
        "tests/test_m.py::Async::test_d": 1,
    }


def test_nested_test_classes_give_nested_ids() -> None:
    """A Test class inside a Test class gives `path::Outer::Inner::method`."""
    source = """
        class TestOuter:
            def test_a(self): pass
            class TestInner:
                def test_b(self): pass
                class Helper:
                    def test_c(self): pass
    """
    assert found(source) == {
        "tests/test_m.py::TestOuter::test_a": 1,
        "tests/test_m.py::TestOuter::TestInner::test_b": 1,
    }


def test_later_bindings_replace_earlier_ones() -> None:
    """Redefinition keeps one test; rebinding to a value or `del` removes it."""
    source = """
        def test_a(): pass
        def test_a(): pass
        def test_b(): pass
        test_b = None
        def test_c(): pass
        del test_c
        class TestK:
            def test_d(self): pass
        class TestK:
            def test_e(self): pass
    """
    assert found(source) == {"tests/test_m.py::test_a": 1, "tests/test_m.py::TestK::test_e": 1}


def test_test_classes_inherit_methods_and_marks_from_bases_in_the_same_file() -> None:
    """A Test subclass gets its in-file bases' tests and parametrize marks; None hides one."""
    source = """
        import pytest
        @pytest.mark.parametrize("z", [1, 2])
        class Base:
            def test_a(self, z): pass
            def test_b(self, z): pass
        class TestImpl(Base):
            test_b = None
            def test_c(self, z): pass
        class TestExternal(SomewhereElse):
            def test_d(self): pass
    """
    assert found(source) == {
        "tests/test_m.py::TestImpl::test_a": 2,
        "tests/test_m.py::TestImpl::test_c": 2,
        "tests/test_m.py::TestExternal::test_d": 1,
    }


def test_fixtures_named_like_tests_are_not_tests() -> None:
    """A `@pytest.fixture` function whose name starts with test is not pinned."""
    assert found("import pytest\n@pytest.fixture\ndef test_data(): return 1\n") == {}


# --- parametrisation counts -------------------------------------------------------------------


def test_literal_parametrize_lists_multiply_the_count() -> None:
    """Each literal parametrize list multiplies; keyword and `mark.` spellings count too."""
    source = """
        import pytest
        from pytest import mark
        @pytest.mark.parametrize("x", [1, 2, 3])
        def test_list(x): pass
        @mark.parametrize("x", (1, 2))
        def test_tuple(x): pass
        @pytest.mark.parametrize(argnames="x", argvalues=[pytest.param(1), 2])
        def test_keyword(x): pass
        @pytest.mark.parametrize("x", [1, 2])
        @pytest.mark.parametrize("y", [1, 2, 3])
        @pytest.mark.slow
        def test_stacked(x, y): pass
        @pytest.mark.parametrize("x", [])
        def test_empty(x): pass
    """
    assert found(source) == {
        "tests/test_m.py::test_list": 3,
        "tests/test_m.py::test_tuple": 2,
        "tests/test_m.py::test_keyword": 2,
        "tests/test_m.py::test_stacked": 6,
        "tests/test_m.py::test_empty": 1,
    }


def test_class_and_module_marks_multiply_every_test_beneath_them() -> None:
    """Class decorators and `pytestmark` (module or class) multiply methods and nested classes."""
    source = """
        import pytest
        pytestmark = [pytest.mark.parametrize("m", [1, 2]), pytest.mark.slow]
        def test_mod(m): pass
        @pytest.mark.parametrize("c", [1, 2, 3])
        class TestC:
            pytestmark = pytest.mark.parametrize("k", [1, 2])
            def test_a(self, m, c, k): pass
            class TestInner:
                def test_b(self, m, c, k): pass
    """
    assert found(source) == {
        "tests/test_m.py::test_mod": 2,
        "tests/test_m.py::TestC::test_a": 12,
        "tests/test_m.py::TestC::TestInner::test_b": 12,
    }


def test_a_stored_parametrize_mark_is_seen_through() -> None:
    """`cases = pytest.mark.parametrize(...)` used as `@cases` counts like the mark itself."""
    source = """
        import pytest
        cases = pytest.mark.parametrize("x", [1, 2, 3, 4])
        @cases
        def test_a(x): pass
    """
    assert found(source) == {"tests/test_m.py::test_a": 4}


@pytest.mark.parametrize(
    "decorator",
    [
        '@pytest.mark.parametrize("x", CASES)',
        '@pytest.mark.parametrize("x", make_cases())',
        '@pytest.mark.parametrize("x", [i for i in range(3)])',
        '@pytest.mark.parametrize("x", [*CASES, 4])',
        "@given(st.integers())",
        "@unknown_decorator",
    ],
)
def test_counts_that_cannot_be_read_are_one_or_more(decorator: str) -> None:
    """Non-literal argvalues and decorators that are not marks make the count None."""
    source = f"import pytest\nCASES = [1, 2]\n{decorator}\ndef test_a(x): pass\n"
    assert found(source) == {"tests/test_m.py::test_a": None}


def test_static_and_class_methods_keep_their_count() -> None:
    """staticmethod and classmethod decorators neither hide a test nor make its count unknown."""
    source = """
        class TestS:
            @staticmethod
            def test_a(): pass
            @classmethod
            def test_b(cls): pass
    """
    assert found(source) == {
        "tests/test_m.py::TestS::test_a": 1,
        "tests/test_m.py::TestS::test_b": 1,
    }


def test_parametrized_fixtures_in_a_conftest_make_counts_unknown_below_it() -> None:
    """A conftest fixture with params= makes every count in its directory tree None."""
    conftest = "import pytest\n@pytest.fixture(params=[1, 2])\ndef backend(request): ...\n"
    inventory = static_inventory(
        {
            "tests/db/conftest.py": conftest,
            "tests/db/test_db.py": "def test_a(backend): pass\n",
            "tests/db/deep/test_deep.py": "def test_b(): pass\n",
            "tests/test_other.py": "def test_c(): pass\n",
            "tests/dbx/test_sibling.py": "def test_d(): pass\n",
        }
    )
    assert dict(inventory.tests) == {
        "tests/db/test_db.py::test_a": None,
        "tests/db/deep/test_deep.py::test_b": None,
        "tests/test_other.py::test_c": 1,
        "tests/dbx/test_sibling.py::test_d": 1,
    }


def test_generate_tests_hooks_make_counts_unknown() -> None:
    """pytest_generate_tests in the module or a root conftest makes the counts None."""
    hook = "def pytest_generate_tests(metafunc): ...\n"
    assert found(hook + "def test_a(n): pass\n") == {"tests/test_m.py::test_a": None}
    assert found("def test_a(): pass\n", **{"conftest.py": hook}) == {
        "tests/test_m.py::test_a": None
    }


def test_a_file_that_does_not_parse_names_the_file_and_line() -> None:
    """Syntax errors, null bytes and absurd nesting raise ValueError with `path:line: message`."""
    with pytest.raises(ValueError, match=r"^tests/test_bad\.py:3: invalid syntax"):
        static_inventory({"tests/test_bad.py": "def test_a():\n    pass\ndef test_b(:\n"})
    with pytest.raises(ValueError, match=r"^tests/test_nul\.py:1: "):
        static_inventory({"tests/test_nul.py": "def test_a(): pass\0\n"})
    with pytest.raises(ValueError, match=r"^tests/test_deep\.py:"):
        static_inventory({"tests/test_deep.py": "x = " + "(" * 5000 + ")" * 5000})


SAMPLE_PROJECT = {
    "pytest.ini": "[pytest]\nmarkers = slow\n",
    "tests/__init__.py": "",
    "tests/test_sample.py": dedent(
        """
        import unittest
        import pytest

        cases = pytest.mark.parametrize("n", [1, 2, 3])

        def test_plain(): pass

        @cases
        @pytest.mark.parametrize("s", ["a::b", "c]d"])
        def test_params(n, s): pass

        class Base:
            def test_inherited(self, z): pass

        @pytest.mark.parametrize("z", (1, 2))
        class TestGroup(Base):
            pytestmark = pytest.mark.slow
            def test_member(self, z): pass
            @staticmethod
            def test_static(z): pass
            class TestInner:
                def test_inner(self, z): pass

        class TestSkipped:
            def __init__(self): pass
            def test_never(self): pass

        class Case(unittest.TestCase):
            def test_unit(self): pass
        """
    ),
    "tests/sub/conftest.py": "import pytest\n@pytest.fixture(params=[1, 2])\ndef p(request): ...\n",
    "tests/sub/test_fixture.py": "def test_uses(p): pass\n",
}


def test_static_discovery_agrees_with_pytest_collection(tmp_path: Path) -> None:
    """On a sample project, static counts equal pytest's, except None where a fixture hides them."""
    for name, text in SAMPLE_PROJECT.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},
        check=True,
    )
    collected = collected_inventory(line for line in done.stdout.splitlines() if "::" in line)
    static = static_inventory({k: v for k, v in SAMPLE_PROJECT.items() if k.endswith(".py")})
    assert len(collected.tests) == 8
    assert dict(static.tests) == {**collected.tests, "tests/sub/test_fixture.py::test_uses": None}


# --- collected ids and storage ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("node_id", "expected"),
    [
        ("tests/t.py::test_a", "tests/t.py::test_a"),
        ("tests/t.py::test_a[1-2]", "tests/t.py::test_a"),
        ("tests/t.py::TestX::test_y[a::b]", "tests/t.py::TestX::test_y"),
        ("tests/t.py::test_z[x]y[::]]", "tests/t.py::test_z"),
        ("tests/t.py", "tests/t.py"),
    ],
)
def test_base_id_strips_the_parameter_suffix(node_id: str, expected: str) -> None:
    """The suffix starts at the first `[` after the path, even if it holds `::` or `]`."""
    assert base_id(node_id) == expected


def test_collected_inventory_counts_instances_per_base_id() -> None:
    """Distinct parametrised ids are counted per base id; a repeated id counts once."""
    inventory = collected_inventory(
        [
            "tests/t.py::test_p[1]",
            "tests/t.py::test_p[2]",
            "tests/t.py::test_a",
            "tests/t.py::test_a",
        ]
    )
    assert inventory.source == "collected"
    assert dict(inventory.tests) == {"tests/t.py::test_a": 1, "tests/t.py::test_p": 2}


def test_collected_inventory_rejects_ids_that_are_not_tests() -> None:
    """A bare file id (how pytest reports a collection error) is not a test id."""
    with pytest.raises(ValueError, match="collection error"):
        collected_inventory(["tests/t.py::test_a", "tests/t.py"])


def test_inventory_round_trips_through_json() -> None:
    """to_dict output survives JSON and from_dict rebuilds an equal inventory."""
    inventory = TestInventory("static", {"tests/t.py::test_b": None, "tests/t.py::test_a": 3})
    data = json.loads(json.dumps(inventory.to_dict()))
    assert data == {
        "source": "static",
        "tests": {"tests/t.py::test_a": 3, "tests/t.py::test_b": None},
    }
    assert TestInventory.from_dict(data) == inventory


@pytest.mark.parametrize(
    "data",
    [
        None,
        [],
        {"source": "static"},
        {"source": "static", "tests": {}, "extra": 1},
        {"source": "guessed", "tests": {}},
        {"source": "static", "tests": []},
        {"source": "static", "tests": {"tests/t.py::test_a": 0}},
        {"source": "static", "tests": {"tests/t.py::test_a": -1}},
        {"source": "static", "tests": {"tests/t.py::test_a": True}},
        {"source": "static", "tests": {"tests/t.py::test_a": 1.0}},
        {"source": "static", "tests": {"tests/t.py::test_a": "1"}},
        {"source": "static", "tests": {"tests/t.py::test_a[1]": 1}},
        {"source": "static", "tests": {"tests/t.py": 1}},
    ],
)
def test_malformed_inventory_data_is_rejected(data: Any) -> None:
    """from_dict raises ValueError on wrong shapes, sources, counts and non-base ids."""
    with pytest.raises(ValueError):
        TestInventory.from_dict(data)


def test_an_empty_inventory_is_falsy_and_the_pin_is_read_only() -> None:
    """An inventory with no tests is falsy, and its tests mapping cannot be changed."""
    assert not TestInventory("collected", {})
    inventory = TestInventory("collected", {"tests/t.py::test_a": 1})
    assert inventory
    with pytest.raises(TypeError):
        inventory.tests["tests/t.py::test_b"] = 1  # type: ignore[index]


# --- checking a run ---------------------------------------------------------------------------

PINNED = TestInventory(
    "static",
    {"tests/t.py::test_a": 1, "tests/t.py::test_p": 3, "tests/t.py::TestK::test_n": None},
)
ALL = [
    "tests/t.py::test_a",
    "tests/t.py::test_p[1]",
    "tests/t.py::test_p[2]",
    "tests/t.py::test_p[3]",
    "tests/t.py::TestK::test_n[x]",
]


def test_a_run_of_exactly_the_pinned_tests_all_passing_is_ok() -> None:
    """Every pinned instance passing, and nothing else, is ok and says so."""
    check = check_inventory(PINNED, passed(*ALL))
    assert check == InventoryCheck()
    assert check.ok
    assert check.describe() == "every pinned test ran and passed, and nothing else ran"


def test_a_pinned_test_that_did_not_run_is_missing() -> None:
    """A pinned base id with no instance in the run is reported missing."""
    check = check_inventory(PINNED, passed(*ALL[1:]))
    assert not check.ok
    assert check.missing == ("tests/t.py::test_a",)
    assert check.describe() == "1 missing: tests/t.py::test_a"


def test_an_invented_test_is_unexpected() -> None:
    """A test id outside the inventory makes the run not ok, even if it passed."""
    check = check_inventory(PINNED, passed(*ALL, "tests/t.py::test_invented"))
    assert check.unexpected == ("tests/t.py::test_invented",)
    assert not check.ok


@pytest.mark.parametrize("outcome", ["failed", "error", "skipped", "xpassed"])
def test_a_pinned_test_that_did_not_pass_is_reported(outcome: str) -> None:
    """Failed, errored, skipped (and unknown) outcomes of pinned instances are not passed."""
    ran = [*passed(*ALL[1:]), ("tests/t.py::test_a", outcome)]
    check = check_inventory(PINNED, ran)
    assert check.not_passed == (f"tests/t.py::test_a: {outcome}",)
    assert not check.ok
    assert check.describe() == f"1 not passed: tests/t.py::test_a: {outcome}"


def test_wrong_parametrised_counts_are_reported() -> None:
    """Fewer or more instances than an exact count is a miscount naming both numbers."""
    fewer = check_inventory(PINNED, passed(*ALL[:2], *ALL[4:]))
    assert fewer.miscounted == ("tests/t.py::test_p: 3 expected, 1 ran",)
    more = check_inventory(PINNED, passed(*ALL, "tests/t.py::test_p[4]"))
    assert more.miscounted == ("tests/t.py::test_p: 3 expected, 4 ran",)
    assert more.unexpected == ()


def test_an_unknown_count_accepts_one_or_more_instances() -> None:
    """A None count accepts one plain instance or several suffixed ones, if all passed."""
    several = [*ALL[:4], "tests/t.py::TestK::test_n[a]", "tests/t.py::TestK::test_n[b]"]
    assert check_inventory(PINNED, passed(*several)).ok
    assert check_inventory(PINNED, passed(*ALL[:4], "tests/t.py::TestK::test_n")).ok


def test_a_repeated_id_keeps_its_worst_outcome() -> None:
    """An id reported passed and then errored (teardown) counts once, as errored."""
    ran = [*passed(*ALL), ("tests/t.py::test_a", "error"), ("tests/t.py::test_a", "passed")]
    check = check_inventory(PINNED, ran)
    assert check.not_passed == ("tests/t.py::test_a: error",)
    assert check.miscounted == ()


def test_describe_lists_the_first_few_ids_of_each_kind() -> None:
    """describe() names five ids per kind and the number of the rest."""
    extra = [f"tests/t.py::test_x{i}" for i in range(8)]
    check = check_inventory(PINNED, passed(*ALL[1:], *extra))
    assert check.describe() == (
        "1 missing: tests/t.py::test_a; 8 unexpected: tests/t.py::test_x0, tests/t.py::test_x1, "
        "tests/t.py::test_x2, tests/t.py::test_x3, tests/t.py::test_x4 (+3 more)"
    )


# --- properties -------------------------------------------------------------------------------

names = st.builds(str.__add__, st.sampled_from("aTx_"), st.text(alphabet="ab_19", max_size=6))
suffixes = st.text(alphabet="ab1:[]- ", max_size=8).map(lambda s: f"[{s}]")
node_ids = st.builds(
    lambda path, classes, name, suffix: "::".join([path, *classes, name]) + suffix,
    st.sampled_from(["tests/test_a.py", "tests/x/b_test.py", "t[1]/test_c.py"]),
    st.lists(names, max_size=2),
    names,
    st.one_of(st.just(""), suffixes),
)


@given(st.lists(node_ids, min_size=1, max_size=20))
def test_any_collected_run_matches_itself(ids: list[str]) -> None:
    """The inventory collected from any ids accepts exactly those ids all passing."""
    inventory = collected_inventory(ids)
    assert check_inventory(inventory, passed(*ids)).ok
    assert TestInventory.from_dict(json.loads(json.dumps(inventory.to_dict()))) == inventory


@given(st.lists(node_ids, min_size=1, max_size=20, unique=True), st.data())
def test_dropping_any_collected_instance_is_noticed(ids: list[str], data: st.DataObject) -> None:
    """Leaving out any one collected instance makes the check fail."""
    dropped = data.draw(st.sampled_from(ids))
    check = check_inventory(collected_inventory(ids), passed(*(i for i in ids if i != dropped)))
    assert not check.ok
    assert check.missing or check.miscounted


@given(node_ids)
def test_base_id_is_idempotent(node_id: str) -> None:
    """Stripping the suffix twice changes nothing more than stripping it once."""
    assert base_id(base_id(node_id)) == base_id(node_id)
    assert "[" not in base_id(node_id).partition("::")[2]


@given(st.text(max_size=300))
def test_static_discovery_of_any_text_returns_or_reports_a_bad_file(source: str) -> None:
    """Arbitrary file content yields an inventory or a ValueError naming the file, nothing else."""
    try:
        inventory = static_inventory({"tests/test_any.py": source})
    except ValueError as exc:
        assert str(exc).startswith("tests/test_any.py:")
    else:
        assert all(i.startswith("tests/test_any.py::") for i in inventory.tests)
