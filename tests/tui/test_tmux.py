"""Smoke test of the real `flctl console` binary in a terminal: tmux runs it, capture-pane reads the screen."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from ..federation import FLCTL, Federation
from ..sshd import make_key, start_hosts
from ..test_deploy_ssh import HOST_PYTHON


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


def test_the_deployment_screen_in_tmux_asks_and_stops_a_real_sshd_host(live_fed: Federation, tmp_path: Path) -> None:
    """`flctl console`, D, an inventory of one site on a real sshd: t asks it over SSH (nothing installed there
    yet), x asks first and y stops it (no node was running); the rows say so."""
    # Prepare
    key = make_key(tmp_path / "id_ed25519")
    (tmp_path / "authorized_keys").write_text(key.with_suffix(".pub").read_text())
    [host] = start_hosts(tmp_path, 1, tmp_path / "authorized_keys")
    (tmp_path / "known_hosts").write_text(host.known_hosts_line())
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(f"api_version: 1\nkits: {live_fed.prod}\nknown_hosts: {tmp_path / 'known_hosts'}\nhosts:\n"
                         f"  - {{participant: site-1, address: 127.0.0.1, port: {host.port}, user: root, "
                         f"key_file: {key}, python: {HOST_PYTHON}, install_dir: {host.install_dir}}}\n")
    socket = session = f"flctl-deploy-{os.getpid()}"
    try:
        started = tmux(socket, "new-session", "-d", "-s", session, "-x", "100", "-y", "30",
                       "-e", "TERM=xterm-256color", f"{FLCTL} console --kit {live_fed.admin_kit}")
        assert started.returncode == 0, started.stderr
        screen_until(socket, session, ["site-1", "connected to"])
        # Execute
        tmux(socket, "send-keys", "-t", session, "D")
        screen_until(socket, session, ["playbook or inventory"])
        tmux(socket, "send-keys", "-t", session, "-l", str(inventory))
        tmux(socket, "send-keys", "-t", session, "Enter")
        screen_until(socket, session, ["Hosts of inventory inventory.yml"])
        tmux(socket, "send-keys", "-t", session, "t")
        status = screen_until(socket, session, ["not installed", "nothing is deployed on 127.0.0.1"], timeout=60)
        tmux(socket, "send-keys", "-t", session, "x")
        asked = screen_until(socket, session, ["Stop the node on every host?"])
        tmux(socket, "send-keys", "-t", session, "y")
        stopped = screen_until(socket, session, ["stop: 1 not running"], timeout=60)
    finally:
        tmux(socket, "kill-session", "-t", session)
        host.stop()
    # Assert
    row = next(line for line in status.splitlines() if "site-1" in line and "127.0.0.1" in line)
    assert "not installed" in row, status
    assert "Yes" in asked and "No" in asked
    assert any("site-1" in line and "not running" in line for line in stopped.splitlines()), stopped
