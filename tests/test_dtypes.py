"""Every dtype at its own size: bfloat16 and float16 models travel as themselves, are averaged in float32 and come
back in their own dtype, exact against a numpy/torch reference; the workflows' other model readers take them."""

from __future__ import annotations

import numpy as np
import pytest

from flctl.node.jobs.tasks import PARAMS_TYPE, TaskResult
from flctl.node.secagg.layout import ModelLayout
from flctl.node.wire import tensors
from flctl.node.workflows.aggregation import WeightedSum, accumulator_dtype, all_finite, full_params

torch = pytest.importorskip("torch")

BF16 = tensors.BFLOAT16


def _site_models(dtype: np.dtype, sites: int = 3, n: int = 1000) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [rng.normal(size=n).astype(np.float32).astype(dtype) for _ in range(sites)]


def _reference_mean(models: list[np.ndarray], weights: list[float], dtype: np.dtype) -> np.ndarray:
    """The formula: sum_i w_i * x_i in float32 (each x_i widened exactly), divided by sum_i w_i, rounded once to
    the model's dtype (nearest even) by torch."""
    total = np.zeros(models[0].shape, np.float32)
    for model, weight in zip(models, weights, strict=True):
        total += np.float32(weight) * model.astype(np.float32)
    total /= np.float32(sum(weights))
    torch_dtype = torch.bfloat16 if dtype == BF16 else torch.float16
    rounded = torch.from_numpy(total).to(torch_dtype)
    return rounded.view(torch.int16).numpy().view(np.uint16)


@pytest.mark.parametrize("dtype", [BF16, np.dtype(np.float16)], ids=["bf16", "fp16"])
def test_a_16_bit_model_is_averaged_in_float32_and_rounded_once_to_its_dtype(dtype: np.dtype) -> None:
    """3 sites, weights 2, 3 and 5: the mean is the float32 reference's, rounded to bf16 (fp16) by torch, bit for
    bit; the sum is kept in float32."""
    # Prepare
    models, weights = _site_models(dtype), [2.0, 3.0, 5.0]
    total = WeightedSum()
    # Execute
    for i, (model, weight) in enumerate(zip(models, weights, strict=True)):
        total.add({"w": model}, weight, site=f"site-{i}")
    mean = total.result()["w"]
    # Assert
    assert accumulator_dtype(dtype) == np.float32
    assert mean.dtype == dtype
    assert mean.view(np.uint16).tolist() == _reference_mean(models, weights, dtype).tolist()


def test_a_bf16_model_travels_at_2_bytes_a_value_and_keeps_its_bits() -> None:
    """A torch bf16 state_dict encodes to 2 bytes a value (not 4), and decodes to the same 16-bit words."""
    # Prepare
    weight = torch.randn(64, 32).to(torch.bfloat16)
    # Execute
    data = tensors.encode({"weight": weight})
    back = tensors.decode(data)["weight"]
    # Assert
    assert len(data) - tensors.parse_header(data, len(data))[0] == 64 * 32 * 2
    assert back.dtype == BF16
    assert np.array_equal(back.view(np.uint16), weight.view(torch.int16).numpy().view(np.uint16))


def test_widening_bf16_is_bits_shifted_left_16() -> None:
    """ml_dtypes' bf16 -> float32 is exact: the float32 whose bits are the bf16 word followed by 16 zero bits."""
    # Prepare
    words = np.arange(0, 1 << 16, 97, dtype=np.uint16)
    words = words[(words & 0x7F80) != 0x7F80]  # finite values only (NaN payloads aside)
    # Execute
    widened = words.view(BF16).astype(np.float32)
    # Assert
    assert np.array_equal(widened.view(np.uint32), words.astype(np.uint32) << 16)


def test_the_client_api_gives_a_torch_script_bf16_tensors() -> None:
    """What a pytorch job's script receives for a bf16 tensor is a torch.bfloat16 tensor of the same bits."""
    # Prepare
    from flctl.node.client.api import _as_torch

    sent = {"w": torch.randn(5).to(torch.bfloat16), "h": torch.randn(3).half(), "f8": torch.randn(4).to(
        torch.float8_e4m3fn)}
    # Execute
    got = _as_torch(tensors.decode(tensors.encode(sent)))
    # Assert
    for name, tensor in sent.items():
        assert got[name].dtype == tensor.dtype
        assert torch.equal(got[name].view(torch.uint8), tensor.view(torch.uint8))


def test_a_bf16_diff_is_added_in_float32_and_rounded_once() -> None:
    """full_params of a bf16 diff: (x + d) in float32, rounded to bf16 once."""
    # Prepare
    x = np.array([1.0, 256.0, -3.0], np.float32).astype(BF16)
    d = np.array([0.00390625, 1.0, 0.5], np.float32).astype(BF16)
    # Execute
    model = full_params({"w": d}, "diff", lambda: {"w": x})["w"]
    # Assert
    want = (x.astype(np.float32) + d.astype(np.float32)).astype(BF16)
    assert model.dtype == BF16 and np.array_equal(model.view(np.uint16), want.view(np.uint16))


def test_nan_in_a_bf16_model_is_seen() -> None:
    """The finite check looks at bf16 tensors too: a NaN keeps that site out."""
    # Prepare
    bad = np.array([1.0, np.nan], np.float32).astype(BF16)
    total = WeightedSum({"w": np.zeros(2, BF16)})
    # Execute / Assert
    assert not all_finite(bad)
    with pytest.raises(ValueError, match="NaN or infinite"):
        total.add({"w": bad}, 1.0, site="site-1")


def test_secure_aggregation_layout_keeps_bf16() -> None:
    """Masking's model layout names bf16 so that it comes back bf16 (its numpy `str`, "<V2", would not)."""
    # Prepare
    model = {"w": np.array([1.5, -2.0], np.float32).astype(BF16), "n": np.array([3], np.int64)}
    layout = ModelLayout.of(model)
    # Execute
    again = ModelLayout.from_json(layout.as_json())
    back = again.unflatten(layout.flatten(model))
    # Assert
    assert back["w"].dtype == BF16 and back["w"].astype(np.float32).tolist() == [1.5, -2.0]
    assert back["n"].dtype == np.int64


def test_dp_filters_keep_a_bf16_model_bf16() -> None:
    """The update the DP filters act on is float64, and what they send back is in the script's dtype (bf16)."""
    # Prepare
    from flctl.node.site.filters.model_update import params_with, update_of

    received = {"w": np.array([1.0, 2.0], np.float32).astype(BF16)}
    result = TaskResult("site-1", {"w": np.array([1.5, 2.5], np.float32).astype(BF16)}, 1, {}, {PARAMS_TYPE: "full"})
    # Execute
    update = update_of(result, received)
    back = params_with(result, received, update)
    # Assert
    assert update["w"].dtype == np.float64 and update["w"].tolist() == [0.5, 0.5]
    assert back["w"].dtype == BF16 and back["w"].astype(np.float32).tolist() == [1.5, 2.5]
