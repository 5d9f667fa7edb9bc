"""`flctl quickstart`: a local federation, a job followed live, its results fetched, everything stopped after."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from flctl.cloud.local import descendants

from .federation import FLCTL, _kill_group, pid_alive
from .test_poc import sleeping_job, wait_for_scripts


def start_quickstart(tmp_path: Path, *args: str | Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("FLCTL_KIT", "FLCTL_POC_WORKSPACE")}
    return subprocess.Popen([FLCTL, "quickstart", *map(str, args)], cwd=tmp_path, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)


def test_quickstart_runs_hello_numpy_fetches_results_and_stops_everything(tmp_path: Path) -> None:
    """The example job FINISHES, its results are downloaded where it says, and its temporary folder is gone."""
    # Prepare
    proc = start_quickstart(tmp_path, "--job", "hello-numpy")
    # Execute
    try:
        output, _ = proc.communicate(timeout=120)
    finally:
        _kill_group(proc.pid)
    # Assert
    assert proc.returncode == 0, output
    assert "round 3/3" in output
    results = list((tmp_path / "quickstart-results").rglob("final.safetensors"))
    assert len(results) == 1
    assert str(results[0].parent.parent) in output
    assert "stopped the local federation" in output
    assert "flctl-quickstart-" not in "".join(os.listdir(tmp_path))


def test_ctrl_c_stops_every_process_quickstart_started(tmp_path: Path) -> None:
    """SIGINT in the middle of a job: quickstart exits 130 and no node, job process or script remains."""
    # Prepare
    workspace = tmp_path / "ws"
    proc = start_quickstart(tmp_path, "--job", sleeping_job(tmp_path), "-w", workspace)
    assert proc.stdout is not None
    try:
        lines = []
        for line in proc.stdout:  # wait until the job runs
            lines.append(line)
            if "submitted" in line:
                break
        nodes = [int(p.read_text().split()[0]) for p in sorted((workspace / "run").glob("*.pid"))]
        tree = set(nodes) | wait_for_scripts(nodes[1:]) | descendants(nodes[0])
        # Execute
        os.kill(proc.pid, signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    finally:
        _kill_group(proc.pid)
        for pid in nodes if "nodes" in locals() else []:
            _kill_group(pid)
    # Assert
    assert proc.returncode == 130, "".join(lines) + rest
    assert "stopped the local federation" in rest
    assert len(tree) >= 3 + 4
    assert [pid for pid in tree if pid_alive(pid)] == []
    assert list((workspace / "run").glob("*.pid")) == []
