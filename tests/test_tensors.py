"""Parameters as safetensors bytes: round trips, torch tensors, and refusal of anything else."""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from flctl.node.wire import tensors
from flctl.node.wire.tensors import decode, encode, to_numpy


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
    assert back["half"].dtype == tensors.BFLOAT16  # travels as itself: 2 bytes a value
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


def test_bfloat16_from_safetensors_torch_decodes_bit_for_bit():
    """bfloat16 safetensors (e.g. from safetensors.torch) decode as ml_dtypes bfloat16, the same 16-bit words."""
    # Prepare
    import safetensors.torch

    tensor = torch.tensor([1.0, -2.5, 3.140625, 1e-30, 3e38], dtype=torch.bfloat16)
    data = safetensors.torch.save({"x": tensor})
    # Execute
    back = decode(data)["x"]
    # Assert
    assert back.dtype == tensors.BFLOAT16
    assert back.view(np.uint16).tolist() == tensor.view(torch.int16).numpy().view(np.uint16).tolist()


def test_every_safetensors_dtype_round_trips_with_safetensors_torch():
    """Each dtype safetensors.torch writes is decoded by flctl with the same bytes, and flctl's encoding of it loads
    back in safetensors.torch equal to the original tensor."""
    # Prepare
    import safetensors.torch

    values = torch.tensor([0.0, 1.0, -2.0, 0.5, 3.0])
    dtypes = [torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.float8_e4m3fn, torch.float8_e5m2,
              torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool]
    model = {str(dtype): values.to(dtype) for dtype in dtypes}
    # Execute
    ours = decode(safetensors.torch.save(model))
    theirs = safetensors.torch.load(encode(model))
    # Assert
    for name, tensor in model.items():
        assert ours[name].nbytes == tensor.numel() * tensor.element_size(), name
        assert theirs[name].dtype == tensor.dtype, name
        assert torch.equal(theirs[name].view(torch.uint8), tensor.view(torch.uint8)), name


def test_decode_of_a_dtype_flctl_lacks_is_a_value_error():
    """A dtype that is no safetensors dtype (or one flctl does not take) is refused naming those it takes."""
    # Prepare
    text = json.dumps({"x": {"dtype": "F4", "shape": [2], "data_offsets": [0, 1]}}).encode()
    data = struct.pack("<Q", len(text)) + text + b"\x00"
    # Execute
    with pytest.raises(ValueError) as info:
        decode(data)
    # Assert
    assert str(info.value).startswith("tensor 'x' has dtype 'F4', which is not a safetensors dtype flctl takes "
                                      "(F64, F32, F16, BF16")


# ---------------------------------------------------------------------------------------------- without copies
MIXED = {
    "w": np.arange(12, dtype=np.float32).reshape(3, 4),
    "b": np.array([1, -2], np.int64),
    "scale": np.asarray(0.5, np.float64),
    "mask": np.array([True, False]),
    "empty": np.zeros((0, 3), np.float16),
    "big_endian": np.arange(3, dtype=">f4"),
}


def assert_same(back: dict[str, np.ndarray], params: dict[str, np.ndarray]) -> None:
    assert sorted(back) == sorted(params)
    for name, value in params.items():
        assert back[name].shape == value.shape
        assert back[name].dtype == value.dtype.newbyteorder("<") or back[name].dtype == value.dtype
        assert np.array_equal(back[name], value)


def test_what_flctl_writes_safetensors_reads_and_the_other_way():
    """encode's bytes load with the safetensors library, and safetensors' own bytes decode here."""
    # Prepare
    import safetensors.numpy

    theirs = safetensors.numpy.save({k: v for k, v in MIXED.items() if k != "big_endian"})
    # Execute
    ours = safetensors.numpy.load(encode(MIXED))
    back = decode(theirs)
    # Assert
    assert_same({k: ours[k] for k in MIXED}, MIXED)
    assert_same(back, {k: v for k, v in MIXED.items() if k in back})
    assert len(back) == len(MIXED) - 1


def test_write_file_then_read_file_and_map_file_give_the_params_back(tmp_path):
    """A model written straight from its arrays reads back exactly, into new arrays or mapped from the file."""
    # Prepare
    path = tmp_path / "model.safetensors"
    # Execute
    size = tensors.write_file(path, MIXED)
    read, mapped = tensors.read_file(path), tensors.map_file(path)
    # Assert
    assert size == path.stat().st_size == len(encode(MIXED))
    assert path.read_bytes() == encode(MIXED)
    assert_same(read, MIXED)
    assert_same(mapped, MIXED)
    assert all(a.flags.writeable for a in read.values())
    assert not any(a.flags.writeable for a in mapped.values() if a.size)


def test_views_share_the_buffer_and_receive_reads_a_stream_into_new_arrays():
    """views() makes arrays over the bytes themselves; receive() fills new arrays from a stream, in order."""
    # Prepare
    data = bytearray(encode({"w": np.zeros(4, np.float32)}))
    stream = io.BytesIO(encode(MIXED))
    # Execute
    shared = tensors.views(data)
    shared["w"][0] = 5.0
    received = tensors.receive(stream.readinto, len(encode(MIXED)))
    # Assert
    assert tensors.decode(data)["w"].tolist() == [5.0, 0.0, 0.0, 0.0]
    assert_same(received, MIXED)
    assert stream.read() == b""


@pytest.mark.parametrize(("header", "error"), [
    ({"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}, "takes 8 bytes, not 4"),
    ({"x": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, "starts at byte 4 of the data, not 0"),
    ({"x": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, "has shape"),
    ({"x": {"dtype": "F32", "shape": [1]}}, "has data_offsets None"),
    ({"x": [1, 2]}, "described by list"),
    ({"x": {"dtype": "Q4", "shape": [1], "data_offsets": [0, 2]}}, "not a safetensors dtype flctl takes"),
])
def test_parse_header_names_what_is_wrong(header, error):
    """Offsets that do not fit the dtype and shape, gaps, bad shapes and unknown dtypes are refused by name."""
    # Prepare
    text = json.dumps(header).encode()
    data = struct.pack("<Q", len(text)) + text + b"\x00" * 8
    # Execute
    with pytest.raises(ValueError, match=error):
        tensors.parse_header(data, len(data))


def test_data_past_the_last_tensor_is_refused():
    """Bytes left over after the tensors are not taken as part of a model."""
    # Prepare
    data = encode({"x": np.zeros(1, np.float32)}) + b"junk"
    # Execute / Assert
    with pytest.raises(ValueError, match="take 4 bytes but 8 follow the header"):
        tensors.parse_header(data, len(data))


def test_release_gives_back_the_pages_of_a_mapped_array(tmp_path):
    """After release(), a mapped array's pages no longer count in this process's memory, and it still reads."""
    # Prepare
    path = tmp_path / "big.safetensors"
    tensors.write_file(path, {"w": np.ones(8 << 20, np.float32)})  # 32 MiB
    mapped = tensors.map_file(path)["w"]

    def file_rss_kb() -> int:
        status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
        return int(status["RssFile"].split()[0])

    before = file_rss_kb()
    # Execute
    assert float(mapped.sum()) == 8 << 20  # reads every page
    touched = file_rss_kb()
    tensors.release(mapped)
    # Assert
    assert touched - before > 30_000
    assert file_rss_kb() - before < 1_000
    assert float(mapped[-1]) == 1.0


def test_ml_dtypes_is_imported_only_when_a_bfloat16_or_float8_tensor_comes():
    """Importing ml_dtypes takes half a second of CPU or more: the CLI's job checks, the nodes and their job
    processes import this module without it; a BF16 tensor read, or BFLOAT16 asked for, brings it in."""
    import subprocess
    import sys

    header = json.dumps({"w": {"dtype": "BF16", "shape": [2], "data_offsets": [0, 4]}}).encode()
    words = (np.array([1.0, -2.5], np.float32).view(np.uint32) >> 16).astype("<u2")  # bfloat16: the top half
    data = struct.pack("<Q", len(header)) + header + words.tobytes()
    code = (
        "import sys\n"
        "from flctl.node.jobs import job_spec\n"
        "from flctl.node.server import daemon\n"
        "from flctl.node.site import job_process\n"
        "from flctl.node.wire import quantize, tensors\n"
        "import numpy as np\n"
        "assert 'ml_dtypes' not in sys.modules\n"
        "assert tensors.is_float(np.dtype('<f4')) and not tensors.is_float(np.dtype('V2'))\n"
        "assert tensors.decode(tensors.encode({'a': np.ones(2, np.float32)}))['a'].dtype == np.float32\n"
        "assert 'ml_dtypes' not in sys.modules\n"
        f"back = tensors.decode({data!r})['w']\n"
        "assert 'ml_dtypes' in sys.modules and back.dtype == tensors.BFLOAT16\n"
        "assert tensors.is_float(back.dtype) and tensors.code_of(back.dtype) == 'BF16'\n"
        "assert back.astype(np.float32).tolist() == [1.0, -2.5]\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr


def _stream(data: bytes):
    at = 0

    def read_into(view: memoryview) -> None:
        nonlocal at
        view[:] = data[at:at + len(view)]
        at += len(view)

    return read_into


def test_receive_reads_into_arrays_offered_for_reuse_only_when_nothing_else_holds_them() -> None:
    """`reuse` arrays are read into when they fit and only the offer holds them; a held one, another shape or
    dtype, a view or a read-only array gets a new array, and is left as it was."""
    import numpy as np

    from flctl.node.wire import tensors

    incoming = {"a": np.arange(12, dtype=np.float32).reshape(3, 4), "b": np.full(5, 7, np.int64),
                "c": np.ones(3, np.float16), "d": np.arange(4, dtype=np.float64), "e": np.zeros(2, np.float32)}
    data = tensors.encode(incoming)
    free_a = np.zeros((3, 4), np.float32)
    held_b = np.zeros(5, np.int64)
    wrong_c = np.zeros(3, np.float32)  # another dtype
    base = np.zeros(8, np.float64)
    view_d = base[:4]  # not its own memory
    frozen_e = np.zeros(2, np.float32)
    frozen_e.flags.writeable = False
    where_a = free_a.ctypes.data
    reuse = {"a": free_a, "b": held_b, "c": wrong_c, "d": view_d, "e": frozen_e}
    del free_a, wrong_c, view_d
    got = tensors.receive(_stream(data), len(data), reuse)
    assert reuse == {}  # emptied: nothing offered is held by the offer any more
    assert got["a"].ctypes.data == where_a  # the free one was read into
    for name, want in incoming.items():
        np.testing.assert_array_equal(got[name], want)
        assert got[name].dtype == want.dtype
    assert got["b"] is not held_b and not held_b.any()  # held by this test: untouched
    assert not base.any() and not frozen_e.any()


def test_reusable_keeps_only_arrays_receive_could_read_into() -> None:
    import numpy as np

    from flctl.node.wire import tensors

    own = np.zeros(4, np.float32)
    frozen = np.zeros(4, np.float32)
    frozen.flags.writeable = False
    base = np.zeros(8, np.float32)
    params = {"own": own, "view": base[:4], "strided": base[::2].copy()[::2], "frozen": frozen,
              "tensor": torch.zeros(4), "number": 3.0}
    assert list(tensors.reusable(params)) == ["own"]
