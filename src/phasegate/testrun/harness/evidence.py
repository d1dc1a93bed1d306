"""phasegate's pytest plugin: stream every result, as it happens, to a pipe phasegate holds.

One JSON object per line: `start`, `collected` (the node ids), `report` (one
per test phase), `collect_error`, `tamper` (the harness changed under the
tests), `plugins` (plugin modules loaded from the export) and `finish`
(pytest's exit status). A line written can't be taken back: a failure is on
record the moment it happens, before any exit hook or patched report writer
could hide it. phasegate compares the stream with the JUnit report and the exit
status (`testrun.stream`).

The code under test runs in this same interpreter, so it could also write to
the pipe, close it, or patch this module: all of that makes the evidence
disagree or go missing, which fails the run. What it could do undetected here
is patch pytest before a test reports; the identity checks below catch the
usual places, and the static scan of the submission (`testrun.tamper`) flags
the code that does it. Runs inside the sandbox: standard library and pytest only.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import _pytest.junitxml
import _pytest.python
import _pytest.reports
import _pytest.runner
import _pytest.unittest
import pluggy
import pytest

_fd: int | None = None
_export_root: str | None = None


def _watched() -> dict[str, object]:
    """The objects a cheat would replace to turn a failure into a pass, by name."""
    hook_caller = getattr(pluggy, "HookCaller", None) or pluggy._hooks._HookCaller  # pluggy < 1.1
    reports = _pytest.reports
    return {
        "_pytest.runner.call_and_report": _pytest.runner.call_and_report,
        "_pytest.runner.runtestprotocol": _pytest.runner.runtestprotocol,
        "_pytest.runner.pytest_runtest_makereport": _pytest.runner.pytest_runtest_makereport,
        "_pytest.python.Function.runtest": _pytest.python.Function.runtest,
        "_pytest.python.pytest_pyfunc_call": _pytest.python.pytest_pyfunc_call,
        "_pytest.reports.TestReport.from_item_and_call": reports.TestReport.__dict__[
            "from_item_and_call"
        ],
        "_pytest.reports.TestReport.__init__": reports.TestReport.__init__,
        "_pytest.reports.BaseReport.passed": reports.BaseReport.__dict__["passed"],
        "_pytest.reports.BaseReport.failed": reports.BaseReport.__dict__["failed"],
        "_pytest.reports.BaseReport.skipped": reports.BaseReport.__dict__["skipped"],
        "_pytest.junitxml.LogXML.pytest_runtest_logreport": (
            _pytest.junitxml.LogXML.pytest_runtest_logreport
        ),
        "_pytest.junitxml.LogXML.pytest_sessionfinish": (
            _pytest.junitxml.LogXML.pytest_sessionfinish
        ),
        "pluggy.HookCaller.__call__": hook_caller.__call__,
        "sys.modules['pytest']": sys.modules["pytest"],
        "sys.modules['_pytest.reports']": sys.modules["_pytest.reports"],
        "sys.modules['_pytest.runner']": sys.modules["_pytest.runner"],
        "os._exit": os._exit,
        "sys.exit": sys.exit,
    }


_ORIGINAL = _watched()
_reported: set[str] = set()
_FUNCTION, _UNITTEST = _pytest.python.Function, _pytest.unittest.TestCaseFunction
_plain: set[str] = set()  # plain test functions: each passing one must have had its body called
_called: set[str] = set()


def open_stream(fd: int) -> None:
    """Send the stream to `fd` (called by the bootstrap before pytest starts)."""
    global _fd
    _fd = fd


def _emit(record: dict[str, Any]) -> None:
    if _fd is None:
        return
    data = (json.dumps(record, separators=(",", ":")) + "\n").encode()
    try:
        while data:
            data = data[os.write(_fd, data) :]
    except OSError:
        pass  # the pipe is gone; the missing `finish` line will say so


def _check_harness() -> None:
    now = _watched()
    for name, original in _ORIGINAL.items():
        if now[name] is not original and name not in _reported:
            _reported.add(name)
            _emit({"e": "tamper", "what": name + " was replaced while the tests ran"})


def pytest_sessionstart(session: pytest.Session) -> None:
    global _export_root
    _export_root = str(session.config.rootpath)
    _emit({"e": "start", "pid": os.getpid()})


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.failed:
        _emit({"e": "collect_error", "id": report.nodeid})


def pytest_collection_finish(session: pytest.Session) -> None:
    _check_harness()
    _plain.update(
        item.nodeid
        for item in session.items
        if isinstance(item, _FUNCTION) and not isinstance(item, _UNITTEST)
    )
    _emit({"e": "collected", "ids": [item.nodeid for item in session.items]})


@pytest.hookimpl(hookwrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function):  # type: ignore[no-untyped-def]
    _called.add(pyfuncitem.nodeid)  # before the body: a test whose body never ran isn't here
    yield


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _emit({"e": "report", "id": report.nodeid, "when": report.when, "outcome": report.outcome})
    if report.when == "call" and report.passed and report.nodeid in _plain - _called:
        _emit({"e": "tamper", "what": f"{report.nodeid} passed but its body never ran"})
    _check_harness()


def _plugins_from_export(config: pytest.Config) -> list[str]:
    """Plugin modules loaded from the export; phasegate decides which of them were approved."""
    found = []
    for plugin in config.pluginmanager.get_plugins():
        path = os.path.abspath(getattr(plugin, "__file__", None) or "/")
        if _export_root and path.startswith(_export_root + os.sep):
            found.append(os.path.relpath(path, _export_root))
    return sorted(found)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    _check_harness()
    _emit({"e": "plugins", "paths": _plugins_from_export(session.config)})
    _emit({"e": "finish", "exitstatus": int(session.exitstatus)})
