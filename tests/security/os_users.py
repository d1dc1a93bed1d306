"""Real OS users for the guarded-mode tests: a server, an agent, and a Python both can run.

The suite runs as root (CI does), so it can create users and start processes
as them. The test interpreter usually lives where other users can't go (a
pyenv under /root), so they get a venv of the system's Python of the same
version, which sees phasegate and its dependencies through a `.pth` file.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.security.conftest import make_interpreter

CLI = "from phasegate.entrypoints.cli import main; main()"


def ensure_user(name: str) -> pwd.struct_passwd:
    """The system user `name`, created (no home, no login shell) if it doesn't exist yet."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(name)


def ensure_group(name: str, members: list[str]) -> int:
    """The group `name` (created if missing) with `members` in it; its gid."""
    try:
        gid = grp.getgrnam(name).gr_gid
    except KeyError:
        subprocess.run(["groupadd", "--system", name], check=True, capture_output=True)
        gid = grp.getgrnam(name).gr_gid
    for member in members:
        subprocess.run(["usermod", "-a", "-G", name, member], check=True, capture_output=True)
    return gid


def shared_python(dest: Path) -> Path:
    """A Python every user can run, importing the same phasegate and packages as this one."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    system = Path(f"/usr/bin/python{version}")
    assert system.exists(), (
        f"guarded-mode tests run phasegate as other users and need {system} (the same "
        f"Python {version} as the suite, runnable by them): apt-get install python{version}"
    )
    # pytest itself is copied in: a test run's sandbox shows the interpreter's own folders,
    # not the suite's venv (which may sit in /tmp, which the sandbox empties).
    site = make_interpreter(dest, str(system))
    ours = [sysconfig.get_paths()["purelib"], *_editable_sources()]
    (site / "phasegate-suite.pth").write_text("\n".join(ours) + "\n")
    return dest / "bin" / "python"


def _editable_sources() -> list[str]:
    import phasegate

    return [str(Path(phasegate.__file__).resolve().parents[1])]


@dataclass(frozen=True)
class OsUser:
    """Someone to run processes as, with the environment they'd have."""

    account: pwd.struct_passwd
    python: Path
    home: Path
    groups: tuple[int, ...] = ()  # supplementary groups its processes run with

    @property
    def name(self) -> str:
        return self.account.pw_name

    def env(self, **extra: str) -> dict[str, str]:
        path = f"{self.python.parent}:/usr/local/bin:/usr/bin:/bin"
        return {"PATH": path, "HOME": str(self.home), "LANG": "C.UTF-8", **extra}

    def run(
        self,
        *argv: str,
        cwd: Path | None = None,
        input: str | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(argv),
            cwd=cwd or self.home,
            env=env or self.env(),
            input=input,
            capture_output=True,
            text=True,
            user=self.account.pw_uid,
            group=self.account.pw_gid,
            extra_groups=list(self.groups),
            timeout=300,
            check=False,
        )

    def phasegate(
        self, *args: str, cwd: Path | None = None, input: str | None = None, **env: str
    ) -> subprocess.CompletedProcess[str]:
        return self.run(
            str(self.python), "-c", CLI, *args, cwd=cwd, input=input, env=self.env(**env)
        )

    def python_json(self, script: str, *args: str, **env: str) -> Any:
        """Run a Python script as this user; it prints one JSON object last."""
        done = self.run(str(self.python), "-c", script, *args, env=self.env(**env))
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    def popen(self, *args: str, cwd: Path, **env: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [str(self.python), "-c", CLI, *args],
            cwd=cwd,
            env=self.env(**env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            user=self.account.pw_uid,
            group=self.account.pw_gid,
            extra_groups=list(self.groups),
        )


def chown_tree(root: Path, account: pwd.struct_passwd) -> None:
    for path in [root, *root.rglob("*")]:
        os.lchown(path, account.pw_uid, account.pw_gid)


def copy_tree(source: Path, dest: Path) -> None:
    shutil.copytree(source, dest, symlinks=True)
