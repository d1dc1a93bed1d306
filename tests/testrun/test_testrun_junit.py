"""parse_junit on pytest and generic JUnit reports, and on hostile or broken XML."""

from __future__ import annotations

from pathlib import Path

import pytest

from phasegate.testrun import ReportError, parse_junit

PYTEST_XUNIT2 = b"""<?xml version="1.0" encoding="utf-8"?>
<testsuites name="pytest tests"><testsuite name="pytest" tests="5">
<testcase classname="tests.test_a" name="test_ok" time="0.001" />
<testcase classname="tests.test_a" name="test_fail"><failure message="AssertionError: boom">
tests/test_a.py:3: AssertionError</failure></testcase>
<testcase classname="tests.test_a.TestC.TestInner" name="test_z[a::b]" />
<testcase classname="tests.test_a" name="test_skip"><skipped type="pytest.skip" message="nah"/>
</testcase>
<testcase classname="tests.test_a" name="test_err"><error message="failed on setup">x</error>
</testcase>
</testsuite></testsuites>"""


def ids_and_outcomes(xml: bytes, root: Path | None = None) -> list[tuple[str, str]]:
    return [(t.id, t.outcome) for t in parse_junit(xml, root).tests]


def test_pytest_xunit2_ids_match_pytest_node_ids() -> None:
    """pytest's dotted classnames become node ids, with outcomes for each kind of result."""
    assert ids_and_outcomes(PYTEST_XUNIT2) == [
        ("tests/test_a.py::test_ok", "passed"),
        ("tests/test_a.py::test_fail", "failed"),
        ("tests/test_a.py::TestC::TestInner::test_z[a::b]", "passed"),
        ("tests/test_a.py::test_skip", "skipped"),
        ("tests/test_a.py::test_err", "error"),
    ]


def test_failure_message_and_traceback_are_extracted() -> None:
    """A failure keeps its message attribute and its text as the traceback."""
    fail = parse_junit(PYTEST_XUNIT2).tests[1]
    assert fail.message == "AssertionError: boom"
    assert "tests/test_a.py:3: AssertionError" in fail.traceback


def test_counts_cover_every_outcome() -> None:
    """counts() tallies total, passed, failed, errors and skipped."""
    assert parse_junit(PYTEST_XUNIT2).counts() == {
        "total": 5,
        "passed": 2,
        "failed": 1,
        "errors": 1,
        "skipped": 1,
    }


def test_module_path_is_resolved_against_the_checkout(tmp_path: Path) -> None:
    """With a root, the module is the longest dotted prefix that is a real .py file."""
    (tmp_path / "Tests").mkdir()
    (tmp_path / "Tests" / "Upper_mod.py").write_text("")
    xml = (
        b'<testsuite name="pytest">'
        b'<testcase classname="Tests.Upper_mod.Klass" name="t"/></testsuite>'
    )
    assert ids_and_outcomes(xml, tmp_path) == [("Tests/Upper_mod.py::Klass::t", "passed")]


def test_xunit1_file_attribute_is_used() -> None:
    """When the report names the file, the id uses it and keeps the class path."""
    xml = (
        b'<testsuite name="pytest"><testcase classname="pkg.test_m.TestK" name="t" '
        b'file="pkg/test_m.py" line="3"/></testsuite>'
    )
    assert ids_and_outcomes(xml) == [("pkg/test_m.py::TestK::t", "passed")]


def test_pytest_collection_error_is_identified_by_file() -> None:
    """A module that failed to import is reported under its file path."""
    xml = (
        b'<testsuites><testsuite name="pytest"><testcase classname="" name="tests.sub.test_b">'
        b'<error message="collection failure">ImportError</error></testcase></testsuite>'
        b"</testsuites>"
    )
    assert ids_and_outcomes(xml) == [("tests/sub/test_b.py", "error")]


def test_generic_junit_keeps_classname_and_name() -> None:
    """A non-pytest report (e.g. Maven surefire) gets `classname::name` ids."""
    xml = (
        b'<testsuite name="com.acme.CalcTest" tests="2">'
        b'<testcase classname="com.acme.CalcTest" name="adds"/>'
        b'<testcase classname="com.acme.CalcTest" name="subs"><failure type="AssertionError">'
        b"expected 2</failure></testcase></testsuite>"
    )
    assert ids_and_outcomes(xml) == [
        ("com.acme.CalcTest::adds", "passed"),
        ("com.acme.CalcTest::subs", "failed"),
    ]


def test_a_test_reported_twice_keeps_its_worst_outcome() -> None:
    """A call failure plus a teardown error for one test is one result: the error."""
    xml = (
        b'<testsuite name="pytest"><testcase classname="t" name="x"><failure message="f"/>'
        b'</testcase><testcase classname="t" name="x"><error message="teardown"/></testcase>'
        b'<testcase classname="t" name="x"/></testsuite>'
    )
    assert ids_and_outcomes(xml) == [("t.py::x", "error")]


def test_long_traceback_is_cut_to_an_excerpt() -> None:
    """A huge traceback keeps its start and end within 2048 characters."""
    body = "START" + "x" * 100_000 + "END"
    xml = (
        f'<testsuite><testcase classname="c" name="t"><failure message="m">{body}'
        "</failure></testcase></testsuite>"
    ).encode()
    traceback = parse_junit(xml).tests[0].traceback
    assert len(traceback) <= 2048
    assert traceback.startswith("START") and traceback.endswith("END")


def test_billion_laughs_is_refused_before_parsing() -> None:
    """A report with a DOCTYPE or entity declarations is refused, never expanded."""
    xml = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
        b'<testsuite><testcase classname="c" name="&lol2;"/></testsuite>'
    )
    with pytest.raises(ReportError, match="DOCTYPE"):
        parse_junit(xml)


def test_external_entity_is_refused() -> None:
    """An external entity pointing at a local file is refused."""
    xml = b'<!doctype x [<!ENTITY e SYSTEM "file:///etc/passwd">]><testsuite>&e;</testsuite>'
    with pytest.raises(ReportError, match="DOCTYPE"):
        parse_junit(xml)


def test_utf16_report_is_refused() -> None:
    """A UTF-16 report is refused, since the DOCTYPE scan needs an ASCII-compatible encoding."""
    with pytest.raises(ReportError, match="UTF-8"):
        parse_junit('<testsuite name="x"/>'.encode("utf-16"))


def test_truncated_xml_raises_report_error() -> None:
    """A report cut off mid-write raises ReportError saying it is not well-formed."""
    with pytest.raises(ReportError, match="not well-formed"):
        parse_junit(PYTEST_XUNIT2[:200])


def test_unexpected_root_element_raises_report_error() -> None:
    """XML that is not a JUnit report raises ReportError naming the element."""
    with pytest.raises(ReportError, match="<html>"):
        parse_junit(b"<html><body/></html>")
