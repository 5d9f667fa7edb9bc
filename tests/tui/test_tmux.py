"""Smoke test of the real `flctl console` binary in a terminal: tmux runs it, capture-pane reads the screen."""

from __future__ import annotations

import os
import subprocess
import time

from ..federation import FLCTL, Federation


def tmux(socket: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["tmux", "-L", socket, *args], capture_output=True, text=True, timeout=10, check=False)


def screen_until(socket: str, session: str, words: list[str], timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = tmux(socket, "capture-pane", "-p", "-t", session).stdout
        if all(word in text for word in words):
            return text
        time.sleep(0.3)
    raise AssertionError(f"the screen never showed {words}:\n{text}")


def test_flctl_console_in_tmux_shows_the_sites(live_fed: Federation) -> None:
    """`flctl console --kit ADMIN` in a 100x30 tmux pane shows both sites online; q quits."""
    # Prepare
    socket = session = f"flctl-console-{os.getpid()}"
    command = f"{FLCTL} console --kit {live_fed.admin_kit}"
    try:
        # Execute
        started = tmux(socket, "new-session", "-d", "-s", session, "-x", "100", "-y", "30",
                       "-e", "TERM=xterm-256color", command)
        assert started.returncode == 0, started.stderr
        screen = screen_until(socket, session, ["site-1", "site-2", "connected to"])
        tmux(socket, "send-keys", "-t", session, "q")
        deadline = time.monotonic() + 15
        while tmux(socket, "has-session", "-t", session).returncode == 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        quit_ok = tmux(socket, "has-session", "-t", session).returncode != 0
    finally:
        tmux(socket, "kill-session", "-t", session)
    # Assert
    rows = [line for line in screen.splitlines() if "site-1" in line or "site-2" in line]
    assert len(rows) >= 2 and all("online" in row for row in rows[:2]), screen
    assert quit_ok, "flctl console did not quit on q"
