"""`flctl simulate`: the same job, script and workflow as a real run, with the sites as threads of a few workers."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from flctl.cloud.local import descendants

from .conftest import ROOT
from .federation import FLCTL, Federation, _kill_group, make_federation, pid_alive

JOBS = ROOT / "playbooks" / "jobs"

STATEFUL_SCRIPT = '''
import numpy as np
import flctl.client as fl

SEEN = 0  # module state that must persist across rounds, as in a real site's script process

fl.init()
while fl.running():
    model = fl.receive()
    SEEN += 1
    np.random.seed(sum(fl.site_name().encode()))  # global RNG: only this site computes until it sends
    draw = float(np.random.random())
    print(f"round {model.round} at {fl.site_name()}")
    if fl.site_name() == "site-3" and model.round == 1 and "FAIL" in __import__("os").environ:
        raise RuntimeError("site-3 breaks in round 1")
    params = {"w": np.full(3, SEEN, np.float32)}
    fl.send(fl.Model(params=params, metrics={"seen": SEEN, "draw": draw}, num_examples=1))
    fl.log("draw", draw, step=model.round)
'''


def simulate(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FLCTL, "simulate", *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          check=False)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
    except OSError:
        return ""


def stateful_job(root: Path, rounds: int, min_sites: int = 1, env: str = "") -> Path:
    job = root / "stateful"
    (job / "app").mkdir(parents=True)
    (job / "app" / "train.py").write_text(STATEFUL_SCRIPT)
    (job / "job.yml").write_text(f"api_version: 1\nname: stateful\nworkflow: {{type: fedavg, args: {{rounds: "
                                 f"{rounds}}}}}\nmin_sites: {min_sites}\napp: {{command: [python, train.py]"
                                 + (f", env: {{{env}: '1'}}" if env else "") + "}\n")
    return job


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    """A real local federation: a server and two sites as processes, mTLS on 127.0.0.1."""
    fed = make_federation(tmp_path_factory.mktemp("real"), sites=2)
    try:
        fed.start("localhost")
        for site in fed.sites:
            fed.start(site)
        fed.wait_online(fed.sites)
        yield fed
    finally:
        fed.stop_all()


def real_final_model(fed: Federation, job: Path, out: Path) -> dict[str, np.ndarray]:
    done = fed.flctl("job", "submit", job, "--watch", "--json")
    assert done.returncode == 0, done.stderr
    downloaded = fed.flctl("job", "download", json.loads(done.stdout)["id"], "-o", out)
    assert downloaded.returncode == 0, downloaded.stderr
    return load_file(next(out.rglob("final.safetensors")))


def assert_same_model(real_final: dict[str, np.ndarray], sim_final: dict[str, np.ndarray]) -> None:
    assert sorted(real_final) == sorted(sim_final)
    for name, value in real_final.items():
        assert value.dtype == sim_final[name].dtype
        assert np.array_equal(value, sim_final[name]), name


def test_hello_numpy_gives_the_same_final_model_as_a_real_federation(real: Federation, tmp_path: Path) -> None:
    """hello-numpy simulated and run on a real local federation (mTLS, processes) ends on identical weights."""
    # Prepare
    real_final = real_final_model(real, JOBS / "hello-numpy", tmp_path / "download")
    # Execute
    sim = simulate(JOBS / "hello-numpy", "-n", "2", "-w", tmp_path / "sim", "--json")
    # Assert
    assert sim.returncode == 0, sim.stderr
    sim_final = load_file(tmp_path / "sim" / "hello-numpy" / "models" / "final.safetensors")
    assert sorted(sim_final) == ["b", "w"]
    assert_same_model(real_final, sim_final)


def test_a_job_keeping_one_checkpoint_keeps_one_on_the_server_and_in_a_simulation(real: Federation,
                                                                                  tmp_path: Path) -> None:
    """A 3-round job with `checkpoints: {keep: 1}`, on the real federation and simulated: each keeps round 2's
    model and the final one (the same file), nothing older, and both end on the same model."""
    # Prepare
    job = stateful_job(tmp_path, rounds=3)
    (job / "job.yml").write_text((job / "job.yml").read_text() + "checkpoints: {keep: 1}\n")
    # Execute
    done = real.flctl("job", "submit", job, "--watch", "--json")
    sim = simulate(job, "-n", "2", "-w", tmp_path / "sim", "--json")
    # Assert
    assert done.returncode == 0, done.stderr
    assert sim.returncode == 0, sim.stderr
    server = real.kit("localhost") / "workspace" / "jobs" / json.loads(done.stdout)["id"] / "models"
    simulated = tmp_path / "sim" / "stateful" / "models"
    for models in (server, simulated):
        assert sorted(p.name for p in models.iterdir() if not p.name.startswith(".")) == [
            "final.safetensors", "round-2.safetensors"]
    assert (server / "final.safetensors").samefile(server / "round-2.safetensors")
    assert_same_model(load_file(server / "final.safetensors"), load_file(simulated / "final.safetensors"))


def test_many_sites_share_few_workers_and_write_a_real_runs_artifacts(tmp_path: Path) -> None:
    """24 sites on 2 workers: each script keeps its state across rounds, and the artifacts match a real run's."""
    # Prepare
    job = stateful_job(tmp_path, rounds=3)
    # Execute
    out = simulate(job, "-n", "24", "--workers", "2", "-w", tmp_path / "ws", "--json")
    # Assert
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert (result["status"], result["sites"], result["workers"], result["rounds"]) == ("FINISHED", 24, 2, 3)
    job_dir = tmp_path / "ws" / "stateful"
    assert sorted(p.name for p in (job_dir / "models").iterdir()) == [
        "final.safetensors", "round-0.safetensors", "round-1.safetensors", "round-2.safetensors"]
    assert np.array_equal(load_file(job_dir / "models" / "final.safetensors")["w"], np.full(3, 3, np.float32))
    metrics = json.loads((job_dir / "metrics.json").read_text())
    seen = {(m["site"], m["round"]): m["value"] for m in metrics if m["name"] == "seen"}
    assert seen == {(f"site-{i}", r): r + 1 for i in range(1, 25) for r in range(3)}
    draws = {(m["site"], m["round"]): m["value"] for m in metrics if m["name"] == "draw" and m["step"] is None}
    expected = {f"site-{i}": float(np.random.RandomState(sum(f"site-{i}".encode())).random_sample())
                for i in range(1, 25)}
    assert draws == {(site, r): expected[site] for site in expected for r in range(3)}
    logged = [m for m in metrics if m["name"] == "draw" and m["step"] is not None]
    assert logged == []  # logged after it was sent with the answer: recorded once, as sent
    assert "round 2 at site-7" in (job_dir / "logs" / "site-7.log").read_text()
    assert "3 of 3" in (job_dir / "logs" / "server.log").read_text()


def test_a_failing_script_fails_the_job_with_exit_code_1_and_its_traceback_in_the_site_log(tmp_path: Path) -> None:
    """A script that raises at one site fails that site; with every site required, the job FAILS (exit 1)."""
    # Prepare
    job = stateful_job(tmp_path, rounds=3, min_sites=4, env="FAIL")
    # Execute
    out = simulate(job, "-n", "4", "-w", tmp_path / "ws")
    # Assert
    assert out.returncode == 1, out.stderr
    assert "site-3" in out.stderr and "FAILED" in out.stderr
    log = (tmp_path / "ws" / "stateful" / "logs" / "site-3.log").read_text()
    assert "RuntimeError: site-3 breaks in round 1" in log
    assert "Traceback" in log


def test_a_bad_job_or_too_few_sites_is_refused_with_exit_code_2(tmp_path: Path) -> None:
    """A job.yml with an unknown workflow, or fewer sites than min_sites, is bad input (exit 2) and says why."""
    # Prepare
    bad = tmp_path / "bad"
    shutil.copytree(JOBS / "hello-numpy", bad)
    (bad / "job.yml").write_text((bad / "job.yml").read_text().replace("type: fedavg", "type: fedmagic"))
    # Execute
    unknown = simulate(bad, "-w", tmp_path / "ws")
    few = simulate(JOBS / "hello-numpy", "-n", "1", "-w", tmp_path / "ws")
    # Assert
    assert unknown.returncode == 2
    assert "unknown workflow type 'fedmagic'" in unknown.stderr
    assert few.returncode == 2
    assert "at least 2 sites" in few.stderr
    assert "Traceback" not in unknown.stderr + few.stderr


def test_ctrl_c_stops_the_simulation_and_its_workers_at_once(tmp_path: Path) -> None:
    """SIGINT to the terminal's process group while scripts train: exit 130, no worker left behind."""
    # Prepare
    job = tmp_path / "sleeper"
    (job / "app").mkdir(parents=True)
    (job / "app" / "train.py").write_text(
        "import time\nimport flctl.client as fl\nfl.init()\nwhile fl.running():\n    fl.receive()\n"
        "    print('training', flush=True)\n    time.sleep(600)\n")
    (job / "job.yml").write_text("api_version: 1\nname: sleeper\nworkflow: {type: fedavg, args: {rounds: 1}}\n")
    proc = subprocess.Popen([FLCTL, "simulate", str(job), "-n", "4", "--workers", "2", "-w", str(tmp_path / "ws")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    logs = tmp_path / "ws" / "sleeper" / "logs"
    try:
        deadline = time.monotonic() + 60
        while len(list(logs.glob("site-*.log"))) < 2 and time.monotonic() < deadline:  # one site of each worker
            time.sleep(0.05)
        workers = descendants(proc.pid)
        commands = {pid: _cmdline(pid) for pid in workers}
        # Execute
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        _kill_group(proc.pid)
    # Assert: two workers (and multiprocessing's resource tracker, which spawned workers come with)
    assert len([pid for pid in workers if "resource_tracker" not in commands[pid]]) == 2, commands
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    # a process SIGKILLed with its group, or the tracker seeing its pipe close, is gone once reaped: moments later
    deadline = time.monotonic() + 10
    while [pid for pid in workers if pid_alive(pid)] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert {pid: commands[pid] for pid in workers if pid_alive(pid)} == {}


SKIPPING_SCRIPT = '''
import numpy as np
import flctl.client as fl

# It tries to skip its site's filters: in its own process, it makes them pass everything as it is.
try:
    from flctl.node.site.filters.pipeline import FilterPipeline
except (ImportError, OSError) as exc:  # a real site's confined script cannot even read that code
    print(f"cannot patch the filters: {exc!r}")
else:
    FilterPipeline.task_in = lambda self, task, payload, site: (task, payload)
    FilterPipeline.result_out = lambda self, task, answer, payload, site: (answer, payload)
    print("patched the filters")

fl.init()
while fl.running():
    model = fl.receive()
    params = {"w": model.params.get("w", np.zeros(3, np.float32)) + np.float32(1),
              "b": np.full(2, model.round, np.float64), "secret.embedding": np.full(4, 42.0, np.float32)}
    seen = {"saw_b": float("b" in model.params), "saw_secret": float("secret.embedding" in model.params)}
    fl.send(fl.Model(params=params, metrics=seen, num_examples=1))
'''

PRIVACY = """\
api_version: 1
default_scope: public
scopes:
  public: []
  private:
    - filter: exclude_vars
      args: {exclude_vars: '^secret\\.'}
    - filter: exclude_vars
      args: {exclude_vars: [b]}
      apply_to: task
"""


def scoped_job(root: Path, name: str, scope: str) -> Path:
    job = root / name
    (job / "app").mkdir(parents=True)
    (job / "app" / "train.py").write_text(SKIPPING_SCRIPT)
    (job / "job.yml").write_text(f"api_version: 1\nname: {name}\nworkflow: {{type: fedavg, args: {{rounds: 2}}}}\n"
                                 f"min_sites: 2\nprivacy_scope: {scope}\n")
    return job


def test_a_script_cannot_skip_its_site_s_filters_in_a_real_federation_or_in_simulation(real: Federation,
                                                                                      tmp_path: Path) -> None:
    """Both sites' privacy.yml exclude secret.* from results and b from tasks in the scope the job asks for; the
    script patches the filters away in its own process and sends secret.embedding: neither the real server's
    models nor the simulated workflow's hold it, the script never sees b, and both runs end on the same model."""
    # Prepare
    for site in real.sites:
        (real.kit(site) / "local" / "privacy.yml").write_text(PRIVACY)
    (tmp_path / "privacy.yml").write_text(PRIVACY)
    job = scoped_job(tmp_path, "skipper", "private")
    # Execute
    real_final = real_final_model(real, job, tmp_path / "download")
    sim = simulate(job, "-n", "2", "-w", tmp_path / "sim", "--privacy", tmp_path / "privacy.yml", "--json")
    # Assert
    assert sim.returncode == 0, sim.stderr
    sim_dir = tmp_path / "sim" / "skipper"
    real_dir = next((tmp_path / "download").rglob("final.safetensors")).parent.parent
    for models in (real_dir / "models", sim_dir / "models"):
        for saved in models.iterdir():
            assert sorted(load_file(saved)) == ["b", "w"], saved
    assert np.array_equal(real_final["w"], np.full(3, 2, np.float32))
    assert np.array_equal(real_final["b"], np.full(2, 1, np.float64))
    assert_same_model(real_final, load_file(sim_dir / "models" / "final.safetensors"))
    assert "patched the filters" in (sim_dir / "logs" / "site-1.log").read_text()  # in its worker process
    for run in (real_dir, sim_dir):
        seen = [m for m in json.loads((run / "metrics.json").read_text()) if m["name"].startswith("saw_")]
        assert len(seen) == 2 * 2 * 2 and all(m["value"] == 0.0 for m in seen), seen


def test_a_site_without_the_job_s_privacy_scope_refuses_it(real: Federation, tmp_path: Path) -> None:
    """A job asking for a scope the sites lack FAILS, each site's reason naming the scope and the site's scopes; the
    simulator refuses it at once (exit 2)."""
    # Prepare
    job = scoped_job(tmp_path, "unscoped", "hipaa")
    # Execute
    done = real.flctl("job", "submit", job, "--watch", "--json")
    sim = simulate(job, "-n", "2", "-w", tmp_path / "sim")
    # Assert
    assert done.returncode == 1, done.stdout + done.stderr
    show = real.flctl_json("job", "show", json.loads(done.stdout)["id"])
    assert show["status"] == "FAILED"
    for site in show["sites"]:
        assert site["error"].startswith(f"{site['name']} refuses to run the job: the job asks for privacy scope "
                                        "'hipaa', which this site does not have (its scopes: "), site
    assert sim.returncode == 2
    assert "the simulated sites refuse the job: the job asks for privacy scope 'hipaa'" in sim.stderr
    assert "Traceback" not in sim.stderr
