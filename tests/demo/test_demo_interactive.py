"""`phasegate demo` without --yes stops at each gate for a human and serves until Ctrl-C."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

PHASEGATE = str(Path(sys.executable).with_name("phasegate"))
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


class Terminal:
    """The demo's output as it comes, line by line, read by a thread so the pipe never fills."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: list[str] = []
        self._new: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._new.put(line.rstrip("\n"))

    def wait_for(self, pattern: str, timeout: float = 180) -> re.Match[str]:
        """The first line from now on that matches `pattern`; fails with the output so far."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._new.get(timeout=0.5)
            except queue.Empty:
                if self.process.poll() is not None and self._new.empty():
                    break
                continue
            self.lines.append(line)
            if found := re.search(pattern, line):
                return found
        raise AssertionError(f"no line matching {pattern!r}; the demo said:\n" + self.text)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[tuple[Terminal, Path, dict[str, str]]]:
    """`phasegate demo --dir …` as a real process with its own config directory."""
    target = tmp_path / "demo"
    env = {**os.environ, "PHASEGATE_CONFIG_DIR": str(tmp_path / "config")}
    process = subprocess.Popen(
        [PHASEGATE, "demo", "--dir", str(target)],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield Terminal(process), target, env
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Chromium at /usr/bin/chromium")
def test_the_demo_waits_for_a_browser_review_then_the_cli_then_serves_until_ctrl_c(
    demo: tuple[Terminal, Path, dict[str, str]],
) -> None:
    """The printed one-time link opens the session page logged in, Approve there passes the
    test gate, `phasegate approve` the final one, and the server stays up until SIGINT (exit 0)."""
    playwright_api = pytest.importorskip("playwright.sync_api")
    terminal, target, env = demo
    link = terminal.wait_for(r"(http://127\.0\.0\.1:\d+)/login/link\S*#code=\S+")
    server, url = link.group(1), link.group(0)
    sid = terminal.wait_for(r"phasegate approve ([0-9a-f]{8}) -m").group(1)
    assert "awaiting_test_review" in terminal.text and "pgh_" not in terminal.text

    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        tab = browser.new_page(viewport={"width": 1400, "height": 1000})
        tab.goto(url)
        tab.wait_for_url(re.compile(rf"/sessions/{sid}[0-9a-f]+$"))
        assert "code=" not in tab.url
        approve = tab.get_by_role("button", name="Approve", exact=True)
        approve.wait_for()
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        tab.screenshot(path=str(SCREENSHOTS / "demo-gate.png"), full_page=True)
        approve.click()
        terminal.wait_for(r"human: approve by demo-reviewer")
        terminal.wait_for(r"the coder is implementing")
        terminal.wait_for(r"waiting for your review at awaiting_final_review")

        decided = subprocess.run(
            [PHASEGATE, "approve", sid, "-m", "ship it"],
            cwd=target,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert decided.returncode == 0, decided.stderr
        terminal.wait_for(r"audit chain of 11 events verifies")
        terminal.wait_for(r"^done: completed\. The dashboard stays up")
        tab.reload()
        assert tab.get_by_text("completed").count() >= 1
        browser.close()

    time.sleep(1)  # still serving after it finished, until Ctrl-C
    assert terminal.process.poll() is None
    assert httpx.get(f"{server}/healthz", timeout=5).status_code == 200
    terminal.process.send_signal(signal.SIGINT)
    assert terminal.process.wait(30) == 0
    terminal.wait_for(r"stopped the dashboard")
    assert "Traceback" not in terminal.text
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{server}/healthz", timeout=2)


def test_ctrl_c_at_a_gate_stops_cleanly_and_the_next_run_starts_afresh(
    demo: tuple[Terminal, Path, dict[str, str]],
) -> None:
    """SIGINT while the demo waits at the test gate exits 130 with one line; a later run
    cancels the session left waiting and completes a new one."""
    terminal, target, env = demo
    left = terminal.wait_for(r"phasegate approve ([0-9a-f]{8}) -m").group(1)
    terminal.process.send_signal(signal.SIGINT)
    assert terminal.process.wait(30) == 130
    terminal.wait_for(r"stopped \(Ctrl-C\); the session waits where it was")
    assert "Traceback" not in terminal.text

    again = subprocess.run(
        [PHASEGATE, "demo", "--yes", "--dir", str(target)],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"cancelled {left}, left at awaiting_test_review" in again.stdout
    listing = subprocess.run(
        [PHASEGATE, "ls", "--all"], cwd=target, env=env, capture_output=True, text=True
    )
    assert left in listing.stdout and "cancelled" in listing.stdout
    assert "completed" in listing.stdout
