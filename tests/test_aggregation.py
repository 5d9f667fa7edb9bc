"""Weighted model averages and metric means, checked with exact numbers."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from flctl.node.workflows.aggregation import BLOCK, WeightedSum, weighted_metrics


def test_weighted_mean_of_two_models():
    """Weights 1 and 3: the mean lies three quarters of the way to the heavier model."""
    # Prepare
    total = WeightedSum()
    # Execute
    total.add({"w": np.array([0.0, 4.0], np.float32)}, 1, site="site-1")
    total.add({"w": np.array([4.0, 8.0], np.float32)}, 3, site="site-2")
    result = total.result()
    # Assert
    assert result["w"].tolist() == [3.0, 7.0]
    assert result["w"].dtype == np.float32
    assert (total.count, total.total_weight) == (2, 4.0)


def test_a_weighted_add_over_many_blocks_is_exact_and_needs_one_block_of_scratch():
    """A model of 2.5 blocks, weights 1 and 3: exact mean, and adding it allocates only the sum and one block."""
    # Prepare
    n = BLOCK * 5 // 2
    first, second = np.arange(n, dtype=np.float32) % 7, np.full(n, 3.0, np.float32)
    total = WeightedSum()
    total.add({"w": first}, 1)
    tracemalloc.start()
    # Execute
    total.add({"w": second}, 3)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    result = total.result()
    # Assert
    assert np.array_equal(result["w"], (first + 9.0) / 4)
    assert peak <= BLOCK * 4 + 64 * 1024  # one float32 block of scratch


def test_float16_is_summed_in_float32():
    """float16 inputs whose float16 sum would overflow still average exactly."""
    # Prepare
    total = WeightedSum()
    big = np.array([60000.0], np.float16)
    # Execute
    total.add({"x": big}, 1)
    total.add({"x": big}, 1)
    # Assert
    assert total.result()["x"].tolist() == [60000.0]
    assert total.result()["x"].dtype == np.float16


def test_integer_tensors_are_rounded_back():
    """An int64 counter (e.g. BatchNorm's num_batches_tracked) comes back rounded, as int64."""
    # Prepare
    total = WeightedSum()
    # Execute
    total.add({"n": np.array(3, np.int64)}, 1)
    total.add({"n": np.array(4, np.int64)}, 2)
    # Assert
    assert total.result()["n"].dtype == np.int64
    assert int(total.result()["n"]) == 4  # 11 / 3 = 3.67


def test_zero_total_weight_means_equal_weights():
    """Sites that trained on no examples still average, each counting once."""
    # Prepare
    total = WeightedSum()
    # Execute
    total.add({"w": np.array([1.0])}, 0)
    total.add({"w": np.array([3.0])}, 0)
    # Assert
    assert total.result()["w"].tolist() == [2.0]


def test_zero_weights_drop_out_once_a_weight_is_positive():
    """A site with weight 0 does not count when another has a positive weight, in either order."""
    # Prepare
    first, last = WeightedSum(), WeightedSum()
    # Execute
    first.add({"w": np.array([100.0])}, 0)
    first.add({"w": np.array([2.0])}, 5)
    last.add({"w": np.array([2.0])}, 5)
    last.add({"w": np.array([100.0])}, 0)
    # Assert
    assert first.result()["w"].tolist() == [2.0]
    assert last.result()["w"].tolist() == [2.0]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"w": np.zeros(3)}, "site-2: tensor 'w' has shape (3,), but site-1 has (2,)"),
        ({}, "site-2: tensor 'w' is missing (it is in site-1)"),
        ({"w": np.zeros(2), "extra": np.zeros(1)}, "site-2: tensor 'extra' is not in site-1"),
    ],
    ids=["shape", "missing", "extra"],
)
def test_mismatched_models_are_refused_naming_tensor_and_site(params, message):
    """A model that does not fit the first one is refused and leaves the sum as it was."""
    # Prepare
    total = WeightedSum()
    total.add({"w": np.array([1.0, 1.0])}, 1, site="site-1")
    # Execute
    with pytest.raises(ValueError) as info:
        total.add(params, 1, site="site-2")
    # Assert
    assert str(info.value) == message
    assert total.result()["w"].tolist() == [1.0, 1.0]


def test_models_must_match_the_global_model_when_given():
    """With `like`, even the first model is checked against the global model."""
    # Prepare
    total = WeightedSum(like={"w": np.zeros((4, 4))})
    # Execute
    with pytest.raises(ValueError) as info:
        total.add({"w": np.zeros((2, 2))}, 1, site="site-1")
    # Assert
    assert str(info.value) == "site-1: tensor 'w' has shape (2, 2), but the global model has (4, 4)"


@pytest.mark.parametrize("weight", [-1, float("nan"), float("inf")])
def test_bad_weights_are_refused(weight):
    """Negative and non-finite weights are refused, naming the site."""
    # Prepare
    total = WeightedSum()
    # Execute
    with pytest.raises(ValueError) as info:
        total.add({"w": np.zeros(1)}, weight, site="site-9")
    # Assert
    assert str(info.value).startswith("site-9: weight")


def test_result_without_models_is_an_error():
    """Asking for the mean of nothing is a ValueError, not a division by zero."""
    # Prepare
    total = WeightedSum()
    # Execute
    with pytest.raises(ValueError) as info:
        total.result()
    # Assert
    assert str(info.value) == "no models were added"


def test_weighted_metrics_over_the_sites_that_reported_each():
    """Each metric is averaged over the sites that sent it, weighted by their weights."""
    # Prepare
    results = [({"loss": 1.0, "accuracy": 0.5}, 10), ({"loss": 4.0}, 30), ({"accuracy": 1.0, "auc": 0.7}, 0)]
    # Execute
    means = weighted_metrics(results)
    # Assert
    assert means == {"accuracy": 0.5, "auc": 0.7, "loss": 3.25}


def test_weighted_metrics_of_nothing_is_empty():
    """No results, no metrics."""
    # Prepare / Execute
    means = weighted_metrics([])
    # Assert
    assert means == {}


def test_float32_models_are_summed_in_float32_and_averaged_in_place():
    """The running sum of float32 models is float32 (one model of memory), and result() returns it, averaged."""
    # Prepare
    total = WeightedSum()
    total.add({"w": np.array([1.0, 2.0], np.float32)}, 1)
    total.add({"w": np.array([3.0, 6.0], np.float32)}, 1)
    summed = total._sums["w"]
    # Execute
    result = total.result()
    # Assert
    assert summed.dtype == np.float32
    assert result["w"] is summed
    assert result["w"].tolist() == [2.0, 4.0]
    assert total.result() is result
    with pytest.raises(RuntimeError, match="already averaged"):
        total.add({"w": np.zeros(2, np.float32)}, 1)


def test_a_mapped_model_is_added_without_keeping_its_pages(tmp_path):
    """Adding a model mapped from its file (as the server does) leaves only the running sum in memory."""
    # Prepare
    from flctl.node.wire import tensors

    path = tmp_path / "result.safetensors"
    tensors.write_file(path, {"w": np.full(16 << 20, 2.0, np.float32)})  # 64 MiB, several blocks
    mapped = tensors.map_file(path)

    def rss_kb(field: str) -> int:
        status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
        return int(status[field].split()[0])

    before = rss_kb("RssFile")
    total = WeightedSum()
    # Execute
    total.add(mapped, 3)
    # Assert
    assert rss_kb("RssFile") - before < 20_000  # at most about one block's pages stay mapped
    assert float(total.result()["w"][-1]) == 2.0


def test_all_finite_looks_at_every_block(monkeypatch, tmp_path):
    """A NaN in the last block of a file-mapped tensor is found; integers are always finite."""
    # Prepare
    from flctl.node.wire import tensors
    from flctl.node.workflows import aggregation

    monkeypatch.setattr(aggregation, "BLOCK", 4)
    values = np.arange(10, dtype=np.float32)
    values[9] = np.nan
    tensors.write_file(tmp_path / "m.safetensors", {"w": values, "ok": np.ones(10, np.float32)})
    mapped = tensors.map_file(tmp_path / "m.safetensors")
    # Execute / Assert
    assert not aggregation.all_finite(mapped["w"])
    assert aggregation.all_finite(mapped["ok"])
    assert aggregation.all_finite(np.array([1, 2], np.int64))
    assert not aggregation.all_finite(np.array([1 + 1j, complex(np.inf, 0)], np.complex64))


def _pooled_models(rng: np.random.Generator) -> list[dict[str, np.ndarray]]:
    """Three sites' models with every kind of tensor a sum is kept for: float32, float16, float64, integers,
    a scalar and an empty tensor (sums of 1 MiB and more come from the pool)."""
    return [{"w": rng.standard_normal((512, 600)).astype(np.float32), "h": rng.standard_normal(300).astype(np.float16),
             "d": rng.standard_normal(7), "n": rng.integers(-50, 50, 9).astype(np.int32),
             "s": np.array(rng.standard_normal(), np.float32), "e": np.zeros((0, 3), np.float32)}
            for _ in range(3)]


def test_sums_made_in_a_kept_buffer_equal_the_plain_ones_and_reuse_last_rounds_buffer_once_let_go() -> None:
    from flctl.node.wire.model_buffers import ModelBuffers

    rng = np.random.default_rng(7)
    buffers = ModelBuffers(keep=1)
    weights = [3.0, 1.0, 2.0]
    means = []
    for _round in range(3):
        models = _pooled_models(rng)
        pooled, plain = WeightedSum(buffers=buffers), WeightedSum()
        for model, weight in zip(models, weights, strict=True):
            pooled.add(model, weight)
            plain.add(model, weight)
        got, want = pooled.result(), plain.result()
        for name in want:
            assert got[name].dtype == want[name].dtype and got[name].shape == want[name].shape
            np.testing.assert_array_equal(got[name], want[name])
        reference = sum(m["w"].astype(np.float32) * np.float32(w) for m, w in zip(models, weights, strict=True))
        np.testing.assert_allclose(got["w"], reference / np.float32(6), rtol=1e-6)
        means.append(got)
        if _round == 0:
            del got, want, means[0]  # round 0's mean let go: round 1 sums in its buffer
    assert (buffers.made, buffers.reused) == (2, 1)  # round 2's: round 1's mean is still held (means[-1])
    assert means[-1]["w"].shape == (512, 600)


def test_a_round_whose_weights_are_all_zero_so_far_starts_over_in_the_same_buffer() -> None:
    from flctl.node.wire.model_buffers import ModelBuffers

    buffers = ModelBuffers(keep=1)
    a = {"w": np.full((600, 600), 2.0, np.float32)}
    b = {"w": np.full((600, 600), 5.0, np.float32)}
    total = WeightedSum(buffers=buffers)
    total.add(a, 0.0)  # counted plainly while every weight is zero
    total.add(b, 1.0)  # the first weight: the sums start over, weighted
    np.testing.assert_array_equal(total.result()["w"], np.full((600, 600), 5.0, np.float32))
