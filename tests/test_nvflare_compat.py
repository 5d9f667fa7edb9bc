"""NVIDIA FLARE client scripts run as they are (job.yml `app: {compat: nvflare}`): in the simulator, on a real
federation, and never for a job that does not ask (nothing named `nvflare` is installed by flctl)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from flctl.node.admin.admin_client import AdminClient

from .federation import FLCTL, make_federation
from .nvflare_scripts import CIFAR10_STYLE, HELLO_PT, NET, nvflare_job

torch = pytest.importorskip("torch")

COMPAT_DIR = Path(__file__).resolve().parent.parent / "node" / "client" / "compat" / "nvflare_api"


def simulate(job: Path, workspace: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FLCTL, "simulate", str(job), "-n", "2", "-w", str(workspace)], capture_output=True,
                          text=True, timeout=180, check=False)


def test_hello_pt_runs_unchanged_in_the_simulator_and_its_model_loads_back(tmp_path: Path) -> None:
    """hello-pt's client: torch tensors in, state_dict out, SummaryWriter scalars recorded with their steps; the
    final model's names are the network's state_dict keys and `fl.load_model(path, into=net)` loads it."""
    import flctl.client as fl

    # Prepare
    job = nvflare_job(tmp_path, "hello-pt", HELLO_PT, "{type: fedavg, args: {rounds: 2}}")
    # Execute
    out = simulate(job, tmp_path / "ws")
    # Assert
    assert out.returncode == 0, out.stdout + out.stderr
    result = tmp_path / "ws" / "hello-pt"
    log = (result / "logs" / "site-1.log").read_text()
    assert f"compat=True module={COMPAT_DIR / 'nvflare' / '__init__.py'}" in log
    assert "site=site-1 current_round=1 total_rounds=2 tensor=Tensor" in log
    assert "compat nvflare: flctl's nvflare compatibility module" in (result / "logs" / "server.log").read_text()
    metrics = json.loads((result / "metrics.json").read_text())
    steps = sorted(m["step"] for m in metrics if m["site"] == "site-2" and m["name"] == "loss_for_each_batch")
    assert steps == [0, 1, 2, 3]
    namespace: dict[str, object] = {}
    exec(NET, namespace)
    net = namespace["SimpleNetwork"]()  # type: ignore[operator]
    loaded = fl.load_model(result / "models" / "final.safetensors", into=net)
    assert set(loaded) == set(net.state_dict())
    assert all(torch.equal(net.state_dict()[k], loaded[k]) for k in loaded)


SHOW_MODULE = """
import nvflare, nvflare.client as flare
flare.init()
print("nvflare from", nvflare.__file__, getattr(nvflare, "FLCTL_COMPAT", False))
while flare.is_running():
    model = flare.receive()
    flare.send(flare.FLModel(params=model.params))
"""


def _fake_nvflare(root: Path) -> Path:
    """A folder holding an 'installed' NVIDIA FLARE 9.9 (a package and its dist-info), to put on a site's path."""
    (root / "nvflare" / "client").mkdir(parents=True)
    (root / "nvflare" / "__init__.py").write_text("REAL = True\n")
    (root / "nvflare" / "client" / "__init__.py").write_text("raise ImportError('the real nvflare was imported')\n")
    info = root / "nvflare-9.9.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: nvflare\nVersion: 9.9\n")
    return root


def test_a_cifar10_style_script_runs_on_a_real_federation_over_an_installed_nvflare(tmp_path: Path) -> None:
    """On a real federation with an 'installed' NVIDIA FLARE at site-1: train / validate / submit_model tasks (FedAvg
    with evaluation and cross-site evaluation) run the script unchanged with flctl's module, the site's log says
    so, `job show` says so; a job without compat cannot import nvflare; an unknown compat is refused at submit."""
    # Prepare
    (tmp_path / "fed").mkdir()
    fed = make_federation(tmp_path / "fed")
    installed = _fake_nvflare(tmp_path / "site-packages")
    cifar = nvflare_job(tmp_path, "cifar10", CIFAR10_STYLE,
                        "{type: fedavg, args: {rounds: 2, evaluate_every: 1, cross_site_eval: true}}")
    plain = nvflare_job(tmp_path, "plain", SHOW_MODULE, "{type: fedavg, args: {rounds: 1}}", compat="null")
    unknown = nvflare_job(tmp_path, "unknown", SHOW_MODULE, "{type: fedavg, args: {rounds: 1}}", compat="flower")
    try:
        fed.start("localhost")
        fed.start("site-1", env={"PYTHONPATH": str(installed)})
        fed.start("site-2")
        fed.wait_online(fed.sites)
        # Execute
        refused = fed.flctl("job", "submit", unknown)
        with AdminClient.from_kit(fed.admin_kit) as admin:
            job_id = admin.submit_job(cifar)
            list(admin.watch(job_id))
            info = admin.get_job(job_id)
            logs = "\n".join(entry.line for entry in admin.logs(job_id, "site-1"))
            plain_id = admin.submit_job(plain)
            list(admin.watch(plain_id))
            plain_info = admin.get_job(plain_id)
            plain_logs = "\n".join(entry.line for entry in admin.logs(plain_id, "site-2"))
        shown = fed.flctl("job", "show", job_id)
    finally:
        fed.stop_all()
    # Assert
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "app.compat" in refused.stderr and "'flower' is not allowed; use 'nvflare'" in refused.stderr
    assert info.status == "FINISHED", info.error + fed.logs()
    assert info.compat == "nvflare"
    assert "compat nvflare at site-1: flctl's nvflare compatibility module" in logs
    assert "the nvflare 9.9 installed here is not used by this job" in logs
    assert "task=submit_model" in logs and "task=validate" in logs
    matrix = info.reports["cross_site_eval"]["metrics"]
    assert set(matrix["site-1"]) == {"global", "site-1", "site-2"}
    assert "accuracy" in matrix["site-2"]["site-1"]
    assert "compat" in shown.stdout and "nvflare" in shown.stdout, shown.stdout + shown.stderr
    assert plain_info.status == "FAILED"
    assert "No module named 'nvflare'" in plain_info.error + plain_logs


def test_flmodel_keeps_nvidia_flares_rules() -> None:
    """ParamsType is a str enum; params_type without params, a non-dict meta or a negative round are refused."""
    from flctl.node.client.compat.nvflare_api.nvflare.app_common.abstract.fl_model import FLModel, ParamsType

    assert FLModel(params={"w": 1}).params_type == "FULL" == ParamsType.FULL
    assert FLModel(metrics={"a": 1.0}).params_type is None
    with pytest.raises(ValueError, match="params must be given with params_type DIFF"):
        FLModel(params_type="DIFF")
    with pytest.raises(TypeError, match="meta must be a dict"):
        FLModel(params={}, meta=[])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="current_round must be a non-negative int"):
        FLModel(current_round=-1)


API_SCRIPT = """
import warnings
import numpy as np
import nvflare.client as flare
from nvflare.client.tracking import MLflowWriter, SummaryWriter

flare.init()
print("config", flare.get_config()["TASK_EXCHANGE"]["exchange_format"], flare.system_info())
try:
    flare.send({"w": 1})
except TypeError as exc:
    print("refused:", exc)
while flare.is_running():
    model = flare.receive()
    assert flare.receive() is model, "the same FLModel until it is answered"
    print("task", flare.get_task_name(), model.current_round, model.total_rounds, type(model.params["w"]).__name__)
    SummaryWriter().add_scalars("curve", {"a": 1.0, "b": 2.0}, global_step=3)
    MLflowWriter().log_metric("lr", 0.5, step=1)
    MLflowWriter().set_tag("note", "dropped")
    flare.log("acc", 0.75, flare.AnalyticsDataType.METRIC)
    flare.send(flare.FLModel(params_type=flare.ParamsType.DIFF, params={"w": model.params["w"] * 0 + 1},
                             metrics={"acc": 0.75, "name": "not a number"},
                             meta={"NUM_STEPS_CURRENT_ROUND": 7, "note": "kept", "obj": object()}))
"""


def test_the_nvflare_client_api_maps_onto_flctls_task_loop(tmp_path: Path) -> None:
    """Through a real site's script bridge: get_config/system_info, send refusing a non-FLModel, receive cached until
    send, DIFF -> diff, NUM_STEPS_CURRENT_ROUND -> num_examples, non-JSON meta and non-number metrics left out,
    tracking writers recorded as metrics (tags dropped), numpy params with framework numpy."""
    import numpy as np

    from flctl.node.client.script_bridge import ScriptBridge
    from flctl.node.jobs.tasks import Task, TaskKind

    # Prepare
    (tmp_path / "client.py").write_text(API_SCRIPT)
    output: list[str] = []
    metrics: list[tuple[str, float, int | None]] = []
    bridge = ScriptBridge(workdir=tmp_path, command=["python", "client.py"], env={}, site="site-a", job_id="job-9",
                          on_output=output.append, on_metric=lambda *m: metrics.append(m), compat="nvflare")
    bridge.start()
    try:
        # Execute
        answer = bridge.run_task(Task(TaskKind.TRAIN, 2, {"w": np.zeros(3, np.float32)}, {"rounds": 5}),
                                 timeout_s=60)
        code = bridge.finish()
    finally:
        bridge.kill()
    # Assert
    assert code == 0, output
    assert "config numpy {'job_id': 'job-9', 'site_name': 'site-a'}" in output
    assert "refused: flare.send() takes an FLModel, not dict" in output
    assert "task train 2 5 ndarray" in output
    assert answer.num_examples == 7 and answer.metrics == {"acc": 0.75}
    assert answer.meta == {"note": "kept", "params_type": "diff"}
    assert np.array_equal(answer.params["w"], np.ones(3, np.float32))
    assert metrics == [("curve/a", 1.0, 3), ("curve/b", 2.0, 3), ("lr", 0.5, 1), ("acc", 0.75, None)]
    assert any("not a number" in line and "left out" in line for line in output), output
