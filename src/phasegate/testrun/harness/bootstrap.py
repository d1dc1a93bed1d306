"""Start pytest inside the sandbox the way phasegate chooses, not the way the submission would.

Run as `python -I bootstrap.py FD EXPORT PLUGIN [PRELOAD...] -- PYTEST_ARGS...`
by phasegate's own interpreter choice. `-I` means no PYTHON* variables, no user
site and no script directory on sys.path, so a submitted `sitecustomize.py`,
`usercustomize.py` or `*.pth` is never read. The real pytest, its plugins and
the modules it imports lazily are imported before the export goes on sys.path,
so a submitted `pytest.py` or `iniconfig.py` shadows nothing. Autoloading of
entry-point plugins is off (phasegate sets PYTEST_DISABLE_PLUGIN_AUTOLOAD), so
a submitted `*.dist-info` registers nothing; the project names the plugins it
needs (PRELOAD, imported here, registered with `-p`). The evidence plugin then
streams every result to FD, a pipe phasegate reads outside the sandbox.

This file runs under the project's interpreter: standard library only, and
syntax every supported Python accepts.
"""

import contextlib
import importlib
import importlib.util
import os
import sys

# Imported up front because pytest would import them later, when the export is
# already on sys.path and a submitted module of the same name would win.
_EAGER = ("pytest", "_pytest.config", "_pytest.junitxml", "iniconfig", "pluggy", "packaging")


def main() -> None:
    fd, export, plugin_file = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    split = sys.argv.index("--")
    preload, pytest_args = sys.argv[4:split], sys.argv[split + 1 :]
    os.set_inheritable(fd, False)  # the tests' own subprocesses don't get the channel
    for name in _EAGER:
        with contextlib.suppress(ImportError):  # optional for some pytest versions
            importlib.import_module(name)
    import pytest

    for name in preload:  # the project's plugins (registered by `-p NAME` in the arguments)
        importlib.import_module(name)
    spec = importlib.util.spec_from_file_location("phasegate_evidence", plugin_file)
    assert spec is not None and spec.loader is not None
    evidence = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(evidence)
    evidence.open_stream(fd)
    # Where `python -m pytest` would put the current directory, plus src/ for src layouts.
    src = os.path.join(export, "src")
    sys.path[:0] = [export] + ([src] if os.path.isdir(src) else [])
    sys.exit(pytest.main(pytest_args, plugins=[evidence]))


if __name__ == "__main__":
    main()
