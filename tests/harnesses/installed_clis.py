"""The real agent CLIs (Claude Code, Codex, Gemini CLI), installed once from npm, pinned.

They go into a cache outside the tests' temporary directories, one installer at a time
across test workers; PHASEGATE_HARNESS_CLIS names an npm prefix that has them already.
Test modules import the `clis` fixture from here and find an executable with `cli()`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

VERSIONS = {
    "@anthropic-ai/claude-code": "2.1.197",
    "@openai/codex": "0.171.0",
    "@google/gemini-cli": "0.61.0",
}
NPM_FLAGS = ("--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error")
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "phasegate-tests"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One installer at a time across test workers."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@pytest.fixture(scope="session")
def clis() -> Path:
    """An npm prefix with the three CLIs."""
    given = os.environ.get("PHASEGATE_HARNESS_CLIS")
    if given:
        return Path(given)
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed: these tests install the harnesses' CLIs with it")
    tag = "-".join(f"{name.rsplit('/', 1)[-1]}-{v}" for name, v in VERSIONS.items())
    prefix = CACHE / tag
    with _locked(CACHE / f"{tag}.lock"):
        if not (prefix / "installed").exists():
            packages = [f"{name}@{version}" for name, version in VERSIONS.items()]
            done = subprocess.run(
                [npm, "install", "--prefix", str(prefix), *NPM_FLAGS, *packages],
                capture_output=True,
                text=True,
                timeout=900,
            )
            assert done.returncode == 0, done.stderr[-2000:]
            (prefix / "installed").write_text("\n".join(packages) + "\n")
    return prefix


def cli(clis: Path, name: str) -> str:
    """The CLI's executable: Claude Code's is a native binary in a per-platform package."""
    found = (
        [*clis.glob("node_modules/@anthropic-ai/claude-code-*/claude")] if name == "claude" else []
    )
    for candidate in [*found, clis / "node_modules" / ".bin" / name]:
        if (
            subprocess.run([candidate, "--version"], capture_output=True, timeout=60).returncode
            == 0
        ):
            return str(candidate)
    raise AssertionError(f"{name} from {clis} does not run")
