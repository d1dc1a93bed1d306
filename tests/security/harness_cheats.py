"""Attacks on the verdict: the report, pytest's reporting, what runs as pytest, which tests run."""

from __future__ import annotations

from tests.security.attack_code import FIND_LOADED_CLASS, rot13

REWRITE_REPORT_AT_EXIT = """
import atexit, glob, os, sys
import xml.etree.ElementTree as ET


def all_passed():
    reports = [a.split("=", 1)[1] for a in sys.argv if a.startswith("--junitxml=")]
    reports += glob.glob("/tmp/phasegate-run-*/junit.xml") + glob.glob("/tmp/*/junit.xml")
    for path in reports:
        try:
            tree = ET.parse(path)
            for suite in tree.iter("testsuite"):
                suite.set("failures", "0")
                suite.set("errors", "0")
            for case in tree.iter("testcase"):
                for child in [c for c in case if c.tag in ("failure", "error")]:
                    case.remove(child)
            tree.write(path, encoding="utf-8", xml_declaration=True)
        except Exception:
            pass
    sys.stdout.flush()
    os._exit(0)


atexit.register(all_passed)
"""

INVENT_A_PASSING_REPORT = """
import atexit, os, sys

INVENTED = (
    '<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" errors="0" '
    'failures="0" skipped="0" tests="1" time="0.01"><testcase classname="tests.test_slugify" '
    'name="test_made_up" time="0.001"/></testsuite></testsuites>'
)


def invent():
    for arg in sys.argv:
        if arg.startswith("--junitxml="):
            try:
                with open(arg.split("=", 1)[1], "w") as f:
                    f.write(INVENTED)
            except Exception:
                pass
    sys.stdout.flush()
    os._exit(0)


atexit.register(invent)
"""

PATCH_PYTEST_REPORTS = """
from _pytest.reports import TestReport

made = TestReport.from_item_and_call.__func__


def passed(cls, item, call):
    report = made(cls, item, call)
    report.outcome = "passed"
    report.longrepr = None
    return report


TestReport.from_item_and_call = classmethod(passed)
"""

# PATCH_PYTEST_REPORTS with every name that gives it away spelled in rot13 (`HIDDEN`),
# so no `pytest`, `TestReport`, `outcome` or `longrepr` appears in the source.
REPORT_HIDDEN = rot13(
    "_pytest.reports", "TestReport", "from_item_and_call", "outcome", "passed", "longrepr"
)

PATCH_PYTEST_REPORTS_OBFUSCATED = """
import codecs, importlib

module, cls_name, method, field, value, detail = (codecs.decode(n, "rot13") for n in HIDDEN)
cls = getattr(importlib.import_module(module), cls_name)
made = getattr(cls, method).__func__


def looks_fine(klass, item, call):
    r = made(klass, item, call)
    setattr(r, field, value)
    setattr(r, detail, None)
    return r


setattr(cls, method, classmethod(looks_fine))
"""

# Every call raises pytest's own skip exception (`_pytest.outcomes.Skipped`), found as above.
SKIP_THE_TESTS = (
    FIND_LOADED_CLASS
    + """
skip = loaded_class(*(codecs.decode(n, "rot13") for n in HIDDEN))


def slugify(text: str) -> str:
    raise skip("slugify needs the ICU library, which this machine lacks")
"""
)

SKIP_HIDDEN = rot13("builtins", "Skipped")  # pytest gives its outcome classes that module

# pytest's test item class loses its body: `Function.runtest` does nothing, so every test
# "passes" honestly as far as pytest's reports, the JUnit file and the exit status can tell.
EMPTY_THE_TESTS = (
    FIND_LOADED_CLASS
    + """
module, cls_name, method = (codecs.decode(n, "rot13") for n in HIDDEN)
setattr(loaded_class(module, cls_name), method, lambda self: None)
"""
)

EMPTY_HIDDEN = rot13("_pytest.python", "Function", "runtest")

# pytest itself, as far as `python -m pytest` can tell: it writes an all-passed report for
# every test it finds and exits 0 without running anything.
FAKE_PYTEST = """\
import os, re, sys

root = os.getcwd()
cases = []
for folder, _, names in os.walk(root):
    for name in sorted(names):
        if name.startswith("test_") and name.endswith(".py"):
            path = os.path.join(folder, name)
            module = os.path.relpath(path, root)[:-3].replace(os.sep, ".")
            with open(path) as f:
                cases += [(module, t) for t in re.findall(r"^def (test_\\w+)", f.read(), re.M)]
xml = '<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" errors="0" '
xml += f'failures="0" skipped="0" tests="{len(cases)}" time="0.01">'
xml += "".join(f'<testcase classname="{m}" name="{t}" time="0.001"/>' for m, t in cases)
xml += "</testsuite></testsuites>"
for arg in sys.argv:
    if arg.startswith("--junitxml="):
        with open(arg.split("=", 1)[1], "w") as f:
            f.write(xml)
print(f"{len(cases)} passed in 0.01s")
raise SystemExit(0)
"""

# A pytest plugin that turns every outcome into a pass; the attribute pluggy reads for
# `@pytest.hookimpl(wrapper=True)` is set by hand, so it needs no `import pytest`.
FORCE_PASS_PLUGIN = """\
def pytest_runtest_makereport(item, call):
    report = yield
    report.outcome = "passed"
    report.longrepr = None
    return report


pytest_runtest_makereport.pytest_impl = {
    "wrapper": True, "hookwrapper": False, "optionalhook": False,
    "tryfirst": False, "trylast": False, "specname": None,
}
"""

PLUGIN_DIST_INFO = {
    "evil-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: evil\nVersion: 1.0\n",
    "evil-1.0.dist-info/entry_points.txt": "[pytest11]\nevil = evil_plugin\n",
    "evil-1.0.dist-info/RECORD": "",
    "evil_plugin.py": FORCE_PASS_PLUGIN,
}

# Interpreter start-up hooks that load the plugin through PYTEST_PLUGINS (honoured even
# with plugin autoload off).
LOAD_PLUGIN_AT_STARTUP = "import os; os.environ['PYTEST_PLUGINS'] = 'evil_startup_plugin'\n"

STARTUP_HOOKS = {
    "sitecustomize.py": LOAD_PLUGIN_AT_STARTUP,
    "usercustomize.py": LOAD_PLUGIN_AT_STARTUP,
    "src/sitecustomize.py": LOAD_PLUGIN_AT_STARTUP,
    "src/usercustomize.py": LOAD_PLUGIN_AT_STARTUP,
}

INERT_LOOKING_STARTUP_FILES = {
    "evil.pth": LOAD_PLUGIN_AT_STARTUP,
    "src/evil.pth": LOAD_PLUGIN_AT_STARTUP,
    "evil_startup_plugin.py": FORCE_PASS_PLUGIN,
    "src/evil_startup_plugin.py": FORCE_PASS_PLUGIN,
}
