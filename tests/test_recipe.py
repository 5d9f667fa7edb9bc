"""The Recipe API (`flctl.recipe`): a job built in Python runs in the simulator and in a real local federation with
the same final model, exports the folder `flctl job submit` takes, and refuses bad input with one sentence."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from flctl.node.jobs.job_spec import load_job
from flctl.node.workflows import WORKFLOWS
from flctl.recipe import (
    CrossSiteEvalJob,
    CyclicJob,
    EnvironmentUnavailable,
    FedAvgJob,
    FedAvgMJob,
    FedOptJob,
    Job,
    LocalEnv,
    ProdEnv,
    RecipeInputError,
    ScaffoldJob,
    SimEnv,
    SwarmJob,
)
from tests.federation import make_federation, running

DETERMINISTIC = """
import flctl.client as fl

fl.init()
step = float(fl.site_name().split("-")[1])
while fl.running():
    model = fl.receive()
    params = {name: value * 0.5 + step for name, value in model.params.items()}
    fl.send(fl.Model(params=params, metrics={"mean": float(next(iter(params.values())).mean())},
                     num_examples=int(step)))
"""
"""Each site halves the model and adds its number; answers are weighted by that number: deterministic."""


@pytest.fixture
def script(tmp_path: Path) -> Path:
    app = tmp_path / "src"
    app.mkdir()
    (app / "train.py").write_text(DETERMINISTIC)
    return app / "train.py"


def _expected(initial: np.ndarray, rounds: int) -> np.ndarray:
    """FedAvg over site-1 (weight 1) and site-2 (weight 2): each round w -> w/2 + (1*1 + 2*2)/3."""
    w = initial.astype(np.float64)
    for _ in range(rounds):
        w = w * 0.5 + 5 / 3
    return w


def test_simenv_and_localenv_give_the_same_final_model(tmp_path: Path, script: Path) -> None:
    """One FedAvgJob with an initial model: the simulator and a real local federation (prepared and started by
    LocalEnv) end with the same model, the one the formula gives; the exported folder submitted with
    `flctl job submit` does too."""
    initial = {"w": np.arange(4, dtype=np.float32)}
    job = FedAvgJob(name="recipe-same", script=script, rounds=3, min_sites=2, round_timeout_s=60,
                    initial_model=initial)
    simulated = job.run(SimEnv(sites=2, workers=1, workspace=tmp_path / "sim"))
    assert simulated.wait() == "FINISHED", simulated.error
    env = LocalEnv(sites=2, workspace=tmp_path / "poc")
    try:
        run = job.run(env)
        assert run.wait(timeout_s=120) == "FINISHED"
        local_model = run.model()
        assert [m for m in run.metrics() if m["round"] == 2 and m["name"] == "mean"]
        downloaded = run.download(tmp_path / "out")
        cli = subprocess.run([str(Path(sys.executable).parent / "flctl"), "job", "submit",
                              job.export(tmp_path / "exported"), "--watch", "--json"],
                             capture_output=True, text=True, timeout=120, check=False,
                             env={k: v for k, v in os.environ.items() if k not in ("FLCTL_KIT", "FLCTL_POC_WORKSPACE")})
    finally:
        env.stop()
    assert cli.returncode == 0, cli.stderr  # the remembered local federation: no kit, no FLCTL_POC_WORKSPACE
    np.testing.assert_allclose(simulated.model()["w"], _expected(initial["w"], 3), rtol=1e-6)
    np.testing.assert_array_equal(local_model["w"], simulated.model()["w"])
    assert (downloaded / "models" / "final.safetensors").is_file()


def test_prodenv_runs_on_a_provisioned_federation_with_an_admin_kit(tmp_path: Path, script: Path) -> None:
    """ProdEnv(kit=...) submits through that admin's kit; status, wait and model go through the admin client."""
    job = CyclicJob(name="recipe-prod", script=script, rounds=1, min_sites=2, initial_model={"w": np.zeros(2)})
    with running(make_federation(tmp_path)) as fed:
        run = job.run(ProdEnv(kit=fed.admin_kit))
        assert run.wait(timeout_s=60) == "FINISHED"
        assert run.info().workflow == "cyclic"
        model = run.model()
    assert model["w"].shape == (2,)


def test_export_writes_the_folder_flctl_job_submit_takes(tmp_path: Path, script: Path) -> None:
    """job.yml, app/ (the script's folder) and the initial model, checked by load_job as `flctl job submit` is."""
    (script.parent / "__pycache__").mkdir()
    (script.parent / "__pycache__" / "x.pyc").write_bytes(b"junk")
    job = FedOptJob(name="exported", script=script, rounds=2, optimizer="yogi", min_sites=2,
                    script_args=["--lr", "0.1"], initial_model={"w": np.ones(3)}, env={"SEED": "1"})
    folder = job.export(tmp_path / "job")
    loaded = load_job(folder)
    assert loaded.spec.workflow.type == "fedopt"
    assert loaded.spec.workflow.args == {"rounds": 2, "optimizer": "yogi"}
    assert loaded.spec.app.command == ["python", "train.py", "--lr", "0.1"]
    assert loaded.spec.app.env == {"SEED": "1"}
    assert loaded.spec.initial_model == "model/initial.safetensors"
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) == [
        "app/train.py", "job.yml", "model/initial.safetensors"]
    assert yaml.safe_load((folder / "job.yml").read_text())["min_sites"] == 2
    as_string = FedAvgJob(name="x", script=script, rounds=1, script_args="--lr 0.1 --note 'two words'")
    assert as_string.spec["app"]["command"] == ["python", "train.py", "--lr", "0.1", "--note", "two words"]


@pytest.mark.parametrize("cls", [FedAvgJob, FedAvgMJob, FedOptJob, ScaffoldJob, CyclicJob, SwarmJob])
def test_one_class_per_round_based_workflow(tmp_path: Path, script: Path, cls: type[Job]) -> None:
    """Each class runs its own workflow (rounds=2) in the simulator, to the end; SCAFFOLD's own check refuses this
    plain script (it sends no control variate), which shows that workflow ran."""
    run = cls(name=f"each-{cls.workflow}", script=script, rounds=2, min_sites=2,
              initial_model={"w": np.zeros(2, dtype=np.float32)}).run(SimEnv(sites=2, workers=1,
                                                                             workspace=tmp_path))
    if cls is ScaffoldJob:
        assert run.status() == "FAILED"
        assert "it sent no control-variate update" in run.error
        return
    assert run.status() == "FINISHED", run.error
    assert run.model()["w"].shape == (2,)


def test_every_registered_workflow_has_a_class() -> None:
    """The classes cover the registry (a new workflow is usable as Job(workflow=...) and gets its class here)."""
    classes = {FedAvgJob, FedAvgMJob, FedOptJob, ScaffoldJob, CyclicJob, SwarmJob, CrossSiteEvalJob}
    assert {cls.workflow for cls in classes} <= set(WORKFLOWS)
    assert {"fedavg", "fedavgm", "fedopt", "scaffold", "cyclic", "swarm", "cross_site_eval"} <= {
        cls.workflow for cls in classes}


def test_a_missing_script_is_named(tmp_path: Path) -> None:
    with pytest.raises(RecipeInputError, match=r"FedAvgJob: the script .*nope\.py does not exist"):
        FedAvgJob(name="x", script=tmp_path / "nope.py", rounds=1)


def test_an_unknown_workflow_argument_lists_the_allowed_ones(script: Path) -> None:
    with pytest.raises(RecipeInputError, match=r"FedAvgJob: roundz: unknown key 'roundz'; allowed here: rounds, "
                                               r"round_timeout_s"):
        FedAvgJob(name="x", script=script, rounds=1, roundz=3)


def test_a_bad_value_names_the_field_and_what_is_allowed(script: Path) -> None:
    with pytest.raises(RecipeInputError, match=r"CyclicJob: rounds: 0 is too small; use 1 or more"):
        CyclicJob(name="x", script=script, rounds=0)
    with pytest.raises(RecipeInputError, match=r"FedAvgJob: name: 'a b' is not a valid job name"):
        FedAvgJob(name="a b", script=script, rounds=1)
    with pytest.raises(RecipeInputError, match=r"initial_model: a int is not a model"):
        FedAvgJob(name="x", script=script, rounds=1, initial_model=3)


def test_export_refuses_a_folder_that_is_not_empty(tmp_path: Path, script: Path) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(RecipeInputError, match="exists and is not an empty folder"):
        FedAvgJob(name="x", script=script, rounds=1).export(tmp_path / "full")
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["keep.txt"]


def test_prodenv_without_a_kit_says_so(tmp_path: Path, script: Path) -> None:
    """No kit at the path: EnvironmentUnavailable, exit code 2."""
    with pytest.raises(EnvironmentUnavailable, match=r"no admin startup kit at .*missing-kit") as caught:
        FedAvgJob(name="x", script=script, rounds=1).run(ProdEnv(kit=tmp_path / "missing-kit"))
    assert caught.value.exit_code == 2


def test_prodenv_with_the_server_down_says_so(tmp_path: Path, script: Path) -> None:
    """A valid kit whose server is not running: EnvironmentUnavailable, exit code 3, naming the address."""
    fed = make_federation(tmp_path)
    refused = rf"cannot reach the server at localhost:{fed.port}; is it running"
    with pytest.raises(EnvironmentUnavailable, match=refused) as caught:
        FedAvgJob(name="x", script=script, rounds=1).run(ProdEnv(kit=fed.admin_kit, timeout_s=5))
    assert caught.value.exit_code == 3


def test_a_recipe_script_without_a_main_guard_runs_once(tmp_path: Path, script: Path) -> None:
    """`python recipe.py` calling SimEnv at the top level: the simulator's workers do not run the script again."""
    recipe = tmp_path / "recipe.py"
    recipe.write_text("from flctl.recipe import FedAvgJob, SimEnv\n"
                      f"run = FedAvgJob(name='guardless', script={str(script)!r}, rounds=1, min_sites=2,\n"
                      "                initial_model={'w': [0.0]}).run(SimEnv(sites=2, workers=2, "
                      f"workspace={str(tmp_path / 'ws')!r}))\n"
                      "print('ran', run.status())\n")
    done = subprocess.run([sys.executable, str(recipe)], capture_output=True, text=True, timeout=120, check=False,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "ran FINISHED\n"


@pytest.mark.parametrize(("body", "code", "said"), [
    ("FedAvgJob(name='x', script=SCRIPT, rounds=1, roundz=2)", 2, "error: FedAvgJob: roundz: unknown key 'roundz'"),
    ("FedAvgJob(name='x', script='missing.py', rounds=1)", 2, "error: FedAvgJob: the script "),
    ("FedAvgJob(name='x', script=SCRIPT, rounds=1).run(ProdEnv(kit=KIT, timeout_s=5))", 3,
     "error: cannot reach the server at localhost:"),
])
def test_python_m_flctl_recipe_ends_as_flctl_commands_do(tmp_path: Path, script: Path, body: str, code: int,
                                                         said: str) -> None:
    """A recipe run with `python -m flctl.recipe` ends with one line and DESIGN.md's exit code, no traceback."""
    fed = make_federation(tmp_path)  # its kit; its server is not started
    recipe = tmp_path / "recipe.py"
    recipe.write_text(f"from flctl.recipe import FedAvgJob, ProdEnv\nSCRIPT = {str(script)!r}\n"
                      f"KIT = {str(fed.admin_kit)!r}\n{body}\n")
    done = subprocess.run([sys.executable, "-m", "flctl.recipe", str(recipe)], capture_output=True, text=True,
                          timeout=60, check=False, cwd=tmp_path)
    assert done.returncode == code, done.stderr
    assert done.stderr.startswith(said)
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_initial_model_as_a_torch_module_a_file_or_a_function(tmp_path: Path, script: Path) -> None:
    """A torch module's state_dict, a .safetensors file and "app/net.py:make_model" all seed round 0 alike."""
    torch = pytest.importorskip("torch", reason="needs torch: bash scripts/setup.sh --all")
    from flctl.node.wire import tensors

    module = torch.nn.Linear(2, 1)
    with torch.no_grad():
        module.weight.copy_(torch.tensor([[1.0, 2.0]]))
        module.bias.fill_(3.0)
    tensors.write_file(tmp_path / "start.safetensors", {"weight": np.array([[1.0, 2.0]], dtype=np.float32),
                                                         "bias": np.array([3.0], dtype=np.float32)})
    (script.parent / "net.py").write_text("import numpy as np\n\ndef make_model():\n    return {'weight': "
                                          "np.array([[1.0, 2.0]], dtype=np.float32), 'bias': np.array([3.0], "
                                          "dtype=np.float32)}\n")
    finals = []
    for given in (module, tmp_path / "start.safetensors", "app/net.py:make_model"):
        run = FedAvgJob(name="seeded", script=script, rounds=1, min_sites=2, initial_model=given).run(
            SimEnv(sites=2, workers=1, workspace=tmp_path / "ws"))
        assert run.status() == "FINISHED", run.error
        finals.append(run.model())
    for final in finals:
        np.testing.assert_allclose(final["weight"], [[1.0 * 0.5 + 5 / 3, 2.0 * 0.5 + 5 / 3]], rtol=1e-6)
        np.testing.assert_allclose(final["bias"], [3.0 * 0.5 + 5 / 3], rtol=1e-6)


def test_localenv_refuses_a_federation_with_too_few_sites(tmp_path: Path, script: Path) -> None:
    """A local federation prepared with 1 site cannot run LocalEnv(sites=2): said before anything starts."""
    from flctl.cloud.local import prepare

    prepare(tmp_path / "poc", 1)
    with pytest.raises(RecipeInputError, match=r"has 1 sites, not 2; ask for fewer, or remove it"):
        FedAvgJob(name="x", script=script, rounds=1).run(LocalEnv(sites=2, workspace=tmp_path / "poc"))
    assert not (tmp_path / "poc" / "run").exists()
