"""`flctl quickstart`: a local federation, a job followed live, its results fetched, everything stopped after."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from flctl.cloud.local import descendants
from flctl.console.cli.quickstart import examples, pick_job
from flctl.node.jobs.job_spec import load_job

from .conftest import ROOT, run_flctl
from .federation import FLCTL, _kill_group, pid_alive
from .test_poc import sleeping_job, wait_for_scripts


def start_quickstart(tmp_path: Path, *args: str | Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("FLCTL_KIT", "FLCTL_POC_WORKSPACE")}
    return subprocess.Popen([FLCTL, "quickstart", *map(str, args)], cwd=tmp_path, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)


def run_quickstart(tmp_path: Path, *args: str | Path) -> str:
    """`flctl quickstart ARGS` in `tmp_path` to its end (exit 0); its output."""
    proc = start_quickstart(tmp_path, *args)
    try:
        output, _ = proc.communicate(timeout=120)
    finally:
        _kill_group(proc.pid)
    assert proc.returncode == 0, output
    return output


def test_quickstart_runs_hello_numpy_fetches_results_and_stops_everything(tmp_path: Path) -> None:
    """The example job FINISHES, its results (every site's log with them) are downloaded where it says, no hint
    points at the federation it removed, and its temporary folder is gone."""
    # Prepare / Execute
    output = run_quickstart(tmp_path, "--job", "hello-numpy")
    # Assert
    assert "round 3 of 3" in output
    results = list((tmp_path / "quickstart-results").rglob("final.safetensors"))
    assert len(results) == 1
    assert str(results[0].parent.parent) in output
    assert "stopped the local federation" in output
    assert "flctl-quickstart-" not in "".join(os.listdir(tmp_path))
    assert "flctl job download" not in output, "no hint to fetch from a federation that is gone"
    logs = {p.name for p in results[0].parent.parent.glob("logs/*.log")}
    assert {"server.log", "site-1.log", "site-2.log"} <= logs, logs


def test_quickstart_runs_a_job_file_example_end_to_end(tmp_path: Path) -> None:
    """`--job noniid/cyclic.yml` (a job file sharing noniid's app/) is submitted to the local federation, FINISHES
    and its results are downloaded."""
    # Prepare / Execute
    output = run_quickstart(tmp_path, "--job", "noniid/cyclic.yml")
    # Assert
    assert "submitted noniid-cyclic as job" in output
    assert "round 4 of 4" in output
    assert len(list((tmp_path / "quickstart-results").rglob("final.safetensors"))) == 1


EXPECTED = ["ditto", "external-trainer", "fedbuff", "flower-quickstart-numpy", "hello-keras", "hello-lightning",
            "hello-numpy", "hello-pt", "hello-pt-dp", "hello-pt-inference", "llm-lora",
            "noniid/cross-site-eval.yml", "noniid/cyclic.yml", "noniid/fedavg.yml", "noniid/fedopt.yml",
            "noniid/fedprox.yml", "noniid/scaffold.yml", "noniid/swarm.yml", "sklearn/forest.yml", "sklearn/kmeans.yml",
            "sklearn/logistic.yml", "sklearn/svm.yml", "statistics", "vertical/psi.yml", "vertical/split.yml",
            "xgboost/bagging.yml", "xgboost/histogram.yml"]


@pytest.mark.parametrize("name", EXPECTED)
def test_every_example_name_is_accepted(name: str) -> None:
    """Each example's name picks its path under playbooks/jobs, a job that loads (so --job NAME runs it)."""
    # Prepare / Execute
    path = pick_job(name)
    # Assert
    assert path == ROOT / "playbooks" / "jobs" / name
    assert load_job(path).spec.min_sites <= 2  # quickstart's default -n 2 suffices


def test_the_examples_are_exactly_the_listed_ones() -> None:
    """The examples found under playbooks/jobs are the ones above, folders and job files alike."""
    # Prepare / Execute / Assert
    assert sorted(examples()) == EXPECTED


def test_an_unknown_example_is_refused_with_exit_2_listing_the_names() -> None:
    """A name that is neither an example nor a path: exit 2, one line naming every example; nothing started."""
    # Prepare / Execute
    result = run_flctl("quickstart", "--job", "fedsgd")
    # Assert
    assert result.code == 2
    assert "no example or job 'fedsgd'" in result.stderr
    assert all(name in result.stderr for name in EXPECTED)


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
