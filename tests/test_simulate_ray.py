"""`flctl simulate --engine ray`: the sites in Ray actors, on a real multi-node Ray cluster on 127.0.0.1 (a head and
two worker nodes started with `ray start`, each its own process group) or a local Ray the command starts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from flctl.cloud.local import descendants

from .federation import FLCTL, _kill_group, pid_alive
from .ray_cluster import RayCluster

# Each site adds its number to the model: the average is exact in float32 whatever order the answers come in,
# so every engine (and a run that lost a node) must end on exactly 2.5 x rounds with four sites.
COUNTING_SCRIPT = '''
import os, time
import numpy as np
import flctl.client as fl

fl.init()
while fl.running():
    model = fl.receive()
    w = model.params.get("w", np.zeros(3, np.float32)) if model.params else np.zeros(3, np.float32)
    time.sleep(float(os.environ["PAUSE"]))
    number = int(fl.site_name().split("-")[1])
    print(f"round {model.round} at {fl.site_name()}")
    fl.send(fl.Model(params={"w": w + np.float32(number)}, metrics={"number": number}, num_examples=1))
'''


def counting_job(root: Path, rounds: int, pause: float = 0.0) -> Path:
    job = root / "counting"
    (job / "app").mkdir(parents=True)
    (job / "app" / "train.py").write_text(COUNTING_SCRIPT)
    (job / "job.yml").write_text(f"api_version: 1\nname: counting\nworkflow: {{type: fedavg, args: {{rounds: "
                                 f"{rounds}, round_timeout_s: 60}}}}\nmin_sites: 4\n"
                                 f"app: {{command: [python, train.py], env: {{PAUSE: '{pause}'}}}}\n")
    return job


def final_w(workspace: Path) -> np.ndarray:
    return load_file(workspace / "counting" / "models" / "final.safetensors")["w"]


def flctl(*args: str | Path, env: dict[str, str] | None = None,
          timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FLCTL, "simulate", *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          check=False, env=env)


def wait_for(path: Path, proc: subprocess.Popen[str], seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"no {path} after {seconds} s"
        time.sleep(0.05)


def test_without_ray_the_ray_engine_says_how_to_install_it(tmp_path: Path) -> None:
    """No Ray importable: exit 2 with the install hint, nothing run."""
    # Prepare: a `ray` that cannot be imported, first on the path
    (tmp_path / "hide").mkdir()
    (tmp_path / "hide" / "ray.py").write_text("raise ImportError('No module named ray')\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "hide")}
    # Execute
    done = flctl(counting_job(tmp_path, 1), "-n", "4", "-w", tmp_path / "ws", "--engine", "ray", env=env)
    # Assert
    assert done.returncode == 2, done.stderr
    assert 'pip install "flctl[ray]"' in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "ws").exists()


def test_an_address_where_no_ray_answers_exits_3_and_a_folder_that_is_no_run_cannot_be_resumed(
        tmp_path: Path) -> None:
    """--address of a closed port: exit 3 at once, naming it (Ray itself would retry for minutes); --resume of a
    folder without simulation.json: exit 2."""
    pytest.importorskip("ray", reason="needs the ray extra: bash scripts/setup.sh --all")
    # Execute
    began = time.monotonic()
    closed = flctl(counting_job(tmp_path, 1), "-n", "4", "-w", tmp_path / "ws", "--engine", "ray", "--address",
                   "127.0.0.1:1", timeout=60)
    took = time.monotonic() - began
    resumed = flctl("--resume", tmp_path / "counting")
    # Assert
    assert closed.returncode == 3, closed.stderr
    assert "no Ray cluster answers at 127.0.0.1:1" in closed.stderr and "Traceback" not in closed.stderr
    assert took < 30, took
    assert not (tmp_path / "ws" / "counting").exists()
    assert resumed.returncode == 2, resumed.stderr
    assert "is not a simulation's results folder" in resumed.stderr


def test_resume_continues_a_local_engine_run_from_its_last_checkpoint(tmp_path: Path) -> None:
    """--resume works without Ray too: a run cut after round 2 (its later checkpoints gone) runs on from round-1's
    model to the uninterrupted run's, keeping the earlier rounds' metrics."""
    # Prepare
    results = tmp_path / "ws" / "counting"
    first = flctl(counting_job(tmp_path, rounds=3), "-n", "4", "-w", tmp_path / "ws")
    for name in ("round-2", "final"):
        (results / "models" / f"{name}.safetensors").unlink()
    # Execute
    resumed = flctl("--resume", results)
    # Assert
    assert first.returncode == 0, first.stderr
    assert resumed.returncode == 0, resumed.stderr
    assert np.array_equal(final_w(tmp_path / "ws"), np.full(3, 7.5, np.float32))
    assert "resuming at round 3 from models/round-1.safetensors" in (results / "logs" / "server.log").read_text()
    metrics = json.loads((results / "metrics.json").read_text())
    assert sorted(m["round"] for m in metrics if m["name"] == "number") == [0] * 4 + [1] * 4 + [2] * 4
    assert json.loads((results / "simulation.json").read_text())["engine"]["name"] == "local"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayCluster]:
    """One Ray cluster for the module: a head without CPUs and two worker nodes of one CPU each (so the two site
    actors land one on each worker node)."""
    pytest.importorskip("ray", reason="needs the ray extra: bash scripts/setup.sh --all")
    ray_cluster = RayCluster(tmp_path_factory.mktemp("ray"))
    try:
        ray_cluster.start_head()
        ray_cluster.start_workers(1, 2)
        yield ray_cluster
    finally:
        ray_cluster.stop()


def test_the_ray_engine_gives_the_local_engine_s_final_model(cluster: RayCluster, tmp_path: Path) -> None:
    """The same job on the local engine and on the Ray cluster: identical final models (and the exact sum)."""
    # Prepare
    job = counting_job(tmp_path, rounds=3)
    # Execute
    local = flctl(job, "-n", "4", "-w", tmp_path / "local")
    ray = flctl(job, "-n", "4", "-w", tmp_path / "ray", "--engine", "ray", "--address", cluster.address,
                env=cluster.env)
    # Assert
    assert local.returncode == 0, local.stderr
    assert ray.returncode == 0, ray.stderr
    assert np.array_equal(final_w(tmp_path / "local"), final_w(tmp_path / "ray"))
    assert np.array_equal(final_w(tmp_path / "ray"), np.full(3, 7.5, np.float32))
    run = json.loads((tmp_path / "ray" / "counting" / "simulation.json").read_text())
    assert run["engine"]["name"] == "ray" and run["workers"] == 2 and run["status"] == "FINISHED"
    log = (tmp_path / "ray" / "counting" / "logs" / "site-3.log").read_text()  # handed back by its actor
    assert [line.split(" ", 2)[2] for line in log.splitlines()[1:]] == [f"round {r} at site-3" for r in range(3)]


def test_a_killed_worker_node_s_sites_move_to_the_other_and_the_run_completes(cluster: RayCluster,
                                                                              tmp_path: Path) -> None:
    """SIGKILL to one worker node's process group mid-run: its sites' tasks go to the other node, same model."""
    # Prepare
    job = counting_job(tmp_path, rounds=6, pause=0.3)
    proc = subprocess.Popen([FLCTL, "simulate", str(job), "-n", "4", "-w", str(tmp_path / "ws"), "--engine", "ray",
                             "--address", cluster.address], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=cluster.env, start_new_session=True)
    try:
        wait_for(tmp_path / "ws" / "counting" / "models" / "round-1.safetensors", proc)
        # Execute
        cluster.kill_worker(2)
        _, err = proc.communicate(timeout=120)
    finally:
        _kill_group(proc.pid)  # worker node 2 stays down: the next test starts both again
    # Assert
    assert proc.returncode == 0, err
    assert np.array_equal(final_w(tmp_path / "ws"), np.full(3, 15.0, np.float32))
    server_log = (tmp_path / "ws" / "counting" / "logs" / "server.log").read_text()
    assert "died" in server_log and "its sites moved to actor(s)" in server_log, server_log


def test_losing_the_whole_cluster_fails_clearly_keeps_the_checkpoint_and_resume_finishes(cluster: RayCluster,
                                                                                          tmp_path: Path) -> None:
    """Every worker node killed mid-run (both, or the one the previous test left): FAILED (exit 1) saying so and
    naming --resume, the last round's checkpoint kept; with both nodes back, `flctl simulate --resume` runs on from
    it to the uninterrupted run's model."""
    # Prepare
    job = counting_job(tmp_path, rounds=6, pause=0.3)
    results = tmp_path / "ws" / "counting"
    proc = subprocess.Popen([FLCTL, "simulate", str(job), "-n", "4", "-w", str(tmp_path / "ws"), "--engine", "ray",
                             "--address", cluster.address], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=cluster.env, start_new_session=True)
    try:
        wait_for(results / "models" / "round-1.safetensors", proc)
        # Execute
        for index in list(cluster.workers):  # every worker node still up
            cluster.kill_worker(index)
        _, err = proc.communicate(timeout=120)
    finally:
        _kill_group(proc.pid)
        cluster.start_workers(*(index for index in (1, 2) if index not in cluster.workers))
    saved = sorted(p.name for p in (results / "models").glob("round-*.safetensors"))
    resumed = flctl("--resume", results, "--address", cluster.address, env=cluster.env)
    # Assert
    assert proc.returncode == 1, err
    assert "the Ray cluster lost every actor hosting sites" in err and f"--resume {results}" in err, err
    assert "Traceback" not in err
    assert saved and "round-5.safetensors" not in saved, saved
    assert resumed.returncode == 0, resumed.stderr
    assert np.array_equal(final_w(tmp_path / "ws"), np.full(3, 15.0, np.float32))
    last = int(saved[-1].split("-")[1].split(".")[0])
    assert f"resuming at round {last + 2} from models/{saved[-1]}" in (results / "logs" / "server.log").read_text()
    rounds = {m["round"] for m in json.loads((results / "metrics.json").read_text())}
    assert rounds == set(range(6))


@pytest.mark.parametrize("how", ["sigterm", "ctrl-c"])
def test_sigterm_or_ctrl_c_stops_the_run_and_its_local_ray(tmp_path: Path, how: str) -> None:
    """SIGTERM to the command alone (as to a background job), or SIGINT to its process group (Ctrl-C) while the
    scripts train on the local Ray it started: exit 130 within seconds, and no process it started is left."""
    pytest.importorskip("ray", reason="needs the ray extra: bash scripts/setup.sh --all")
    # Prepare
    job = counting_job(tmp_path, rounds=1, pause=600)
    env = {**os.environ, "FLCTL_RAY_OBJECT_STORE_MB": "80"}
    proc = subprocess.Popen([FLCTL, "simulate", str(job), "-n", "4", "-w", str(tmp_path / "ws"), "--engine", "ray"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        started: list[int] = []
        while time.monotonic() < deadline and proc.poll() is None:  # the site actors are up once 2 more run
            started = descendants(proc.pid)
            if sum("SiteHost" in _cmdline(pid) for pid in started) >= 2:
                break
            time.sleep(0.2)
        assert sum("SiteHost" in _cmdline(pid) for pid in started) >= 2, [_cmdline(p) for p in started]
        time.sleep(1)  # the scripts are in their pause
        started = descendants(proc.pid)
        # Execute
        if how == "sigterm":
            os.kill(proc.pid, signal.SIGTERM)
        else:
            os.killpg(proc.pid, signal.SIGINT)
        began = time.monotonic()
        _, err = proc.communicate(timeout=30)
        took = time.monotonic() - began
        deadline = time.monotonic() + 10  # a process SIGKILLed is gone once reaped: moments later
        while [pid for pid in started if pid_alive(pid)] and time.monotonic() < deadline:
            time.sleep(0.1)
        left = {pid: _cmdline(pid) for pid in started if pid_alive(pid)}
    finally:
        _kill_group(proc.pid)  # only what a failed run left
    # Assert
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert took < 15, took
    assert left == {}


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
    except OSError:
        return ""
