"""Quantized transfer's maths (fp16, bf16, blockwise int8), exact against a plain numpy reference of each formula on
fixed inputs and within its stated error bound; a peer's quantized bytes that do not fit are refused by name."""

from __future__ import annotations

import json

import numpy as np
import pytest

from flctl.node.wire import quantize, tensors

BF16 = tensors.BFLOAT16


def _model() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(29)
    return {
        "conv.weight": rng.normal(0, 0.2, size=(16, 3, 5, 5)).astype(np.float32),  # 1200 values: 4.7 blocks of 256
        "fc.bias": rng.normal(size=10).astype(np.float32),
        "big": (rng.normal(size=300) * 1e3).astype(np.float64),
        "bn.num_batches_tracked": np.array(7, np.int64),
        "mask": np.array([True, False]),
        "half": rng.normal(size=6).astype(np.float16),
        "brain": rng.normal(size=6).astype(np.float32).astype(BF16),
    }


def _reference_int8(x: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The formula, plainly: per block of `block` values s = max|x| / 127, q = rint(x / s), x' = q * s (float32)."""
    flat = x.astype(np.float32).ravel()
    codes, scales, values = [], [], []
    for start in range(0, flat.size, block):
        part = flat[start:start + block]
        s = np.float32(np.max(np.abs(part))) / np.float32(127)
        q = np.zeros(part.size, np.int8) if s == 0 else np.clip(np.rint(part / s), -127, 127).astype(np.int8)
        codes.append(q)
        scales.append(s)
        values.append(q.astype(np.float32) * np.float32(s))
    return np.concatenate(codes), np.array(scales, np.float32), np.concatenate(values).reshape(x.shape)


@pytest.mark.parametrize("block", [8, 64, 256])
def test_int8_is_the_blockwise_absmax_formula_and_within_half_a_scale(block: int) -> None:
    """Codes, scales and values equal the reference's exactly; every value is within s/2 of the original (plus
    float32's rounding: 2 units in the last place of x)."""
    # Prepare
    x = _model()["conv.weight"]
    # Execute
    codes, scales = quantize.int8_blocks(x, block)
    values = quantize.int8_values(codes, scales, block).reshape(x.shape)
    # Assert
    want_codes, want_scales, want_values = _reference_int8(x, block)
    assert np.array_equal(codes, want_codes) and np.array_equal(scales, want_scales)
    assert np.array_equal(values, want_values)
    per_value = np.repeat(scales, block)[:x.size].reshape(x.shape)
    assert np.all(np.abs(x - values) <= per_value / 2 + 2 * np.spacing(np.abs(x)))
    assert scales.shape == (-(-x.size // block),)


def test_int8_of_zeros_nan_and_a_short_last_block() -> None:
    """A block of zeros has scale 0 and comes back zeros; a block holding NaN or infinity has scale NaN and comes
    back NaN (the server refuses it as it would unquantized); the last block may be short."""
    # Prepare
    x = np.array([0, 0, 0, 0, 1, np.nan, 2, 3, np.inf, 5, -127], np.float32)
    # Execute
    codes, scales = quantize.int8_blocks(x, 4)
    values = quantize.int8_values(codes, scales, 4)
    # Assert
    assert scales[0] == 0 and values[:4].tolist() == [0, 0, 0, 0]
    assert np.isnan(scales[1]) and np.isnan(values[4:8]).all() and codes[4:8].tolist() == [0, 0, 0, 0]
    assert np.isnan(scales[2]) and codes.size == 11


@pytest.mark.parametrize(("mode", "narrow"), [("fp16", np.dtype(np.float16)), ("bf16", BF16)])
def test_fp16_and_bf16_are_a_cast_to_nearest_even_and_back(mode: str, narrow: np.dtype) -> None:
    """float32/64 tensors travel narrowed (the cast, rounded to nearest even) and come back in their own dtype;
    16-bit floats, integers and bools travel as they are."""
    # Prepare
    model = _model()
    # Execute
    sent, metadata = quantize.quantize(model, mode)
    back = quantize.dequantize(tensors.decode(tensors.encode(sent, metadata)), metadata)
    # Assert
    assert json.loads(metadata[quantize.DTYPES_KEY]) == {"conv.weight": "F32", "fc.bias": "F32", "big": "F64"}
    for name in ("conv.weight", "fc.bias", "big"):
        assert sent[name].dtype == narrow
        assert back[name].dtype == model[name].dtype
        assert np.array_equal(back[name], model[name].astype(narrow).astype(model[name].dtype))
        eps = 2.0 ** (-11 if mode == "fp16" else -8)  # half a unit in the last place, relative
        assert np.all(np.abs(back[name] - model[name]) <= eps * np.abs(model[name]) + 1e-7)
    for name in ("bn.num_batches_tracked", "mask", "half", "brain"):
        assert back[name].dtype == model[name].dtype and np.array_equal(back[name], model[name])


def test_int8_model_round_trips_through_safetensors_in_its_own_dtypes() -> None:
    """Each float tensor (float16 and bf16 too) comes back in its dtype from the int8 formula; the rest unchanged;
    the encoding of a big float32 tensor is (1 + 4/256) / 4 of its unquantized one."""
    # Prepare
    model = _model()
    # Execute
    data = quantize.encode(model, "int8", 64)
    back = quantize.decode(data)
    # Assert
    assert tensors.metadata_of(data)[quantize.BLOCK_KEY] == "64"
    for name in ("conv.weight", "fc.bias", "big", "half", "brain"):
        assert back[name].dtype == model[name].dtype
        want = _reference_int8(model[name], 64)[2].astype(model[name].dtype)
        assert np.array_equal(back[name], want, equal_nan=True), name
    assert int(back["bn.num_batches_tracked"]) == 7 and back["mask"].tolist() == [True, False]
    weight = {"w": np.ones(100_000, np.float32)}
    assert len(quantize.encode(weight, "int8")) < quantize.wire_ratio("int8") * len(tensors.encode(weight)) + 400


def test_fp16_refuses_a_value_it_cannot_hold() -> None:
    """70000 overflows float16: refused with advice, never sent as infinity."""
    # Prepare / Execute
    with pytest.raises(ValueError) as info:
        quantize.quantize({"w": np.array([1.0, 70000.0], np.float32)}, "fp16")
    # Assert
    assert str(info.value) == ("parameter 'w' has values beyond float16's range (|x| <= 65504), e.g. 70000; "
                               "use transfer: {quantize: bf16} or int8")


def test_a_torch_bf16_state_dict_quantizes() -> None:
    """torch tensors (bf16 among them) are taken as they are: int8 of a bf16 tensor comes back bf16."""
    # Prepare
    torch = pytest.importorskip("torch")
    state = {"w": torch.randn(300).to(torch.bfloat16), "b": torch.randn(3)}
    # Execute
    back = quantize.decode(quantize.encode(state, "int8"))
    # Assert
    assert back["w"].dtype == BF16 and back["b"].dtype == np.float32


def test_unquantized_bytes_decode_as_they_are() -> None:
    """Bytes with no quantization metadata are the model itself."""
    # Prepare
    data = tensors.encode({"w": np.arange(3, dtype=np.float32)})
    # Execute / Assert
    assert not quantize.is_quantized(data)
    assert quantize.decode(data)["w"].tolist() == [0.0, 1.0, 2.0]


def _forged(params: dict[str, np.ndarray], metadata: dict[str, str]) -> bytes:
    return tensors.encode(params, metadata)


@pytest.mark.parametrize(("params", "metadata", "error"), [
    ({"w": np.zeros(4, np.int8)}, {"flctl.quantize": "int4", "flctl.dtypes": "{}"}, "'int4' is not one of"),
    ({"w": np.zeros(4, np.int8)}, {"flctl.quantize": "int8", "flctl.dtypes": '{"w": "F32"}', "flctl.block": "x"},
     "flctl.block is 'x'"),
    ({"w": np.zeros(4, np.int8)}, {"flctl.quantize": "int8", "flctl.dtypes": '{"w": "F32"}', "flctl.block": "1"},
     "block of 1 values"),
    ({"w": np.zeros(4, np.int8)}, {"flctl.quantize": "int8", "flctl.dtypes": '{"w": "F32"}', "flctl.block": "8"},
     "tensor 'w' has no scales"),
    ({"w": np.zeros(20, np.int8), "w::scales": np.zeros(1, np.float32)},
     {"flctl.quantize": "int8", "flctl.dtypes": '{"w": "F32"}', "flctl.block": "8"}, "take float32 of shape \\(3,\\)"),
    ({"w": np.zeros(4, np.float32), "w::scales": np.zeros(1, np.float32)},
     {"flctl.quantize": "int8", "flctl.dtypes": '{"w": "F32"}', "flctl.block": "8"}, "is float32, but int8"),
    ({"w": np.zeros(4, np.int8)}, {"flctl.quantize": "int8", "flctl.dtypes": '{"w": "I64"}', "flctl.block": "8"},
     "not a float dtype"),
    ({"w": np.zeros(4, np.float32)}, {"flctl.quantize": "bf16", "flctl.dtypes": '{"w": "F32"}'},
     "is float32, but bf16 transfer sends bfloat16"),
    ({"w": np.zeros(4, np.float16)}, {"flctl.quantize": "fp16", "flctl.dtypes": '{"v": "F32"}'},
     "'v' is named in flctl.dtypes but not sent"),
    ({"w": np.zeros(4, np.float16)}, {"flctl.quantize": "fp16", "flctl.dtypes": "[1]"}, "not a JSON object"),
    ({"x::scales": np.zeros(1, np.float32)}, {"flctl.quantize": "int8", "flctl.dtypes": "{}", "flctl.block": "8"},
     "holds scales of no quantized tensor"),
])
def test_a_peers_bad_quantized_model_is_refused_by_name(params: dict[str, np.ndarray], metadata: dict[str, str],
                                                        error: str) -> None:
    """A mode, block, dtype or tensor that does not fit is a ValueError naming it (nothing is unpickled)."""
    # Prepare
    data = _forged(params, metadata)
    # Execute / Assert
    with pytest.raises(ValueError, match=error):
        quantize.decode(data)


def test_the_server_reads_a_quantized_answer_whole_and_leaves_out_one_that_does_not_fit(tmp_path) -> None:
    """The server's job process makes a quantized answer (inline or in a file) whole in its own dtype; a forged one
    fails that site with the reason, and the workflow never sees it."""
    # Prepare
    import base64

    from flctl.node.jobs.tasks import SiteFailure, TaskResult
    from flctl.node.server.job_messages import SiteResult
    from flctl.node.server.job_process import _result

    good = quantize.encode({"w": np.linspace(-1, 1, 600, dtype=np.float32)}, "int8")
    (tmp_path / "r.safetensors").write_bytes(good)
    forged = _forged({"w": np.zeros(4, np.int8)}, {"flctl.quantize": "int8", "flctl.dtypes": '{"w": "F32"}',
                                                  "flctl.block": "8"})
    # Execute
    inline = _result(SiteResult(task_id="t", site="site-1", data=base64.b64encode(good).decode()))
    on_disk = _result(SiteResult(task_id="t", site="site-1", path=str(tmp_path / "r.safetensors")))
    bad = _result(SiteResult(task_id="t", site="site-2", data=base64.b64encode(forged).decode()))
    # Assert
    want = quantize.decode(good)["w"]
    for answer in (inline, on_disk):
        assert isinstance(answer, TaskResult) and answer.params["w"].dtype == np.float32
        assert np.array_equal(answer.params["w"], want)
    assert not (tmp_path / "r.safetensors").exists()
    assert isinstance(bad, SiteFailure) and bad.site == "site-2"
    assert bad.reason == "its quantized model cannot be read: quantized model: tensor 'w' has no scales ('w::scales')"


@pytest.mark.parametrize("mode", ["fp16", "bf16", "int8"])
def test_a_big_answer_is_made_whole_a_block_at_a_time_into_a_mapped_file(tmp_path, monkeypatch, mode: str) -> None:
    """The server's path for a quantized answer in a file (`dequantize_to_file`): the same arrays, bit for bit, as
    `dequantize` in memory, each tensor made whole a few values at a time (blocks of 3 x int8's block, so most
    tensors take several and end on a short one), read from a mapping of a file that is already deleted."""
    # Prepare
    monkeypatch.setattr(quantize, "_STEP", 24)
    model = _model()
    sent, metadata = quantize.quantize(model, mode, block=8)
    (tmp_path / "r.safetensors").write_bytes(tensors.encode(sent, metadata))
    whole = tmp_path / ".r.whole"
    # Execute
    got = quantize.dequantize_to_file(tensors.map_file(tmp_path / "r.safetensors"), metadata, whole)
    # Assert
    want = quantize.dequantize(sent, metadata)
    assert list(got) == list(want)
    for name, array in want.items():
        assert got[name].dtype == array.dtype and got[name].shape == array.shape
        assert np.array_equal(got[name], array), name
        assert not got[name].flags.writeable  # a read-only mapping, as a plain answer's
    assert not whole.exists()


def test_a_big_answer_that_does_not_fit_is_refused_as_in_memory_and_leaves_no_file(tmp_path) -> None:
    """A forged quantized answer in a file fails with `dequantize`'s reason, and nothing is left behind."""
    # Prepare
    params = {"w": np.zeros(20, np.int8), "w::scales": np.zeros(1, np.float32)}
    metadata = {"flctl.quantize": "int8", "flctl.dtypes": '{"w": "F32"}', "flctl.block": "8"}
    whole = tmp_path / ".r.whole"
    # Execute / Assert
    with pytest.raises(ValueError, match="take float32 of shape \\(3,\\)"):
        quantize.dequantize_to_file(params, metadata, whole)
    assert not whole.exists()


@pytest.mark.parametrize(("transfer", "error"), [
    ("{quantize: int4}", "transfer.quantize: 'int4' is not allowed; use 'fp16', 'bf16' or 'int8'"),
    ("{quantize: int8, block_size: 4}", "transfer.block_size: 4 is too small; use 8 or more"),
    ("{quantise: int8}", "transfer.quantise: unknown key 'quantise'; allowed here: quantize, block_size"),
])
def test_job_yml_transfer_is_checked_naming_the_field(tmp_path, transfer: str, error: str) -> None:
    """A bad `transfer:` is refused when the job is loaded (at submit: exit 2), with file, line and field."""
    # Prepare
    from flctl.node.errors import JobError
    from flctl.node.jobs.job_spec import load_job

    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "train.py").write_text("import flctl.client as fl\n")
    (tmp_path / "job.yml").write_text(f"api_version: 1\nname: j\nworkflow: {{type: fedavg, args: {{rounds: 1}}}}\n"
                                      f"transfer: {transfer}\n")
    # Execute
    with pytest.raises(JobError) as info:
        load_job(tmp_path)
    # Assert
    assert str(info.value) == f"{tmp_path / 'job.yml'}:4: {error}"


def test_quantized_transfer_with_secure_aggregation_is_refused(tmp_path) -> None:
    """transfer: {quantize: ...} and secure_aggregation: masking exclude each other, said at the transfer field."""
    # Prepare
    from flctl.node.errors import JobError
    from flctl.node.jobs.job_spec import load_job

    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "train.py").write_text("import flctl.client as fl\n")
    (tmp_path / "job.yml").write_text("api_version: 1\nname: j\nworkflow: {type: fedavg, args: {rounds: 1, "
                                      "secure_aggregation: masking}}\ntransfer: {quantize: bf16}\n")
    # Execute
    with pytest.raises(JobError) as info:
        load_job(tmp_path)
    # Assert
    assert str(info.value).startswith(f"{tmp_path / 'job.yml'}:4: transfer.quantize: bf16 cannot be combined with "
                                      "the workflow's secure aggregation (masking)")
