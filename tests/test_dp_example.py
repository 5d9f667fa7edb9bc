"""The DP-SGD example job (playbooks/jobs/hello-pt-dp): Opacus inside the training script lowers the loss, and the
epsilon it reports each round is Opacus's RDP accountant's for the steps taken so far."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from flctl.node.wire.tensors import decode, encode

from .test_example_jobs import JOBS, load_script


@pytest.fixture
def one_thread() -> Iterator[None]:
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_hello_pt_dp_learns_and_reports_opacus_s_epsilon(one_thread: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Three rounds from the last one's model (through safetensors): the loss falls, and dp_sgd_epsilon after round r
    is RDPAccountant's for r epochs of Poisson-sampled steps (sample rate batch / examples, the script's noise)."""
    accountants = pytest.importorskip("opacus.accountants", reason="needs the privacy extra: bash scripts/setup.sh "
                                                                   "--all")
    # Prepare
    script = load_script(JOBS / "hello-pt-dp" / "app" / "train.py", monkeypatch)
    trainer = script.PrivateTrainer("site-1")
    params: dict[str, np.ndarray] = {}
    metrics = []
    # Execute
    for _ in range(3):
        state, round_metrics, n = trainer.train_round(params)
        params = decode(encode(state))
        metrics.append(round_metrics)
    # Assert
    assert n == script.TRAIN_SAMPLES and sorted(params) == sorted(script.make_model().state_dict())
    assert metrics[2]["loss"] < metrics[0]["loss"] - 0.05
    steps_per_epoch = script.TRAIN_SAMPLES // script.BATCH
    for round_no, round_metrics in enumerate(metrics, start=1):
        reference = accountants.RDPAccountant()
        for _ in range(steps_per_epoch * round_no):
            reference.step(noise_multiplier=script.NOISE_MULTIPLIER, sample_rate=1 / steps_per_epoch)
        assert round_metrics["dp_sgd_epsilon"] == pytest.approx(reference.get_epsilon(script.DELTA), rel=1e-9)
