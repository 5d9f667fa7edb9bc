"""`flctl job import`: NVIDIA FLARE job folders (a FedJob/ScriptRunner export, a job template with the in-process
executor, a cyclic job) become flctl jobs that run; what does not map is named, one line each; what cannot map at
all is refused with exit code 2."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from flctl.node.errors import JobError
from flctl.node.jobs.nvflare_import import convert
from flctl.node.jobs.nvflare_job import read_job

from .federation import FLCTL
from .nvflare_scripts import CIFAR10_STYLE, HELLO_PT, NET

PERSISTOR = {"id": "persistor", "path": "nvflare.app_opt.pt.file_model_persistor.PTFileModelPersistor",
             "args": {"model": {"path": "net.SimpleNetwork", "args": {}}}}


def _write(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))


def _custom(app: Path, script: str) -> None:
    (app / "custom").mkdir(parents=True, exist_ok=True)
    (app / "custom" / "client.py").write_text(script)
    (app / "custom" / "net.py").write_text(NET)


def exported_job(root: Path) -> Path:
    """A job as NVIDIA FLARE's FedJob exports a ScriptRunner (external process) FedAvg with cross-site evaluation:
    one server app and one identical app per site."""
    job = root / "nvflare-cifar10"
    _write(job / "meta.json", {"name": "cifar10 fedavg", "resource_spec": {}, "min_clients": 2,
                               "deploy_map": {"app_server": ["server"], "app_site-1": ["site-1"],
                                              "app_site-2": ["site-2"]}})
    _write(job / "app_server" / "config" / "config_fed_server.json", {
        "format_version": 2,
        "workflows": [
            {"id": "controller", "path": "nvflare.app_common.workflows.fedavg.FedAvg",
             "args": {"num_clients": 2, "num_rounds": 2, "persistor_id": "persistor"}},
            {"id": "cross_site_validate", "path": "nvflare.app_common.workflows.cross_site_model_eval."
             "CrossSiteModelEval", "args": {"model_locator_id": "model_locator", "validation_timeout": 600}}],
        "components": [
            PERSISTOR,
            {"id": "model_selector", "path": "nvflare.app_common.widgets.intime_model_selector.IntimeModelSelector",
             "args": {"key_metric": "accuracy"}},
            {"id": "receiver", "path": "nvflare.app_opt.tracking.tb.tb_receiver.TBAnalyticsReceiver",
             "args": {"events": ["fed.analytix_log_stats"]}},
            {"id": "model_locator", "path": "nvflare.app_opt.pt.file_model_locator.PTFileModelLocator",
             "args": {"pt_persistor_id": "persistor"}}],
        "task_data_filters": [], "task_result_filters": []})
    for site in ("site-1", "site-2"):
        app = job / f"app_{site}"
        _write(app / "config" / "config_fed_client.json", {
            "format_version": 2,
            "executors": [{"tasks": ["*"], "executor": {
                "path": "nvflare.app_common.executors.client_api_launcher_executor.ClientAPILauncherExecutor",
                "args": {"launcher_id": "launcher", "pipe_id": "pipe", "params_exchange_format": "pytorch",
                         "params_transfer_type": "DIFF", "train_with_evaluation": True}}}],
            "components": [
                {"id": "launcher", "path": "nvflare.app_common.launchers.subprocess_launcher.SubprocessLauncher",
                 "args": {"script": "python3 -u custom/client.py --epochs 2", "launch_once": True}},
                {"id": "pipe", "path": "nvflare.fuel.utils.pipe.cell_pipe.CellPipe", "args": {}},
                {"id": "metric_relay", "path": "nvflare.app_common.widgets.metric_relay.MetricRelay", "args": {}}],
            "task_data_filters": [], "task_result_filters": []})
        _custom(app, CIFAR10_STYLE)
    return job


def template_job(root: Path, workflow: dict[str, Any], executor: dict[str, Any], name: str = "sag") -> Path:
    """A job as NVIDIA FLARE's job templates write one: a single `app` for every site, `{app_script}` filled from
    the client config's own keys, meta as a JSON meta.conf."""
    job = root / name
    (job / "meta.conf").parent.mkdir(parents=True, exist_ok=True)
    (job / "meta.conf").write_text(json.dumps({"name": name, "deploy_map": {"app": ["@ALL"]}, "min_clients": 2}))
    _write(job / "app" / "config" / "config_fed_server.json", {
        "format_version": 2, "workflows": [workflow],
        "components": [PERSISTOR, {"id": "aggregator", "path": "nvflare.app_common.aggregators."
                                   "intime_accumulate_model_aggregator.InTimeAccumulateWeightedAggregator",
                                   "args": {"expected_data_kind": "WEIGHTS"}}]})
    _write(job / "app" / "config" / "config_fed_client.json", {
        "format_version": 2, "app_script": "client.py", "app_config": "",
        "executors": [{"tasks": ["train"], "executor": executor}], "components": []})
    _custom(job / "app", HELLO_PT)
    return job


SAG = {"id": "scatter_and_gather", "path": "nvflare.app_common.workflows.scatter_and_gather.ScatterAndGather",
       "args": {"min_clients": 2, "num_rounds": 3, "wait_time_after_min_received": 10, "aggregator_id": "aggregator",
                "persistor_id": "persistor", "shareable_generator_id": "shareable_generator",
                "train_task_name": "train", "train_timeout": 120}}
IN_PROCESS = {"path": "nvflare.app_opt.pt.in_process_client_api_executor.PTInProcessClientAPIExecutor",
              "args": {"task_script_path": "{app_script}", "task_script_args": "{app_config}",
                       "params_exchange_format": "pytorch", "params_transfer_type": "FULL"}}


def job_import(source: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FLCTL, "job", "import", str(source), "-o", str(out), "--json"], capture_output=True,
                          text=True, timeout=60, check=False)


def test_an_exported_fedavg_with_cross_site_eval_imports_and_runs_in_the_simulator(tmp_path: Path) -> None:
    """FedAvg + CrossSiteModelEval, the ScriptRunner launcher and the persistor's model map; the model selector and
    nothing else is named as not mapped; the imported job runs unchanged to its cross-site matrix."""
    pytest.importorskip("torch")
    # Execute
    out = job_import(exported_job(tmp_path), tmp_path / "flctl-job")
    # Assert
    assert out.returncode == 0, out.stdout + out.stderr
    result = json.loads(out.stdout)
    assert result["job"] == {
        "api_version": 1, "name": "cifar10-fedavg", "workflow": {"type": "fedavg", "args": {
            "rounds": 2, "cross_site_eval": True}}, "sites": ["site-1", "site-2"], "min_sites": 2,
        "app": {"command": ["python", "client.py", "--epochs", "2"], "framework": "pytorch", "compat": "nvflare"},
        "metrics": {"tensorboard": True}, "initial_model": "app/flctl_initial_model.py:make_model"}
    assert result["not_mapped"] == ["component 'model_selector' (IntimeModelSelector): flctl keeps the final global "
                                    "model, not the best by 'accuracy'"]
    assert "IntimeModelSelector" in (tmp_path / "flctl-job" / "job.yml").read_text()  # said in job.yml too
    run = subprocess.run([FLCTL, "simulate", str(tmp_path / "flctl-job"), "-n", "2", "-w", str(tmp_path / "ws")],
                         capture_output=True, text=True, timeout=180, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    matrix = json.loads((tmp_path / "ws" / "cifar10-fedavg" / "reports" / "cross_site_eval.json").read_text())
    assert set(matrix["metrics"]["site-1"]) == {"global", "site-1", "site-2"}


def test_a_template_job_with_the_in_process_executor_maps_scatter_and_gather(tmp_path: Path) -> None:
    """ScatterAndGather's rounds, min_clients and train_timeout map; {app_script} is filled; the wait after
    min_clients, which flctl does not have, is named."""
    # Execute
    conversion = convert(read_job(template_job(tmp_path, SAG, IN_PROCESS)))
    # Assert
    assert conversion.job["workflow"] == {"type": "fedavg", "args": {"rounds": 3, "round_timeout_s": 120.0}}
    assert conversion.job["sites"] == "all" and conversion.job["min_sites"] == 2
    assert conversion.job["app"]["command"] == ["python", "client.py"]
    assert conversion.unmapped == ["workflow 'scatter_and_gather' wait_time_after_min_received 10: flctl waits for "
                                   "every site of the round (up to round_timeout_s), then goes on with min_sites"]


def test_a_cyclic_job_maps_its_order_and_names_its_timeout(tmp_path: Path) -> None:
    """CyclicController: rounds and order map; task_assignment_timeout is named."""
    cyclic = {"id": "cyclic", "path": "nvflare.app_common.workflows.cyclic_ctl.CyclicController",
              "args": {"num_rounds": 4, "order": "RANDOM_WITHOUT_SAME_IN_A_ROW", "task_assignment_timeout": 10,
                       "persistor_id": "persistor", "shareable_generator_id": "shareable_generator"}}
    conversion = convert(read_job(template_job(tmp_path, cyclic, IN_PROCESS, "cyclic")))
    assert conversion.job["workflow"] == {"type": "cyclic", "args": {"rounds": 4,
                                                                     "order": "random_without_same_in_a_row"}}
    assert len(conversion.unmapped) == 1 and "task_assignment_timeout 10" in conversion.unmapped[0]


@pytest.mark.parametrize(("change", "message"), [
    ("hocon", "config_fed_server.conf: is HOCON, which flctl does not read"),
    ("workflow", "no workflow flctl can map (found: my.Controller)"),
    ("executor", "executor cifar10trainer.Cifar10Trainer takes 'train' and is not a Client API executor"),
])
def test_what_cannot_map_is_refused_with_exit_code_2(tmp_path: Path, change: str, message: str) -> None:
    """A HOCON config, a workflow flctl does not have, a trainer executor instead of a script: exit 2, named; nothing
    is written."""
    # Prepare
    job = template_job(tmp_path, SAG, IN_PROCESS)
    server = job / "app" / "config" / "config_fed_server.json"
    if change == "hocon":
        server.rename(server.with_suffix(".conf"))
        server.with_suffix(".conf").write_text("format_version = 2\nworkflows = []\n")
    elif change == "workflow":
        _write(server, {"workflows": [{"id": "ctl", "path": "my.Controller", "args": {}}]})
    else:
        _write(job / "app" / "config" / "config_fed_client.json", {"executors": [{"tasks": ["train"], "executor": {
            "path": "cifar10trainer.Cifar10Trainer", "args": {"lr": 0.01}}}]})
    # Execute
    out = job_import(job, tmp_path / "out")
    # Assert
    assert out.returncode == 2, out.stdout + out.stderr
    assert message in out.stderr
    assert not (tmp_path / "out").exists()
    with pytest.raises(JobError):
        convert(read_job(job))
