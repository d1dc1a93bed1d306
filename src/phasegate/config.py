"""Finding the project and reading `phasegate.toml` (or `[tool.phasegate]`)."""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from phasegate.domain.builtin_workflows import InvalidWorkflow, configured_workflows
from phasegate.domain.workflow import Workflow
from phasegate.errors import ConfigError

CONFIG_FILE = "phasegate.toml"
STATE_DIR = ".phasegate"


class TestSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    globs: list[str] | None = None  # None: the defaults for Python, JS/TS, Go and Elixir
    runner_config: list[str] | None = None
    # Plugin autoloading is off in every run: the modules to load with `-p` instead.
    pytest_plugins: list[str] = Field(default_factory=list)
    # Paths whose code may reach into the test harness (a project's own pytest plugin).
    harness_allow: list[str] = Field(default_factory=list)


class SandboxSettings(BaseModel):
    """`[sandbox]`: how test runs are confined (see docs/security.md)."""

    model_config = ConfigDict(extra="forbid")
    mode: Literal["bwrap", "none"] = "bwrap"
    network: bool = False
    memory_mb: int = Field(2048, ge=64, le=1 << 20)
    max_processes: int = Field(256, ge=4, le=1 << 16)
    max_file_mb: int = Field(1024, ge=1, le=1 << 20)
    cpu_s: int = Field(1800, ge=1, le=7 * 86400)
    read_only: list[str] = Field(default_factory=list)  # also shown, read-only
    hide: list[str] = Field(default_factory=list)  # also hidden

    @field_validator("read_only", "hide")
    @classmethod
    def _existing_directories(cls, paths: list[str]) -> list[str]:
        for path in paths:
            if not os.path.isabs(path) or not os.path.isdir(path):
                raise ValueError(f"{path!r} is not an existing directory (an absolute path)")
        return paths


class LimitSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_file_bytes: int = Field(1024 * 1024, gt=0)
    max_total_bytes: int = Field(10 * 1024 * 1024, gt=0)
    max_files: int = Field(500, gt=0)


class AgentSettings(BaseModel):
    """How a worker's adapter runs an agent CLI for one role (`command`: the `command`
    adapter's CLI; the claude, codex and gemini adapters know their own)."""

    model_config = ConfigDict(extra="forbid")
    command: str | None = None
    prompt: str = "stdin"  # stdin | file
    timeout_s: float = Field(1800, gt=0)


class ServerSettings(BaseModel):
    """Where a guarded phasegate server runs: agents and the CLI talk to it, never to its state."""

    model_config = ConfigDict(extra="forbid")
    url: str | None = None  # e.g. "http://127.0.0.1:8765"; PHASEGATE_SERVER_URL overrides it

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL, e.g. http://127.0.0.1:8765")
        return value.rstrip("/") if value else value


NotifyEvent = Literal["gate", "escalation", "completion"]
NOTIFY_EVENTS: list[NotifyEvent] = ["gate", "escalation", "completion"]


class NotifySettings(BaseModel):
    """`[notify]`: webhooks told when a session reaches a gate, escalates or completes."""

    model_config = ConfigDict(extra="forbid")
    webhooks: list[str] = Field(default_factory=list)  # POSTed the JSON payload
    slack: list[str] = Field(default_factory=list)  # POSTed {"text": "…"} (Slack-compatible)
    events: list[NotifyEvent] = Field(default_factory=lambda: list(NOTIFY_EVENTS))
    dashboard_url: str | None = None  # links in messages; [server] url when unset

    @field_validator("webhooks", "slack")
    @classmethod
    def _http_urls(cls, urls: list[str]) -> list[str]:
        return [_webhook_url(url) for url in urls]

    @field_validator("dashboard_url")
    @classmethod
    def _dashboard(cls, value: str | None) -> str | None:
        return _webhook_url(value).rstrip("/") if value is not None else None

    @property
    def configured(self) -> bool:
        return bool(self.webhooks or self.slack)


def _webhook_url(url: str) -> str:
    """An absolute http(s) URL with a host, or a ValueError saying what is wrong with it."""
    try:
        parts = urlsplit(url)
        usable = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
    except ValueError:  # a port that is no number, a broken IPv6 literal
        usable = False
    if not usable or len(url) > 2000:  # 2000: the outbox's unique index holds the URL
        raise ValueError(f"{url[:80]!r} is not an http:// or https:// URL with a host")
    if any(c.isspace() for c in url):
        raise ValueError(f"{url[:80]!r} contains whitespace; percent-encode it")
    return url


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    test_command: str = "python -m pytest -q"
    junit_path: str | None = None
    test_timeout_s: float = Field(600, gt=0)
    max_fix_attempts: int = Field(5, ge=1)
    # Agent failures in a row (crash, non-zero exit, timeout) before a worker pauses the session.
    agent_failures_to_human: int = Field(3, ge=1, le=1000)
    # A session waiting on an agent longer than this is shown as stale (ls, dashboard, /metrics).
    stale_after_s: float = Field(1800, gt=0)
    # Whether serve, mcp and worker run pending test runs themselves (no runner worker needed).
    auto_run: bool = True
    workflow: str = "tdd"
    database_url: str | None = None
    env_allow: list[str] = Field(default_factory=list)
    tests: TestSettings = Field(default_factory=lambda: TestSettings())
    sandbox: SandboxSettings = Field(default_factory=lambda: SandboxSettings())
    limits: LimitSettings = Field(default_factory=lambda: LimitSettings())
    agents: dict[str, AgentSettings] = Field(default_factory=dict)
    workflows: dict[str, dict[str, Any]] = Field(default_factory=dict)
    server: ServerSettings = Field(default_factory=lambda: ServerSettings())
    notify: NotifySettings = Field(default_factory=lambda: NotifySettings())

    @field_validator("sandbox", mode="before")
    @classmethod
    def _sandbox_shorthand(cls, value: Any) -> Any:
        # `sandbox = "none"` (PRODUCT.md's spelling) is short for `[sandbox] mode = "none"`.
        return {"mode": value} if isinstance(value, str) else value


#: What a session keeps of the configuration it started with: later edits don't touch it.
SESSION_SETTINGS = (
    "test_command",
    "junit_path",
    "test_timeout_s",
    "env_allow",
    "tests",
    "sandbox",
    "limits",
)


def session_config(settings: Settings, max_fix_attempts: int) -> dict[str, Any]:
    """The values a new session runs under, and a short hash naming them.

    `max_fix_attempts` is the session's workflow's (a custom workflow sets its own).
    """
    values = settings.model_dump(mode="json", include=set(SESSION_SETTINGS))
    values["max_fix_attempts"] = max_fix_attempts
    canonical = json.dumps(values, sort_keys=True, separators=(",", ":"))
    return {"hash": hashlib.sha256(canonical.encode()).hexdigest()[:12], "values": values}


def settings_under(settings: Settings, config: Mapping[str, Any] | None) -> Settings:
    """The project's settings with a session's kept values in place of the current ones."""
    if not config:
        return settings  # a session from before configurations were kept
    values = {k: v for k, v in config["values"].items() if k in SESSION_SETTINGS}
    try:
        return Settings.model_validate({**settings.model_dump(), **values})
    except ValidationError as exc:
        raise ConfigError(
            f"the configuration this session started with ({config['hash']}) no longer "
            f"loads: {exc.errors()[0]['msg']}; restore it, or retry the session after a "
            "setup error to take the current one"
        ) from exc


class Project:
    """A git repository with phasegate settings.

    Its state (database, run reports, secrets) lives in `<root>/.phasegate/`,
    or, for a guarded server, in a `state_dir` of its own outside the
    repository. Worktrees always live in `<root>/.phasegate/worktrees/`: agents
    work in them.
    """

    def __init__(
        self, root: Path | str, settings: Settings, *, state_dir: Path | None = None
    ) -> None:
        self.root = Path(root).resolve()
        self.settings = settings
        self._state_dir = state_dir.resolve() if state_dir else None
        self.workflows = _workflows(settings)
        if settings.workflow not in self.workflows:
            raise ConfigError(
                f"{self.root / CONFIG_FILE}: unknown workflow {settings.workflow!r}; "
                f"known: {', '.join(sorted(self.workflows))}"
            )

    @property
    def state_dir(self) -> Path:
        return self._state_dir or self.root / STATE_DIR

    @property
    def guarded_state(self) -> bool:
        """Whether the state lives outside the repository (a guarded server's)."""
        return self._state_dir is not None

    @property
    def server_url(self) -> str | None:
        """The guarded server agents and the CLI talk to, if there is one."""
        env = os.environ.get("PHASEGATE_SERVER_URL")
        return env.rstrip("/") if env else self.settings.server.url

    @property
    def database_url(self) -> str:
        env = os.environ.get("PHASEGATE_DATABASE_URL")
        if env:
            return env
        if self.settings.database_url:
            return self.settings.database_url
        return f"sqlite:///{self.state_dir / 'phasegate.db'}"

    def worktree_path(self, session_id: str) -> Path:
        return self.root / STATE_DIR / "worktrees" / session_id

    def workflow(self, name: str | None = None) -> Workflow:
        name = name or self.settings.workflow
        try:
            return self.workflows[name]
        except KeyError:
            raise ConfigError(
                f"unknown workflow {name!r}; known: {', '.join(sorted(self.workflows))}"
            ) from None


def _workflows(settings: Settings) -> dict[str, Workflow]:
    try:
        return configured_workflows(settings.workflows, settings.max_fix_attempts)
    except InvalidWorkflow as exc:
        raise ConfigError(f"{exc}; fix the [workflows.{exc.workflow}] table") from exc


def load_settings(root: Path) -> Settings:
    """Read the settings of the project at `root`; defaults if it has none yet."""
    path = root / CONFIG_FILE
    table: dict[str, Any] = {}
    source = path
    try:
        if path.exists():
            table = tomllib.loads(path.read_text(encoding="utf-8"))
        elif (root / "pyproject.toml").exists():
            source = root / "pyproject.toml"
            pyproject = tomllib.loads(source.read_text(encoding="utf-8"))
            table = pyproject.get("tool", {}).get("phasegate", {})
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"can't read {source}: {exc}; fix the file or delete it") from exc
    try:
        return Settings.model_validate(table)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"{source} is invalid: {problems}") from exc


def find_project_root(start: Path | None = None) -> Path:
    """The nearest directory at or above `start` with phasegate settings or state."""
    env = os.environ.get("PHASEGATE_PROJECT")
    here = Path(start or env or Path.cwd()).resolve()  # an explicit --project wins
    for candidate in (here, *here.parents):
        if (candidate / CONFIG_FILE).exists() or (candidate / STATE_DIR).is_dir():
            return candidate
    raise ConfigError(
        f"no phasegate project at or above {here}; run `phasegate init` in your repository "
        "(or pass --project DIR)"
    )


def open_project(start: Path | None = None) -> Project:
    root = find_project_root(start)
    return Project(root, load_settings(root))
