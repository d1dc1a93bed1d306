"""Build the sandboxed command line and environment for one run, and start it.

A pytest command (see `pytest_command`) runs through phasegate's bootstrap
with the evidence pipe; anything else runs with `/bin/sh -c` and is judged by
its exit status and the JUnit report the project configured.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from phasegate.testrun.process import ProcessOutcome, Watch, run_command
from phasegate.testrun.pytest_command import PytestCommand, interpreters_named
from phasegate.testrun.sandbox import SANDBOX_HOME, Sandbox
from phasegate.testrun.stream import StreamEvidence, StreamReader, parse_stream

_HARNESS = Path(__file__).with_name("harness")
_PYTEST_ENV_DROPPED = ("PYTEST_ADDOPTS", "PYTEST_PLUGINS")


@dataclass(frozen=True)
class RunPlan:
    """One run's command, where it runs, and what the sandbox must show or hide."""

    sandbox: Sandbox
    checkout: Path
    scratch: Path  # the run's private directory: harness copy, report, outside the checkout
    env: Mapping[str, str]
    timeout_s: float
    grace_s: float
    on_output: Callable[[int], None] | None = None


def run_shell(plan: RunPlan, command: str) -> ProcessOutcome:
    """Run a non-pytest command with /bin/sh inside the sandbox."""
    found = interpreters_named(command, plan.env.get("PATH", ""))
    shown = [p for i in found for p in i.prefixes]
    env = dict(plan.env)
    # The interpreters' own directories first: a pyenv shim in the hidden HOME can't run.
    bins = dict.fromkeys(str(i.executable.parent) for i in found)
    env["PATH"] = os.pathsep.join([*bins, env.get("PATH", "")])
    src = plan.checkout / "src"
    if src.is_dir():
        # An editable install would import the package from the developer's
        # working tree; putting the export's src/ first tests the commit itself.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(src), env.get("PYTHONPATH")]))
    return _run(plan, ["/bin/sh", "-c", command], env, (), shown)


def run_pytest(
    plan: RunPlan, pytest: PytestCommand, args: Sequence[str], plugins: Sequence[str]
) -> tuple[ProcessOutcome, StreamEvidence]:
    """Run pytest through the bootstrap and return the outcome with the streamed evidence."""
    harness = plan.scratch / "harness"
    shutil.copytree(_HARNESS, harness, ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in {**plan.env, **pytest.env}.items() if k not in _PYTEST_ENV_DROPPED}
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    env["PATH"] = os.pathsep.join([str(pytest.interpreter.executable.parent), env.get("PATH", "")])
    read_fd, write_fd = os.pipe()
    reader = StreamReader(read_fd)
    argv = [
        str(pytest.interpreter.executable),
        "-I",
        str(harness / "bootstrap.py"),
        str(write_fd),
        str(plan.checkout),
        str(harness / "evidence.py"),
        *plugins,
        "--",
        *args,
    ]
    reader.start()
    try:
        outcome = _run(plan, argv, env, (write_fd,), (harness, *pytest.interpreter.prefixes))
    finally:
        os.close(write_fd)  # the reader sees EOF once the sandbox's copies are gone too
        reader.join(5)
    return outcome, parse_stream(reader.text(), overflowed=reader.overflowed or reader.is_alive())


def _run(
    plan: RunPlan,
    argv: list[str],
    env: dict[str, str],
    pass_fds: Sequence[int],
    show: Sequence[Path],
) -> ProcessOutcome:
    sandbox = plan.sandbox
    if sandbox.mode == "bwrap":
        env = {**env, "HOME": SANDBOX_HOME, "TMPDIR": "/tmp"}
    out = plan.scratch / "out"
    command = sandbox.wrap(argv, plan.checkout, extra_ro=show, writable=(out,))
    return run_command(
        command,
        plan.checkout,
        timeout_s=plan.timeout_s,
        grace_s=plan.grace_s,
        env=env,
        on_output=plan.on_output,
        pass_fds=pass_fds,
        watch=Watch(sandbox.limits.processes, sandbox.limits.memory_bytes),
    )
