"""job.yml's `initial_model`: round 0 sends every site the model it names, a file of the job or a function of the
app called once, confined, at the server (and in the simulator)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from flctl.node.errors import JobError
from flctl.node.jobs.job_spec import load_job
from flctl.node.simulator.runtime import simulate
from flctl.node.site import sandbox
from flctl.node.wire import tensors
from tests.federation import make_federation, running

ADD_ONE = ("import flctl.client as fl\nfl.init()\nwhile fl.running():\n    m = fl.receive()\n"
           "    fl.send(fl.Model(params={k: v + 1 for k, v in m.params.items()}, num_examples=1))\n")
"""Each site adds 1 to every weight it is sent: after R rounds the final model is the initial one + R."""
NET = "import numpy as np\n\ndef make_model():\n    return {'w': np.arange(4, dtype=np.float32)}\n"


def _job(root: Path, initial: str, rounds: int = 2, net: str = NET) -> Path:
    folder = root / "job"
    (folder / "app").mkdir(parents=True)
    (folder / "app" / "train.py").write_text(ADD_ONE)
    (folder / "app" / "net.py").write_text(net)
    (folder / "job.yml").write_text(f"api_version: 1\nname: init\nworkflow: {{type: fedavg, args: {{rounds: {rounds}, "
                                    f"round_timeout_s: 30}}}}\nmin_sites: 2\ninitial_model: {initial}\n")
    return folder


def _final(job_dir: Path) -> dict[str, np.ndarray]:
    return tensors.read_file(job_dir / "models" / "final.safetensors")


def test_a_function_of_the_app_seeds_round_zero_in_the_simulator(tmp_path: Path) -> None:
    """app/net.py:make_model is called once; two rounds of +1 give arange(4) + 2."""
    result = simulate(load_job(_job(tmp_path, "app/net.py:make_model")), ["site-1", "site-2"], tmp_path / "ws", 1)
    assert result.status == "FINISHED", result.error
    np.testing.assert_array_equal(_final(result.job_dir)["w"], np.arange(4, dtype=np.float32) + 2)


def test_a_safetensors_file_of_the_job_seeds_round_zero(tmp_path: Path) -> None:
    """model/initial.safetensors is sent in round 0."""
    folder = _job(tmp_path, "model/initial.safetensors", rounds=1)
    (folder / "model").mkdir()
    tensors.write_file(folder / "model" / "initial.safetensors", {"w": np.full(3, 5.0)})
    result = simulate(load_job(folder), ["site-1", "site-2"], tmp_path / "ws", 1)
    assert result.status == "FINISHED", result.error
    np.testing.assert_array_equal(_final(result.job_dir)["w"], np.full(3, 6.0))


@pytest.mark.parametrize(("value", "expected"), [
    ("model/missing.safetensors", r"initial_model: 'model/missing.safetensors' is not in the job"),
    ("app/nope.py:make_model", r"initial_model: 'app/nope.py' is not in the job"),
    ("net.py:make_model", r"must be in app/"),
    ("../x.safetensors", r"must be a path inside the job folder"),
    ("weights.pt", r"neither a safetensors file of the job .* nor a function of its app"),
])
def test_a_bad_initial_model_is_refused_with_its_line(tmp_path: Path, value: str, expected: str) -> None:
    """Refused when the job is loaded (submit, simulate), naming job.yml's line 5."""
    with pytest.raises(JobError, match=expected) as caught:
        load_job(_job(tmp_path, value))
    assert caught.value.problems[0].line == 5


def test_a_job_file_must_keep_its_initial_model_in_app(tmp_path: Path) -> None:
    """A job file packs only app/ beside it: a model elsewhere would not be sent."""
    folder = _job(tmp_path, "model/initial.safetensors")
    (folder / "model").mkdir()
    tensors.write_file(folder / "model" / "initial.safetensors", {"w": np.zeros(1)})
    (folder / "other.yml").write_text((folder / "job.yml").read_text())
    with pytest.raises(JobError, match="a job file packs only the app/ beside it"):
        load_job(folder / "other.yml")


def test_the_function_fails_the_job_with_its_error(tmp_path: Path) -> None:
    """A function that raises fails the job, saying which function and what it raised."""
    net = "def make_model():\n    raise RuntimeError('no weights here')\n"
    result = simulate(load_job(_job(tmp_path, "app/net.py:make_model", net=net)), ["site-1", "site-2"],
                      tmp_path / "ws", 1)
    assert result.status == "FAILED"
    assert result.error == "initial_model app/net.py:make_model failed: RuntimeError: no weights here"


@pytest.mark.skipif(sandbox.available().kind != "landlock", reason="needs Landlock to confine the function")
def test_the_function_runs_confined(tmp_path: Path) -> None:
    """The function cannot read a file outside its app (here, one beside the job): Landlock refuses it."""
    secret = tmp_path / "secret.txt"
    secret.write_text("key")
    net = f"def make_model():\n    open({str(secret)!r}).read()\n    return {{'w': [1.0]}}\n"
    result = simulate(load_job(_job(tmp_path, "app/net.py:make_model", net=net)), ["site-1", "site-2"],
                      tmp_path / "ws", 1)
    assert result.status == "FAILED"
    assert "PermissionError" in result.error


def test_the_server_builds_the_initial_model_in_a_real_federation(tmp_path: Path) -> None:
    """Submitted to a real mTLS federation: the server's job process calls the function (confined) and round 0
    sends its model; the downloaded final model is arange(4) + 2."""
    folder = _job(tmp_path, "app/net.py:make_model")
    with running(make_federation(tmp_path)) as fed:
        job_id = fed.flctl_json("job", "submit", folder, "--watch", "--json")["id"]
        fed.flctl("job", "download", job_id, "-o", tmp_path / "out")
    final = tensors.read_file(tmp_path / "out" / job_id / "models" / "final.safetensors")
    np.testing.assert_array_equal(final["w"], np.arange(4, dtype=np.float32) + 2)
