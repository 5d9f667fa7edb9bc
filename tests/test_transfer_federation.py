"""Models through a real local mTLS federation at their own size and quantized: a bf16 + fp16 torch model travels as
itself (the script gets torch.bfloat16 back) and is averaged exactly as a float32 reference rounded once; a float32
model with `transfer: {quantize: int8}` goes both ways quantized, and the final model is the reference's of
quantize -> train -> quantize -> average; a bad `transfer:` is refused at submit with exit code 2."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from flctl.node.admin.admin_client import AdminClient
from flctl.node.wire import quantize, tensors

from .federation import FLCTL, make_federation, running

torch = pytest.importorskip("torch")

FACTORS = {"site-1": (0.5, 0.25, 1), "site-2": (1.5, -0.125, 3)}
"""Each site's answer: x * a + b (in float32, rounded to the tensor's dtype), sent with num_examples n."""

SCRIPT = f'''
import torch
import flctl.client as fl

FACTORS = {FACTORS!r}
EXPECT = {{"w": torch.bfloat16, "h": torch.float16, "f": torch.float32, "n": torch.int64}}
fl.init()
a, b, n = FACTORS[fl.site_name()]
while fl.running():
    model = fl.receive()
    for name, tensor in model.params.items():
        assert tensor.dtype == EXPECT[name], (name, tensor.dtype)  # each dtype as itself, bf16 as torch's own
    sent = {{name: (t.float() * a + b).to(t.dtype) if t.is_floating_point() else t
            for name, t in model.params.items()}}
    fl.send(fl.Model(params=sent, num_examples=n))
'''


def _job(root: Path, name: str, model: dict[str, torch.Tensor], transfer: str = "") -> Path:
    job = root / name
    (job / "app").mkdir(parents=True)
    (job / "app" / "train.py").write_text(SCRIPT)
    (job / "model").mkdir()
    tensors.write_file(job / "model" / "initial.safetensors", model)
    (job / "job.yml").write_text(f"api_version: 1\nname: {name}\nworkflow: {{type: fedavg, args: {{rounds: 2}}}}\n"
                                 "min_sites: 2\napp: {command: [python, train.py], framework: pytorch}\n"
                                 f"initial_model: model/initial.safetensors\n{transfer}")
    return job


def _jobs(root: Path) -> dict[str, tuple[Path, dict[str, torch.Tensor], str | None]]:
    """Two jobs: a bf16 + fp16 + int64 model sent as it is; a float32 one with int8 transfer (blocks of 64)."""
    rng = np.random.default_rng(31)
    mixed = {"w": torch.from_numpy(rng.normal(size=(40, 25)).astype(np.float32)).to(torch.bfloat16),
             "h": torch.from_numpy(rng.normal(size=300).astype(np.float16)), "n": torch.tensor([7], dtype=torch.int64)}
    plain = {"f": torch.from_numpy(rng.normal(size=(30, 50)).astype(np.float32)), "n": torch.tensor([7])}
    return {"dtypes": (_job(root, "dtypes", mixed), mixed, None),
            "int8": (_job(root, "int8", plain, "transfer: {quantize: int8, block_size: 64}\n"), plain, "int8")}


def _site_answer(params: dict[str, np.ndarray], site: str) -> dict[str, np.ndarray]:
    """What the script sends, computed the same way (torch, float32, rounded to the tensor's dtype)."""
    a, b, _ = FACTORS[site]
    out = {}
    for name, value in params.items():
        tensor = torch.from_numpy(value.view(np.int16)).view(torch.bfloat16) if value.dtype == tensors.BFLOAT16 \
            else torch.from_numpy(np.array(value))
        answer = (tensor.float() * a + b).to(tensor.dtype) if tensor.is_floating_point() else tensor
        out[name] = tensors.to_numpy(answer)
    return out


def _fedavg(answers: list[tuple[dict[str, np.ndarray], int]]) -> dict[str, np.ndarray]:
    """The weighted mean in float32 (float64 for integers), rounded once to each tensor's dtype."""
    out = {}
    for name, first in answers[0][0].items():
        acc = np.float32 if tensors.is_float(first.dtype) and first.dtype.itemsize <= 4 else np.float64
        total = sum(np.multiply(params[name], acc(weight), dtype=acc) for params, weight in answers)
        mean = np.asarray(total, acc) / acc(sum(weight for _, weight in answers))
        out[name] = (np.rint(mean) if first.dtype.kind in "iu" else mean).astype(first.dtype)
    return out


def _reference(initial: dict[str, np.ndarray], rounds: int, mode: str | None) -> dict[str, np.ndarray]:
    def travel(params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return quantize.round_trip(params, mode, 64) if mode else params

    model = initial
    for _ in range(rounds):
        given = travel(model)
        model = _fedavg([(travel(_site_answer(given, site)), FACTORS[site][2]) for site in sorted(FACTORS)])
    return model


def _same(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert set(got) == set(want)
    for name, value in want.items():
        assert got[name].dtype == value.dtype, name
        assert np.array_equal(got[name].view(np.uint8), np.ascontiguousarray(value).view(np.uint8)), name


def test_models_travel_at_their_own_size_and_quantized_through_a_real_federation(tmp_path: Path) -> None:
    """bf16/fp16/int64 job: final model bit for bit the float32 reference's, in bf16/fp16/int64; int8 job: the
    reference with both directions quantized; `transfer: {quantize: int4}` refused at submit, exit 2."""
    # Prepare
    jobs = _jobs(tmp_path)
    bad = _job(tmp_path, "bad", jobs["int8"][1], "transfer: {quantize: int4}\n")
    (tmp_path / "fed").mkdir()
    with running(make_federation(tmp_path / "fed")) as fed, AdminClient.from_kit(fed.admin_kit) as admin:
        refused = subprocess.run([FLCTL, "job", "submit", str(bad), "--kit", str(fed.admin_kit)],
                                 capture_output=True, text=True, timeout=60, check=False)
        finals = {}
        for name, (job, _, _) in jobs.items():
            # Execute
            job_id = admin.submit_job(job)
            list(admin.watch(job_id))
            info = admin.get_job(job_id)
            assert info.status == "FINISHED", (name, info.error)
            target = admin.download_job(job_id, tmp_path / "out" / name)
            finals[name] = tensors.read_file(target / "models" / "final.safetensors")
    # Assert
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "transfer.quantize: 'int4' is not allowed; use 'fp16', 'bf16' or 'int8'" in refused.stdout + refused.stderr
    for name, (_, model, mode) in jobs.items():
        initial = {key: tensors.to_numpy(value) for key, value in model.items()}
        _same(finals[name], _reference(initial, 2, mode))
    assert finals["dtypes"]["w"].dtype == tensors.BFLOAT16 and finals["dtypes"]["h"].dtype == np.float16


def test_the_simulator_gives_the_federations_models(tmp_path: Path) -> None:
    """`flctl simulate` of the same two jobs (bf16/fp16 as themselves; int8 both ways) ends on the same reference
    models, bit for bit: a job's quantization is seen before it runs on a federation."""
    # Prepare
    jobs = _jobs(tmp_path)
    for name, (job, model, mode) in jobs.items():
        # Execute
        out = subprocess.run([FLCTL, "simulate", str(job), "-n", "2", "-w", str(tmp_path / "ws")],
                             capture_output=True, text=True, timeout=300, check=False)
        # Assert
        assert out.returncode == 0, out.stdout + out.stderr
        final = tensors.read_file(tmp_path / "ws" / name / "models" / "final.safetensors")
        _same(final, _reference({key: tensors.to_numpy(value) for key, value in model.items()}, 2, mode))
