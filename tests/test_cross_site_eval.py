"""Cross-site evaluation: every site's model and the global one evaluated at every site, as an exact matrix; sites
that cannot take part are named; runs alone on a model in the job folder, or after FedAvg; shown by `job show`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from flctl.node.admin.admin_client import AdminClient
from flctl.node.jobs.tasks import SiteFailure, Task, TaskResult
from flctl.node.wire import tensors
from flctl.node.workflows.base import WorkflowError
from flctl.node.workflows.cross_site_eval import CrossSiteEval, CrossSiteEvalArgs
from flctl.node.workflows.fedavg import FedAvg, FedAvgArgs

from .federation import FLCTL, make_federation, running
from .job_folders import workflow_job
from .test_fedavg import FakeFederation, Site

OWN = {"site-1": 1.0, "site-2": 2.0, "site-3": 4.0}


def site(name: str) -> Site:
    """Its own model is w = OWN[name]; evaluating a model gives distance = |w - OWN[name]|; training adds 1."""

    def answer(task: Task) -> TaskResult:
        if task.kind == "submit_model":
            return TaskResult(name, {"w": np.full(2, OWN[name])}, 1)
        if task.kind == "evaluate":
            return TaskResult(name, {}, 1, {"distance": float(abs(task.params["w"][0] - OWN[name]))})
        return TaskResult(name, {"w": task.params["w"] + 1}, 1)

    return answer


def test_every_model_is_evaluated_at_every_site_exactly():
    """3 sites and a global model: a 3 x 4 matrix of |w_model - w_site|, saved as the result cross_site_eval."""
    # Prepare
    fed = FakeFederation({name: site(name) for name in OWN})
    fed.files["model/global.safetensors"] = tensors.encode({"w": np.full(2, 3.0)})
    # Execute
    CrossSiteEval(CrossSiteEvalArgs(model="model/global.safetensors")).run(fed, None)
    # Assert
    matrix = fed.reports["cross_site_eval"]
    assert matrix["models"] == ["global", "site-1", "site-2", "site-3"]
    want = {s: {m: {"distance": abs(w - OWN[s])} for m, w in (("global", 3.0), *OWN.items())} for s in OWN}
    assert matrix["metrics"] == want
    assert matrix["missing"] == {}
    assert [task.kind for task, _, _ in fed.tasks] == ["submit_model"] + ["evaluate"] * 4
    assert fed.models["final"]["w"].tolist() == [3.0, 3.0]


def test_sites_that_cannot_submit_or_evaluate_are_named_and_the_rest_goes_on():
    """A failed submit, an empty one and a train-only answer to evaluate are each named; the others are evaluated."""
    # Prepare
    def trains_only(task: Task) -> TaskResult:
        return TaskResult("site-3", {"w": np.zeros(2)}, 1)

    fed = FakeFederation({"site-1": site("site-1"), "site-2": lambda t: SiteFailure("site-2", "no data"),
                          "site-3": trains_only})
    # Execute
    CrossSiteEval(CrossSiteEvalArgs()).run(fed, None)
    # Assert
    matrix = fed.reports["cross_site_eval"]
    assert matrix["models"] == ["site-1", "site-3"]
    assert matrix["missing"] == {"site-2": "did not submit a model: no data"}
    assert matrix["metrics"]["site-1"] == {"site-1": {"distance": 0.0}, "site-3": {"distance": 1.0}}
    assert matrix["metrics"]["site-3"] == {}
    assert any("site-3 answered with a model, not metrics, for site-1's model" in line for line in fed.lines)


def test_fedavg_with_cross_site_eval_evaluates_its_final_model():
    """cross_site_eval: true after 2 rounds: the global column is the final model's."""
    # Prepare
    fed = FakeFederation({name: site(name) for name in OWN})
    # Execute
    FedAvg(FedAvgArgs(rounds=2, cross_site_eval=True)).run(fed, {"w": np.zeros(2)})
    # Assert
    assert fed.reports["cross_site_eval"]["metrics"]["site-3"]["global"] == {"distance": 2.0}


def test_a_model_file_the_job_lacks_fails_the_job_naming_it():
    """workflow.args.model names a file not in the job folder: one sentence, the workflow fails."""
    # Prepare
    fed = FakeFederation({name: site(name) for name in OWN})
    fed.files = {}
    # Execute / Assert
    with pytest.raises(WorkflowError, match=r"workflow.args.model: cannot read 'model/none.safetensors'"):
        CrossSiteEval(CrossSiteEvalArgs(model="model/none.safetensors")).run(fed, None)


SCRIPT = """
import numpy as np
import flctl.client as fl

OWN = {"site-1": 1.0, "site-2": 2.0}
fl.init()
while fl.running():
    model = fl.receive()
    me = OWN[fl.site_name()]
    if fl.is_submit_model():
        fl.send(fl.Model(params={"w": np.full(2, me, np.float32)}))
    elif fl.is_evaluate():
        fl.send(fl.Model(metrics={"distance": float(abs(model.params["w"][0] - me))}, num_examples=1))
    else:
        fl.send(fl.Model(params={"w": model.params["w"] + np.float32(1)}, num_examples=1))
"""


def cross_site_job(root: Path) -> Path:
    job = workflow_job(root, "xsite", "cross_site_eval", {"model": "model/global.safetensors", "timeout_s": 60},
                       SCRIPT)
    (job / "model").mkdir()
    tensors.write_file(job / "model" / "global.safetensors", {"w": np.full(2, 5.0, np.float32)})
    return job


def test_a_simulated_cross_site_evaluation_prints_the_matrix(tmp_path: Path):
    """flctl simulate runs it on the job folder's model and prints the table; the result file holds the matrix."""
    # Prepare
    job = cross_site_job(tmp_path)
    # Execute
    out = subprocess.run([FLCTL, "simulate", str(job), "-n", "2", "-w", str(tmp_path / "ws")], capture_output=True,
                         text=True, timeout=120, check=False, env={**__import__("os").environ, "COLUMNS": "200"})
    # Assert
    assert out.returncode == 0, out.stdout + out.stderr
    matrix = json.loads((tmp_path / "ws" / "xsite" / "reports" / "cross_site_eval.json").read_text())
    assert matrix["metrics"]["site-2"] == {"global": {"distance": 3.0}, "site-1": {"distance": 1.0},
                                           "site-2": {"distance": 0.0}}
    assert "cross-site evaluation" in out.stdout and "distance=3" in out.stdout


def test_job_show_prints_the_matrix_of_a_real_federation(tmp_path: Path):
    """On a real federation: `job show` prints the table, `--json` holds the results, the download the file."""
    # Prepare
    with running(make_federation(tmp_path)) as fed:
        with AdminClient.from_kit(fed.admin_kit) as admin:
            job_id = admin.submit_job(cross_site_job(tmp_path))
            list(admin.watch(job_id))
            info = admin.get_job(job_id)
            target = admin.download_job(job_id, tmp_path / "out")
        # Execute
        shown = subprocess.run([FLCTL, "job", "show", job_id, "--kit", str(fed.admin_kit)], capture_output=True,
                               text=True, timeout=60, check=False, env={**__import__("os").environ, "COLUMNS": "200"})
        as_json = subprocess.run([FLCTL, "job", "show", job_id, "--kit", str(fed.admin_kit), "--json"],
                                 capture_output=True, text=True, timeout=60, check=False)
    # Assert
    assert info.status == "FINISHED", info.error + fed.logs()
    assert info.reports["cross_site_eval"]["metrics"]["site-1"]["global"] == {"distance": 4.0}
    assert "cross-site evaluation" in shown.stdout and "distance=4" in shown.stdout, shown.stdout + shown.stderr
    assert json.loads(as_json.stdout)["reports"]["cross_site_eval"]["models"] == ["global", "site-1", "site-2"]
    assert (target / "reports" / "cross_site_eval.json").is_file()


def test_a_job_file_path_cannot_leave_the_job(tmp_path: Path):
    """workflow.args.model is the submitter's: an absolute path or one climbing out with .. is refused, on the
    server (read from the bundle) as in the simulator (read from the folder); a file the bundle lacks is named."""
    import zipfile

    from flctl.node.jobs.bundle import inner_path, read_member

    # Prepare
    bundle = tmp_path / "bundle.zip"
    with zipfile.ZipFile(bundle, "w") as archive:
        archive.writestr("model/global.safetensors", b"x")
    # Execute / Assert
    assert read_member(bundle, "model/global.safetensors") == b"x"
    for bad in ("../../etc/passwd", "/etc/passwd", ""):
        with pytest.raises(ValueError, match="is not a path inside the job folder"):
            inner_path(bad)
        with pytest.raises(ValueError, match="is not a path inside the job folder"):
            read_member(bundle, bad)
    with pytest.raises(FileNotFoundError, match=r"the job has no file model/none\.safetensors"):
        read_member(bundle, "model/none.safetensors")
