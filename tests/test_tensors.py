"""Parameters as safetensors bytes: round trips, torch tensors, and refusal of anything else."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from node.tensors import decode, encode, to_numpy


def test_numpy_round_trip_keeps_values_shapes_and_dtypes():
    """Arrays of several dtypes and shapes come back exactly."""
    # Prepare
    params = {
        "w": np.arange(12, dtype=np.float32).reshape(3, 4),
        "b": np.array([1, -2], np.int64),
        "scale": np.asarray(0.5, np.float64),
        "mask": np.array([True, False]),
    }
    # Execute
    back = decode(encode(params))
    # Assert
    assert sorted(back) == sorted(params)
    for name, value in params.items():
        assert back[name].dtype == value.dtype
        assert back[name].shape == value.shape
        assert np.array_equal(back[name], value)


def test_empty_params_round_trip():
    """An empty model (round 0 of FedAvg) encodes and decodes to an empty dict."""
    # Prepare / Execute
    back = decode(encode({}))
    # Assert
    assert back == {}


def test_python_numbers_and_lists_are_accepted():
    """Python scalars and nested lists become arrays."""
    # Prepare
    params = {"lr": 0.1, "steps": 3, "grid": [[1.0, 2.0], [3.0, 4.0]]}
    # Execute
    back = decode(encode(params))
    # Assert
    assert float(back["lr"]) == 0.1
    assert int(back["steps"]) == 3
    assert back["grid"].tolist() == [[1.0, 2.0], [3.0, 4.0]]


def test_torch_tensors_are_converted():
    """A state_dict with a tensor that requires grad, a bfloat16 one and a non-contiguous one encodes."""
    # Prepare
    layer = torch.nn.Linear(3, 2)
    params = {**layer.state_dict(), "weight_grad": layer.weight, "half": torch.ones(2, dtype=torch.bfloat16),
              "t": torch.arange(6.0).reshape(2, 3).t()}
    # Execute
    back = decode(encode(params))
    # Assert
    assert np.array_equal(back["weight"], layer.weight.detach().numpy())
    assert np.array_equal(back["weight_grad"], layer.weight.detach().numpy())
    assert back["half"].dtype == np.float32
    assert back["t"].tolist() == [[0.0, 3.0], [1.0, 4.0], [2.0, 5.0]]


def test_to_numpy_of_a_tensor_is_detached_numpy():
    """to_numpy turns a torch tensor into a plain numpy array."""
    # Prepare
    tensor = torch.ones(2, requires_grad=True) * 2
    # Execute
    array = to_numpy(tensor)
    # Assert
    assert isinstance(array, np.ndarray)
    assert array.tolist() == [2.0, 2.0]


@pytest.mark.parametrize("value", ["text", None, [1, "a"]], ids=["str", "none", "mixed"])
def test_non_numbers_are_refused(value):
    """Strings, None and objects cannot be parameters."""
    # Prepare / Execute
    with pytest.raises(ValueError) as info:
        encode({"x": value})
    # Assert
    assert str(info.value).startswith("parameter 'x': cannot send")


@pytest.mark.parametrize("data", [b"", b"garbage", b"\xff" * 64, b"\x10" + b"\x00" * 7 + b"{not json}"],
                         ids=["empty", "text", "huge-header", "bad-json"])
def test_decode_of_garbage_is_a_value_error(data):
    """Bytes that are not safetensors raise a short ValueError, never something else."""
    # Prepare / Execute
    with pytest.raises(ValueError) as info:
        decode(data)
    # Assert
    assert str(info.value).startswith("not safetensors data")
    assert len(str(info.value)) < 200


def test_decode_of_a_dtype_numpy_lacks_is_a_value_error():
    """bfloat16 safetensors (e.g. from safetensors.torch) are refused with advice, not a KeyError."""
    # Prepare
    import safetensors.torch

    data = safetensors.torch.save({"x": torch.ones(2, dtype=torch.bfloat16)})
    # Execute
    with pytest.raises(ValueError) as info:
        decode(data)
    # Assert
    assert str(info.value) == "safetensors data with dtype 'BF16' that numpy cannot hold; send float32"
