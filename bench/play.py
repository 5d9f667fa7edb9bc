"""`flctl play` from nothing to a verified federation, and again with nothing changed: a server and N sites (10 by
default), each in its own install folder on 127.0.0.1, reached over a real local sshd as `flctl deploy ssh` reaches
any host (the test's sshd, tests/sshd.py). Prints the wall time of each run and, for the first, when the last
participant reached each state (planned -> provisioned -> delivered -> started -> healthy -> verified).

    .venv/bin/python bench/play.py                 # a server and 10 sites
    .venv/bin/python bench/play.py --sites 4 --repeats 5

Runs as root (sshd lets root in with a test key, like the SSH tests). The wheels come from $FLCTL_WHEEL_CACHE (else
flctl's default cache): the first run builds the ones missing there; the first play of a checkout also installs them
into the hosts' shared venv (their offline install is most of the from-nothing time).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the tests' sshd and project helpers

from tests.federation import free_port, project_text
from tests.sshd import make_key, start_hosts

FLCTL = str(Path(sys.executable).parent / "flctl")
HOST_PYTHON = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
STATES = ("planned", "provisioned", "delivered", "started", "healthy", "verified")


def playbook_text(sites: int, port: int, key: Path, root: Path) -> str:
    lines = [f"api_version: 1\nproject: project.yml\nparallel: {min(sites + 1, 16)}\ninventory:\n"
             f"  known_hosts: {root / 'known_hosts'}\n  health_timeout_s: 120\n  hosts:\n"]
    for name in ["localhost", *(f"site-{i}" for i in range(1, sites + 1))]:
        lines.append(f"    - {{participant: {name}, address: 127.0.0.1, port: {port}, user: root, key_file: {key}, "
                     f"python: {HOST_PYTHON}, install_dir: {root / 'hosts' / name}, venv_root: {root / 'venvs'}, "
                     "min_free_mb: 50}\n")
    return "".join(lines)


def play(playbook: Path, *args: str) -> tuple[float, dict[str, object]]:
    started = time.perf_counter()
    out = subprocess.run([FLCTL, "play", str(playbook), "--json", *args], capture_output=True, text=True,
                         check=False, timeout=1200)
    took = time.perf_counter() - started
    if out.returncode != 0:
        raise SystemExit(f"flctl play exited {out.returncode}:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return took, json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sites", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3, help="no-change runs timed (the median is printed)")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="flctl-bench-play-") as tmp:
        root = Path(tmp)
        key = make_key(root / "id_ed25519")
        (root / "authorized_keys").write_text(key.with_suffix(".pub").read_text())
        sshd = start_hosts(root, 1, root / "authorized_keys")[0]
        (root / "known_hosts").write_text(sshd.known_hosts_line())
        (root / "project.yml").write_text(project_text("benchplay", free_port(), sites=options.sites))
        playbook = root / "play.yml"
        playbook.write_text(playbook_text(options.sites, sshd.port, key, root))
        try:
            first, result = play(playbook)
            events = [json.loads(line) for line in (root / "play.play" / "events.jsonl").read_text().splitlines()]
            start = events[0]["at"]
            participants = result["participants"]
            assert isinstance(participants, list)
            print(f"from nothing to verified, a server and {options.sites} sites: {first:.1f} s wall")
            print("state        last participant there (s after the first event)")
            for state in STATES:
                reached = [p["times"][state] for p in participants if state in p["times"]]
                if reached:
                    print(f"  {state:<11}{max(reached) - start:8.1f}")
            times = []
            for _ in range(options.repeats):
                took, again = play(playbook)
                if again["nothing_to_do"] is not True:
                    raise SystemExit(f"a run with nothing changed did something: {json.dumps(again)[:2000]}")
                times.append(took)
            print(f"nothing changed, {options.sites + 1} hosts healthy: median {statistics.median(times):.2f} s "
                  f"(runs: {', '.join(f'{t:.2f}' for t in times)}; goal under 3 s)")
        finally:
            if (root / "play.play" / "inventory.yml").exists():
                subprocess.run([FLCTL, "deploy", "stop", str(root / "play.play" / "inventory.yml")],
                               capture_output=True, check=False, timeout=300)
            for pid in _processes_under(root):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            sshd.stop()


def _processes_under(root: Path) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            with contextlib.suppress(OSError):
                if str(root) in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(entry.name))
    return found


if __name__ == "__main__":
    main()
