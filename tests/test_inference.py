"""Federated inference (`workflow.type: inference`): the model goes to every site once, only the metrics job.yml's
`returns` declares come back (the site drops the rest before its answer leaves), predictions stay at the site; a
finished job's model (`initial_model: job:<ID>`, `flctl job submit --model-from`) resolved by the server at submit.
The LLM's inference (llm-lora's generate.yml on a trained adapter) is tested in test_llm_lora.py, sharing its runs."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from flctl.node.admin.admin_client import AdminClient
from flctl.node.client import api_wire as wire
from flctl.node.errors import JobError
from flctl.node.jobs.initial_model import FinishedJob, InitialModelError, load, parse
from flctl.node.jobs.job_spec import load_job
from flctl.node.jobs.model_from import set_initial_model, with_model_from
from flctl.node.jobs.tasks import SiteFailure, Task, TaskKind, TaskResult
from flctl.node.site.filters.pipeline import FilterPipeline
from flctl.node.site.inference_release import declared_returns
from flctl.node.wire import tensors
from flctl.node.workflows.base import WorkflowError
from flctl.node.workflows.inference import Inference, InferenceArgs, combine, declared

from .conftest import ROOT
from .federation import ADMIN, FLCTL, make_federation, running
from .job_folders import workflow_job
from .test_fedavg import FakeFederation

JOBS = ROOT / "playbooks" / "jobs"
MODEL = {"w": np.array([2.0, 3.0], np.float32)}


def answers(site: str, metrics: dict[str, float], examples: int, params: dict[str, np.ndarray] | None = None):
    """A site that answers the inference task with `metrics` (and `params`, which an inference answer should not
    carry)."""
    return lambda task: TaskResult(site, dict(params or {}), examples, dict(metrics))


def test_the_model_goes_out_once_and_only_declared_metrics_come_back():
    """One inference task carrying the model and the declared names; each site's declared metrics, exactly; an
    undeclared metric, a non-finite one and any params are dropped and logged by name; no model is saved."""
    # Prepare
    fed = FakeFederation({
        "site-1": answers("site-1", {"count": 10, "accuracy": 0.5, "secret": 1.0}, 10),
        "site-2": answers("site-2", {"count": 30, "accuracy": 0.9, "loss": float("nan")}, 30,
                          params={"w": np.zeros(2)}),
    })
    # Execute
    final = Inference(InferenceArgs(returns=["count", "accuracy"], sum=["count"])).run(fed, MODEL)
    # Assert
    [(task, sites, _)] = fed.tasks
    assert task.kind == TaskKind.INFERENCE and task.meta == {"returns": ["count", "accuracy"]}
    assert task.params is MODEL and sites == ["site-1", "site-2"]
    report = fed.reports["inference"]
    assert report["sites"] == {"site-1": {"num_examples": 10, "metrics": {"count": 10.0, "accuracy": 0.5}},
                               "site-2": {"num_examples": 30, "metrics": {"count": 30.0, "accuracy": 0.9}}}
    assert report["all_sites"] == {"count": 40.0, "accuracy": pytest.approx((10 * 0.5 + 30 * 0.9) / 40, abs=1e-15)}
    assert report["missing"] == {} and "dropped" not in report
    assert fed.rounds == {0: {"site-1": {"count": 10.0, "accuracy": 0.5}, "site-2": {"count": 30.0, "accuracy": 0.9}}}
    assert "inference: site-1 answered with undeclared secret: dropped" in fed.lines
    assert "inference: site-2 answered with undeclared loss, params (1 tensors): dropped" in fed.lines
    assert final == {} and fed.models == {}


def test_the_all_sites_row_sums_or_weighs_exactly_as_numpy():
    """`sum` metrics add up; the others are the mean weighted by num_examples, or the plain mean without any."""
    # Prepare
    rng = np.random.default_rng(7)
    values, counts = rng.random(5), rng.integers(1, 100, 5)
    sites = {f"s{i}": {"num_examples": int(n), "metrics": {"count": float(n), "p": float(v)}}
             for i, (v, n) in enumerate(zip(values, counts, strict=True))}
    unweighted = {name: {**entry, "num_examples": 0} for name, entry in sites.items()}
    # Execute
    row = combine(sites, ["count", "p"], ["count"])
    plain = combine(unweighted, ["count", "p"], [])
    # Assert
    assert row["count"] == float(counts.sum())
    assert row["p"] == pytest.approx(float(np.average(values, weights=counts)), rel=1e-12)
    assert plain["p"] == pytest.approx(float(values.mean()), rel=1e-12)
    assert plain["count"] == pytest.approx(float(counts.mean()), rel=1e-12)


def test_sites_that_fail_or_stay_silent_are_named_and_min_sites_fails_the_job():
    """A failed site and a silent one are in `missing`; the report is saved, then fewer than min_sites fails."""
    # Prepare
    fed = FakeFederation({"site-1": answers("site-1", {"count": 3}, 3),
                          "site-2": lambda task: SiteFailure("site-2", "no data"),
                          "site-3": lambda task: None})
    # Execute
    with pytest.raises(WorkflowError, match=r"only 1 of 3 sites answered the inference task, fewer than min_sites"):
        Inference(InferenceArgs(returns=["count"], timeout_s=5), min_sites=2).run(fed, MODEL)
    # Assert
    assert fed.reports["inference"]["missing"] == {"site-2": "failed: no data", "site-3": "gave no answer within 5 s"}


def test_without_a_model_the_workflow_says_what_to_give():
    """No initial model: the job fails with what job.yml must name (the loader refuses it before, see below)."""
    # Prepare / Execute / Assert
    with pytest.raises(WorkflowError, match=r"give job.yml an initial_model .* job:<JOB_ID>"):
        Inference(InferenceArgs(returns=["count"])).run(FakeFederation({}), None)


def test_the_site_lets_out_only_the_declared_metrics_and_no_params_nor_meta():
    """FilterPipeline.result_out on an inference answer: the declared metrics and num_examples; the params become an
    empty model, the meta and any other metric stay; a pipeline without a declaration lets no metric out."""
    # Prepare
    pipeline = FilterPipeline("job-1", inference_returns=declared_returns(InferenceArgs(returns=["count"])))
    task = Task(TaskKind.INFERENCE, 0, {})
    answer = wire.Result(7, 12, {"count": 12.0, "mean_prediction": 0.25}, {"rows": [1, 2]})
    payload = tensors.encode({"w": np.ones(3, np.float32)})
    # Execute
    out, sent = pipeline.result_out(task, answer, payload, "site-1")
    closed, _ = FilterPipeline("job-1").result_out(task, answer, payload, "site-1")
    # Assert
    assert out == wire.Result(7, 12, {"count": 12.0}, {})
    assert tensors.decode(sent) == {}
    assert closed.metrics == {} and closed.meta == {}
    assert declared({"a": 1, "b": True, "c": float("inf"), "d": 2.5}, ["a", "b", "c", "d"]) == ({"a": 1.0, "d": 2.5},
                                                                                              ["b", "c"])


def inference_job(root: Path, args: dict[str, object], initial_model: str | None = "model/initial.safetensors") -> Path:
    job = workflow_job(root, "infer", "inference", args, "print('unused')\n", min_sites=1)
    if initial_model is not None:
        (job / "model").mkdir()
        tensors.write_file(job / "model" / "initial.safetensors", MODEL)
        (job / "job.yml").write_text((job / "job.yml").read_text() + f"initial_model: {initial_model}\n")
    return job


@pytest.mark.parametrize(("args", "initial_model", "field", "says"), [
    ({"returns": "count"}, "model/initial.safetensors", "workflow.args.returns", "list"),
    ({"returns": []}, "model/initial.safetensors", "workflow.args.returns", "at least 1"),
    ({"returns": ["count", "count"]}, "model/initial.safetensors", "workflow.args.returns", "named twice"),
    ({"returns": ["count"], "sum": ["tokens"]}, "model/initial.safetensors", "workflow.args",
     "sum names 'tokens', which is not in returns"),
    ({"returns": ["count"]}, None, "workflow.type", "give the job an initial_model"),
    ({"returns": ["count"]}, "job:bad/id", "initial_model", "does not name a job"),
])
def test_a_bad_inference_job_is_refused_naming_the_field(tmp_path: Path, args, initial_model, field, says):
    """returns not a list, empty, twice; sum outside returns; no model; a job: that names no job: one problem each,
    at its field and line."""
    # Prepare
    job = inference_job(tmp_path, args, initial_model)
    # Execute
    with pytest.raises(JobError) as caught:
        load_job(job)
    # Assert
    [problem] = caught.value.problems
    assert problem.field == field and says in problem.message and problem.line is not None, problem


def test_a_finished_jobs_model_is_parsed_and_read_only_where_the_server_kept_it(tmp_path: Path):
    """job:<ID> parses to a FinishedJob, is not looked for in the job folder, reads the file the server kept, and
    without one (a simulation) fails saying to download the job instead."""
    # Prepare
    job = inference_job(tmp_path, {"returns": ["count"]}, "job:3f2a9c1b7e4d")
    kept = tmp_path / "kept.safetensors"
    tensors.write_file(kept, MODEL)
    # Execute
    loaded = load_job(job)
    # Assert
    assert parse("job:3f2a9c1b7e4d") == FinishedJob("3f2a9c1b7e4d")
    assert loaded.spec.initial_model == "job:3f2a9c1b7e4d"
    assert load("job:3f2a9c1b7e4d", lambda p: b"", lambda r: {}, kept)["w"].tolist() == [2.0, 3.0]
    with pytest.raises(InitialModelError, match=r"flctl job download 3f2a9c1b7e4d"):
        load("job:3f2a9c1b7e4d", lambda p: b"", lambda r: {})


def test_model_from_sets_initial_model_in_a_copy_and_leaves_the_job_alone(tmp_path: Path):
    """--model-from's job.yml: the top-level initial_model line replaced (or added), comments kept; the job's own
    folder unchanged; an id that cannot name a job refused."""
    # Prepare
    job = inference_job(tmp_path, {"returns": ["count"]})
    before = (job / "job.yml").read_text()
    # Execute
    copy = with_model_from(job, "abc123", tmp_path / "scratch")
    # Assert
    assert set_initial_model("# c\nname: x\n", "job:a") == "# c\nname: x\ninitial_model: job:a\n"
    assert set_initial_model("a: 1\ninitial_model: m.safetensors  # old\nb: 2", "job:a") == \
        "a: 1\ninitial_model: job:a\nb: 2"
    assert load_job(copy).spec.initial_model == "job:abc123"
    assert (job / "job.yml").read_text() == before
    assert (copy / "app" / "train.py").read_text() == (job / "app" / "train.py").read_text()
    with pytest.raises(ValueError, match="does not name a job"):
        with_model_from(job, "no/such", tmp_path / "other")


def test_an_inference_job_in_python_exports_what_job_yml_says(tmp_path: Path):
    """flctl.recipe.InferenceJob: returns and sum as workflow.args, initial_model job:<ID> kept as it is; without a
    model it is refused, naming initial_model."""
    from flctl.recipe import InferenceJob, RecipeInputError

    # Prepare
    script = tmp_path / "src" / "infer.py"
    script.parent.mkdir()
    script.write_text(INFER)
    job = InferenceJob(name="infer-py", script=script, returns=["count", "mean_prediction"], sum=["count"],
                       initial_model="job:3f2a9c1b7e4d", min_sites=1)
    # Execute
    loaded = load_job(job.export(tmp_path / "out"))
    # Assert
    assert loaded.spec.workflow.type == "inference" and loaded.spec.initial_model == "job:3f2a9c1b7e4d"
    assert loaded.args == InferenceArgs(returns=["count", "mean_prediction"], sum=["count"])
    with pytest.raises(RecipeInputError, match="initial_model"):
        InferenceJob(name="x", script=script, returns=["count"]).export(tmp_path / "none")


def run_flctl(*args: str | Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FLCTL, *map(str, args)], capture_output=True, text=True, timeout=timeout, check=False,
                          env={**os.environ, "COLUMNS": "200"})


def load_app_module(monkeypatch: pytest.MonkeyPatch, app: Path, name: str):
    """Import `app/name.py` as the site imports it (its folder on sys.path), without running main()."""
    monkeypatch.syspath_prepend(str(app))
    for sibling in [p.stem for p in app.glob("*.py")]:
        monkeypatch.delitem(__import__("sys").modules, sibling, raising=False)
    return importlib.import_module(name)


def test_hello_pt_inference_simulated_matches_a_direct_computation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """`flctl simulate` of hello-pt-inference with mean_confidence left out of returns: each site's count and
    accuracy equal the CNN run directly on that site's images; predictions.csv is at each site (as the direct
    predictions), and nothing of it, nor mean_confidence, reaches the server's side of the run."""
    pytest.importorskip("torch")
    # Prepare
    job = tmp_path / "hello-pt-inference"
    shutil.copytree(JOBS / "hello-pt-inference", job, ignore=shutil.ignore_patterns("__pycache__"))
    spec = (job / "job.yml").read_text().replace("returns: [count, accuracy, mean_confidence]",
                                                 "returns: [count, accuracy]")
    (job / "job.yml").write_text(spec)
    # Execute
    out = run_flctl("simulate", job, "-n", "2", "--workers", "1", "-w", tmp_path / "ws")
    # Assert
    assert out.returncode == 0, out.stdout + out.stderr
    result = tmp_path / "ws" / "hello-pt-inference"
    report = json.loads((result / "reports" / "inference.json").read_text())
    infer = load_app_module(monkeypatch, job / "app", "infer")
    net = load_app_module(monkeypatch, job / "app", "net")
    params = net.make_model().state_dict()
    for site in ("site-1", "site-2"):
        images, labels = infer.site_images(site)
        predicted, confidence = infer.predict(params, images)
        want = infer.figures(predicted, confidence, labels)
        got = report["sites"][site]
        assert got["metrics"] == {"count": 256.0, "accuracy": pytest.approx(want["accuracy"], abs=1e-9)}
        assert got["num_examples"] == 256
        rows = (result / "sites" / site / "outputs" / "predictions.csv").read_text().splitlines()
        assert len(rows) == 257 and [int(r.split(",")[2]) for r in rows[1:]] == predicted.tolist()
    assert "mean_confidence" not in json.dumps(report)
    assert "mean_confidence" not in (result / "metrics.json").read_text()
    server_side = [p for p in result.rglob("*") if p.is_file() and "sites" not in p.relative_to(result).parts
                   and "app" not in p.relative_to(result).parts]
    assert not any(b"image,label,predicted" in p.read_bytes() for p in server_side)
    assert "inference" in out.stdout and "all sites" in out.stdout


def test_simulate_refuses_a_finished_jobs_model_with_exit_2(tmp_path: Path):
    """initial_model: job:<ID> names a server's job: flctl simulate exits 2 saying to download it; nothing runs."""
    # Prepare
    job = inference_job(tmp_path, {"returns": ["count"]}, "job:3f2a9c1b7e4d")
    # Execute
    out = run_flctl("simulate", job, "-w", tmp_path / "ws")
    # Assert
    assert out.returncode == 2, out.stdout + out.stderr
    assert "initial_model: job:3f2a9c1b7e4d names a finished job on a server" in out.stderr
    assert not (tmp_path / "ws" / "infer").exists()


def test_a_simulated_site_sends_out_only_what_the_job_declares(tmp_path: Path):
    """flctl simulate of a script that answers with an undeclared metric, params and meta and logs an undeclared
    value: the report and metrics.json hold only the declared metrics (exact, from the model as int8 transfer
    delivers it); each site's predictions are in its own sites/<site>/outputs/, and nowhere on the server's side."""
    from flctl.node.wire import quantize

    # Prepare
    job = inference_job(tmp_path, {"returns": ["count", "mean_prediction"], "sum": ["count"]},
                        "model/initial.safetensors")
    (job / "app" / "train.py").write_text(INFER)
    (job / "job.yml").write_text((job / "job.yml").read_text() + "transfer: {quantize: int8}\n")
    w = float(quantize.round_trip(MODEL, "int8", 256)["w"][0])
    # Execute
    out = run_flctl("simulate", job, "-n", "2", "-w", tmp_path / "ws")
    # Assert
    assert out.returncode == 0, out.stdout + out.stderr
    result = tmp_path / "ws" / "infer"
    report = json.loads((result / "reports" / "inference.json").read_text())
    assert w != 2.0  # int8 moved it: the sites ran the model as the transfer delivered it
    want = {site: float(np.mean((np.arange(4.0) + first) * w)) for site, first in (("site-1", 1), ("site-2", 2))}
    assert report["sites"] == {site: {"num_examples": 4, "metrics": {"count": 4.0, "mean_prediction": mean}}
                               for site, mean in want.items()}
    metrics = json.loads((result / "metrics.json").read_text())
    assert sorted({m["name"] for m in metrics}) == ["count", "mean_prediction"]
    assert (result / "sites" / "site-2" / "outputs" / "predictions.txt").read_text().startswith("SECRET-PREDICTIONS ")
    server_side = [p for p in result.rglob("*") if p.is_file() and "sites" not in p.relative_to(result).parts
                   and "app" not in p.relative_to(result).parts]
    assert not any(b"SECRET-PREDICTIONS" in p.read_bytes() for p in server_side)


TRAIN = """
import numpy as np
import flctl.client as fl

fl.init()
while fl.running():
    model = fl.receive()
    fl.send(fl.Model(params={"w": np.full(2, float(fl.site_name()[-1]), np.float32)}, num_examples=1))
"""

INFER = """
import numpy as np
import flctl.client as fl

fl.init()
while fl.running():
    model = fl.receive()
    if model is None:
        break
    assert fl.is_inference()
    data = np.arange(4.0) + float(fl.site_name()[-1])
    predictions = data * float(model.params["w"][0])
    (fl.output_dir() / "predictions.txt").write_text("SECRET-PREDICTIONS " + " ".join(map(str, predictions)))
    fl.log("secret_log", 42.0)
    fl.send(fl.Model(params={"w": model.params["w"]}, metrics={"count": 4, "mean_prediction": predictions.mean(),
                     "secret": 7.0}, num_examples=4, meta={"rows": [1, 2]}))
"""

LEAD = ("lead@other.org", "other", "lead")


def test_a_trained_jobs_model_runs_inference_on_a_real_federation(tmp_path: Path):
    """A FedAvg job's final model (w = 1.5) as the model of an inference job (`job submit --model-from`): each site's
    declared metrics exact; the undeclared metric, logged value, params and meta never reach the server; the
    predictions stay in the site's job workspace and are not in the download, which carries no model. Refused: a job
    the server does not have and a job without a final model (exit 2, naming initial_model), a job the submitter
    may not download (exit 4), an id that names no job (exit 2, before connecting)."""
    # Prepare
    train = workflow_job(tmp_path, "train", "fedavg", {"rounds": 1, "round_timeout_s": 60}, TRAIN)
    infer = workflow_job(tmp_path, "infer", "inference", {"returns": ["count", "mean_prediction"], "sum": ["count"],
                                                         "timeout_s": 60}, INFER)
    with running(make_federation(tmp_path, admins=[ADMIN, LEAD])) as fed, \
            AdminClient.from_kit(fed.admin_kit) as admin:
        kit = ("--kit", fed.admin_kit)
        train_id = admin.submit_job(train)
        list(admin.watch(train_id))
        # Execute
        submitted = run_flctl("job", "submit", infer, "--model-from", train_id, "--watch", "--json", *kit)
        infer_id = json.loads(submitted.stdout)["id"]
        shown = admin.get_job(infer_id).to_json()
        table = run_flctl("job", "show", infer_id, *kit).stdout
        metrics = json.dumps([m.__dict__ for m in admin.job_metrics(infer_id)])
        download = admin.download_job(infer_id, tmp_path / "dl")
        unknown = run_flctl("job", "submit", infer, "--model-from", "nosuchjob", *kit)
        no_final = run_flctl("job", "submit", infer, "--model-from", infer_id, *kit)
        not_theirs = run_flctl("job", "submit", infer, "--model-from", train_id, "--kit", fed.prod / LEAD[0])
        bad_id = run_flctl("job", "submit", infer, "--model-from", "no/such", *kit)
        jobs = admin.list_jobs()
        trained = admin.get_job(train_id)
        logs = fed.logs()
    server_files = [p for p in (fed.kit("localhost") / "workspace").rglob("*") if p.is_file()]  # once it stopped
    # Assert
    assert trained.status == "FINISHED", trained.error + logs
    assert json.loads(submitted.stdout)["status"] == "FINISHED", submitted.stdout + submitted.stderr + logs
    report = shown["reports"]["inference"]
    assert report["sites"] == {"site-1": {"num_examples": 4, "metrics": {"count": 4.0, "mean_prediction": 3.75}},
                               "site-2": {"num_examples": 4, "metrics": {"count": 4.0, "mean_prediction": 5.25}}}
    assert report["all_sites"] == {"count": 8.0, "mean_prediction": 4.5}
    assert "all sites" in table and "mean_prediction" in table
    assert "secret" not in metrics and "secret" not in json.dumps(shown), metrics
    outputs = fed.kit("site-1") / "workspace" / "jobs" / infer_id / "job" / "outputs" / "predictions.txt"
    assert outputs.read_text() == "SECRET-PREDICTIONS 1.5 3.0 4.5 6.0"
    assert not any(b"SECRET-PREDICTIONS" in p.read_bytes() for p in server_files)
    assert not any(b"SECRET-PREDICTIONS" in p.read_bytes() for p in download.rglob("*") if p.is_file())
    assert not list(download.rglob("*.safetensors"))
    assert unknown.returncode == 2 and "initial_model: no job nosuchjob" in unknown.stderr, unknown.stderr
    assert no_final.returncode == 2 and f"job {infer_id} has no final model" in no_final.stderr, no_final.stderr
    assert not_theirs.returncode == 4 and f"not permitted to use job {train_id}'s model" in not_theirs.stderr
    assert bad_id.returncode == 2 and "--model-from" in bad_id.stderr
    assert len(jobs) == 2  # the refused submissions left nothing
