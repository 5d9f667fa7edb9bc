"""Quantized transfer (job.yml `transfer: {quantize: fp16 | bf16 | int8}`): a model made smaller before it leaves a
node and made whole again on arrival, in both directions (server -> site, site -> server).

What travels is still safetensors, so everything that checks a model on the way (`tensors.parse_header`, the
server's result checks) checks a quantized one too; the header's `__metadata__` says how it was quantized:

    flctl.quantize   "fp16", "bf16" or "int8"
    flctl.dtypes     JSON {name: safetensors dtype} of each tensor quantized: the dtype it is given back in
    flctl.block      int8 only: values per block (each block has one scale)

- fp16 / bf16: each float32 or float64 tensor travels as float16 (or bfloat16), rounded to nearest even; 16-bit
  and 8-bit floats travel as they are. A value float16 cannot hold (|x| > 65504) is refused, not sent as infinity.
- int8 (blockwise absmax, as bitsandbytes' and NVIDIA FLARE's blockwise8 but linear): the tensor's values, in
  float32, are cut into blocks of `block` values (the last one shorter); each block has the scale
  s = max|x| / 127 (float32) and its values travel as q = rint(x / s) (int8, in [-127, 127]), the scales as a
  float32 tensor named `NAME::scales`. On arrival x' = q * s (float32), so |x - x'| <= s / 2 (plus float32's
  rounding of x / s and q * s: a few units in the last place of x). A block holding NaN or infinity gets the scale
  NaN and arrives as NaN, so the server refuses that site's model as it would unquantized.
Integer, bool and complex tensors travel as they are. Dequantized tensors are cast back to the dtype the sender
had (a bf16 model comes back bf16), so aggregation runs on the model's own dtypes, in float32 accumulators.

A peer's quantized data is checked before use: a mode, block, dtype or tensor that does not fit is a ValueError
naming it. Nothing is unpickled. The maths is pure numpy: `int8_blocks` and `int8_values` are the formula.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from flctl.node.jobs.tasks import Params, TaskKind
from flctl.node.wire import disk_space, tensors

MODES = ("fp16", "bf16", "int8")
"""What `transfer: {quantize: ...}` may ask."""
QUANTIZED_KINDS = frozenset({TaskKind.TRAIN, TaskKind.EVALUATE, TaskKind.SUBMIT_MODEL, TaskKind.AGGREGATE,
                             TaskKind.INFERENCE})
"""Tasks whose params are a model, so travel quantized (both ways); the others' (PSI messages, split learning's
activations, secure-aggregation steps, statistics) travel as they are."""
BLOCK = 256
"""int8's default values per block: one float32 scale per 256 values, 1.6 % over 1 byte a value."""
MIN_BLOCK, MAX_BLOCK = 8, 1 << 20
MODE_KEY, DTYPES_KEY, BLOCK_KEY = "flctl.quantize", "flctl.dtypes", "flctl.block"
SCALES = "::scales"
"""Suffix of the name of an int8 tensor's scales."""
_FLOAT16_MAX = float(np.finfo(np.float16).max)


def _narrow(mode: str) -> np.dtype:
    """The dtype fp16 or bf16 transfer sends (bfloat16 asked for only then: ml_dtypes is slow to import)."""
    return np.dtype("<f2") if mode == "fp16" else tensors.BFLOAT16


def quantize(params: Mapping[str, Any], mode: str, block: int = BLOCK) -> tuple[Params, dict[str, str]]:
    """`params` (arrays, numbers or torch tensors) as they travel quantized by `mode`, and the header metadata that
    says how. ValueError for an unknown mode or block, a name the int8 scales would take, or (fp16) a value float16
    cannot hold."""
    _check_mode(mode, block)
    out: Params = {}
    dtypes: dict[str, str] = {}
    for name, value in params.items():
        array = tensors.to_numpy(value)
        if name.endswith(SCALES):
            raise ValueError(f"parameter '{name}': names ending in '{SCALES}' are taken by quantized transfer; "
                             "rename it")
        if not _quantized(array.dtype, mode):
            out[name] = array
            continue
        dtypes[name] = tensors.code_of(array.dtype)
        if mode == "int8":
            codes, scales = int8_blocks(array, block)
            out[name] = codes.reshape(array.shape)
            out[name + SCALES] = scales
        else:
            out[name] = _narrowed(name, array, _narrow(mode))
    metadata = {MODE_KEY: mode, DTYPES_KEY: json.dumps(dtypes, separators=(",", ":"))}
    if mode == "int8":
        metadata[BLOCK_KEY] = str(block)
    return out, metadata


_Sent = tuple[str, np.ndarray, "np.dtype | None", "np.ndarray | None"]
"""A tensor as a quantized model sent it: its name, its array, the dtype it was sent from (None: sent as it is) and
its int8 scales (None but for int8)."""


def _sent(params: Params, metadata: Mapping[str, str]) -> tuple[int, list[_Sent]] | None:
    """What `dequantize` and `dequantize_to_file` make whole, checked: None when the metadata says no quantization,
    else the block and each tensor sent. ValueError naming what does not fit (a peer's bytes are checked before
    use): scales of no tensor, a tensor without its scales or of another dtype, one named but not sent."""
    mode = metadata.get(MODE_KEY)
    if mode is None:
        return None
    block = _block_of(metadata) if mode == "int8" else BLOCK
    _check_mode(mode, block)
    dtypes = _dtypes_of(metadata)
    sent: list[_Sent] = []
    for name, array in params.items():
        if name.endswith(SCALES) and mode == "int8":
            if name[:-len(SCALES)] not in dtypes:
                raise ValueError(f"quantized model: '{name}' holds scales of no quantized tensor")
            continue
        want = dtypes.get(name)
        scales = None
        if want is not None and mode == "int8":
            scales = params.get(name + SCALES)
            if scales is None:
                raise ValueError(f"quantized model: tensor '{name}' has no scales ('{name}{SCALES}')")
            _check_int8(name, array, scales, block)
        elif want is not None and array.dtype != _narrow(mode):
            raise ValueError(f"quantized model: tensor '{name}' is {array.dtype}, but {mode} transfer sends "
                             f"{_narrow(mode)}")
        sent.append((name, array, want, scales))
    missing = sorted(set(dtypes) - {name for name, *_ in sent})
    if missing:
        raise ValueError(f"quantized model: tensor '{missing[0]}' is named in {DTYPES_KEY} but not sent")
    return block, sent


def dequantize(params: Params, metadata: Mapping[str, str]) -> Params:
    """The model `params` (as read, with their header's `metadata`) stand for: `params` themselves when the metadata
    says no quantization, else each quantized tensor made whole in the dtype it was sent from. ValueError naming
    what does not fit (`_sent`)."""
    checked = _sent(params, metadata)
    if checked is None:
        return params
    block, sent = checked
    out: Params = {}
    for name, array, want, scales in sent:
        if want is None:
            out[name] = array
        elif scales is not None:
            out[name] = int8_values(array, scales, block).reshape(array.shape).astype(want)
        else:
            out[name] = array.astype(want)
    return out


def dequantize_to_file(params: Params, metadata: Mapping[str, str], path: Path) -> Params:
    """`dequantize` for a big model, without holding it: each tensor made whole a block at a time (about 4 MiB of
    float32) and written to `path`, which is then mapped and deleted; the arrays read from the mapping, as a plain
    result's do (the server's running sum reads them a block at a time). `params` themselves when the metadata says
    no quantization. The same checks, and ValueErrors, as `dequantize`; `path` is gone either way."""
    checked = _sent(params, metadata)
    if checked is None:
        return params
    block, sent = checked
    plan: list[tuple[str, np.dtype, Callable[[int, int], np.ndarray], int]] = []  # name, dtype, values [a, b), size
    for name, array, want, scales in sent:
        flat = array.reshape(-1)
        if want is None:
            plan.append((name, array.dtype, _slicer(flat), flat.size))
        elif scales is not None:
            plan.append((name, want, _int8_slicer(flat, scales, block, want), flat.size))
        else:
            plan.append((name, want, _cast_slicer(flat, want), flat.size))
    shapes = {name: params[name].shape for name, *_ in plan}
    step = max(block, (_STEP // block) * block)  # a multiple of int8's block: each slice starts on a block
    try:
        header = tensors.header_of([(name, dtype, shapes[name]) for name, dtype, _, _ in plan])
        with open(path, "wb") as out:
            disk_space.reserve(out.fileno(), len(header) + sum(size * dtype.itemsize for _, dtype, _, size in plan))
            out.write(header)
            for _, _, values, size in plan:
                for begin in range(0, size, step):
                    piece = values(begin, min(size, begin + step))
                    out.write(memoryview(piece.reshape(-1).view(np.uint8)))  # type: ignore[arg-type]
                    del piece
        return tensors.map_file(path)
    finally:
        path.unlink(missing_ok=True)


_STEP = 1 << 20
"""Values `dequantize_to_file` makes whole at a time."""


def _slicer(flat: np.ndarray) -> Callable[[int, int], np.ndarray]:
    def values(begin: int, end: int) -> np.ndarray:
        piece = np.ascontiguousarray(flat[begin:end])
        tensors.release(flat[begin:end])
        return piece
    return values


def _cast_slicer(flat: np.ndarray, want: np.dtype) -> Callable[[int, int], np.ndarray]:
    def values(begin: int, end: int) -> np.ndarray:
        piece = flat[begin:end].astype(want)
        tensors.release(flat[begin:end])
        return piece
    return values


def _int8_slicer(codes: np.ndarray, scales: np.ndarray, block: int, want: np.dtype
                 ) -> Callable[[int, int], np.ndarray]:
    flat_scales = scales.reshape(-1)

    def values(begin: int, end: int) -> np.ndarray:  # `begin` is a multiple of `block`
        piece = int8_values(codes[begin:end], flat_scales[begin // block:-(-end // block)], block).astype(want)
        tensors.release(codes[begin:end])
        return piece
    return values


def round_trip(params: Mapping[str, Any], mode: str, block: int = BLOCK) -> Params:
    """`params` as they arrive after quantized transfer (what the simulator gives, without the bytes)."""
    quantized, metadata = quantize(params, mode, block)
    return dequantize(quantized, metadata)


def encode(params: Mapping[str, Any], mode: str | None, block: int = BLOCK) -> bytes:
    """Safetensors bytes of `params`, quantized by `mode` (None: as they are)."""
    if mode is None:
        return tensors.encode(params)
    quantized, metadata = quantize(params, mode, block)
    return tensors.encode(quantized, metadata)


def decode(data: bytes | bytearray | memoryview) -> Params:
    """The model safetensors bytes stand for, quantized or not (ValueError for bytes that do not fit)."""
    return dequantize(tensors.views(data), tensors.metadata_of(data))


def is_quantized(data: bytes | bytearray | memoryview) -> bool:
    """Whether safetensors bytes say they are quantized (their header's `flctl.quantize`)."""
    return MODE_KEY in tensors.metadata_of(data)


# ---------------------------------------------------------------------------------------------- int8's formula
def int8_blocks(values: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray]:
    """Blockwise absmax int8 of `values` (any float dtype, any shape; taken flat, in float32): the codes (int8,
    flat) and each block's scale (float32, ceil(n / block) of them). s = max|x| / 127; q = rint(x / s); a block of
    zeros has s = 0 and q = 0; a block holding NaN or infinity has s = NaN and q = 0. One float32 temporary the size
    of the tensor (none when it is float32 already but the quotient)."""
    flat = np.asarray(values).reshape(-1).astype(np.float32, copy=False)
    n = flat.size
    codes = np.empty(n, np.int8)
    scales = np.empty(-(-n // block), np.float32)
    full = n // block
    _int8_rows(flat[:full * block].reshape(full, block), codes[:full * block].reshape(full, block), scales[:full])
    if n % block:
        _int8_rows(flat[full * block:].reshape(1, -1), codes[full * block:].reshape(1, -1), scales[full:])
    return codes, scales


def _int8_rows(grid: np.ndarray, codes: np.ndarray, scales: np.ndarray) -> None:
    """`int8_blocks` of each row of `grid` (one block a row) into `codes` and `scales`."""
    if grid.size == 0:
        return
    with np.errstate(invalid="ignore"):
        absmax = np.maximum(grid.max(axis=1), -grid.min(axis=1))  # NaN propagates; no |x| temporary
    finite = np.isfinite(absmax)
    np.divide(absmax, np.float32(127), out=scales)
    scales[~finite] = np.nan
    divisor = np.where(finite & (scales > 0), scales, np.float32(1))[:, None]  # zeros / 1 = 0
    quotient = grid / divisor
    np.rint(quotient, out=quotient)
    np.clip(quotient, -127, 127, out=quotient)
    quotient[~finite] = 0
    codes[...] = quotient


def int8_values(codes: np.ndarray, scales: np.ndarray, block: int) -> np.ndarray:
    """The float32 values int8 `codes` (flat) with their blocks' `scales` stand for: q * s."""
    flat = np.asarray(codes, np.int8).reshape(-1)
    scales = np.asarray(scales, np.float32)
    out = flat.astype(np.float32)
    full = flat.size // block
    head = out[:full * block].reshape(full, block)
    head *= scales[:full, None]
    if flat.size % block:
        out[full * block:] *= scales[full]
    return out


def _check_int8(name: str, codes: np.ndarray, scales: np.ndarray, block: int) -> None:
    """ValueError unless `codes` are int8 and `scales` float32, one per block of them."""
    if codes.dtype != np.int8:
        raise ValueError(f"quantized model: tensor '{name}' is {codes.dtype}, but int8 transfer sends int8")
    want = -(-codes.size // block)
    if scales.dtype != np.float32 or scales.shape != (want,):
        raise ValueError(f"quantized model: '{name}{SCALES}' is {scales.dtype} of shape {scales.shape}, but "
                         f"{codes.size} values in blocks of {block} take float32 of shape ({want},)")


# ---------------------------------------------------------------------------------------------- checks
def _quantized(dtype: np.dtype, mode: str) -> bool:
    """Whether a tensor of `dtype` travels quantized by `mode`: floats wider than what the mode sends."""
    if not tensors.is_float(dtype):
        return False
    return dtype.itemsize > (1 if mode == "int8" else 2)


def _narrowed(name: str, array: np.ndarray, dtype: np.dtype) -> np.ndarray:
    flat = array.reshape(-1)
    if dtype == np.float16 and flat.size and max(abs(float(np.fmax.reduce(flat))),
                                                 abs(float(np.fmin.reduce(flat)))) > _FLOAT16_MAX:
        # (NaN is left out by fmax/fmin: it travels as NaN, and the receiver refuses it as it would anyway)
        with np.errstate(invalid="ignore"):
            first = float(array[np.abs(array) > _FLOAT16_MAX][0])
        raise ValueError(f"parameter '{name}' has values beyond float16's range (|x| <= {_FLOAT16_MAX:g}), "
                         f"e.g. {first:g}; use transfer: {{quantize: bf16}} or int8")
    with np.errstate(over="ignore"):
        return array.astype(dtype)


def _check_mode(mode: str, block: int) -> None:
    if mode not in MODES:
        raise ValueError(f"quantization {mode!r} is not one of {', '.join(MODES)}")
    if not MIN_BLOCK <= block <= MAX_BLOCK:
        raise ValueError(f"an int8 block of {block} values is not within {MIN_BLOCK}..{MAX_BLOCK}")


def _block_of(metadata: Mapping[str, str]) -> int:
    text = metadata.get(BLOCK_KEY, "")
    if not text.isdigit():
        raise ValueError(f"quantized model: {BLOCK_KEY} is {text!r}, not a whole number")
    return int(text)


def _dtypes_of(metadata: Mapping[str, str]) -> dict[str, np.dtype]:
    try:
        raw = json.loads(metadata.get(DTYPES_KEY, ""))
    except ValueError:
        raise ValueError(f"quantized model: {DTYPES_KEY} is not JSON") from None
    if not isinstance(raw, dict):
        raise ValueError(f"quantized model: {DTYPES_KEY} is not a JSON object of name -> dtype")
    out: dict[str, np.dtype] = {}
    for name, code in raw.items():
        dtype = tensors.DTYPES.get(code) if isinstance(code, str) else None
        if dtype is None or not tensors.is_float(dtype):
            raise ValueError(f"quantized model: tensor '{name}' is said to come from dtype {code!r}, which is not a "
                             "float dtype")
        out[name] = dtype
    return out


def describe(mode: str | None, block: int = BLOCK) -> str:
    """How a job's log names the transfer: `int8 (blocks of 256)`, `bf16`, or `as is`."""
    if mode is None:
        return "as is"
    return f"int8 (blocks of {block})" if mode == "int8" else mode


def wire_ratio(mode: str | None, block: int = BLOCK) -> float:
    """The bytes a float32 tensor takes quantized by `mode`, per byte unquantized (big tensors; the header aside)."""
    if mode is None:
        return 1.0
    return (1 + 4 / block) / 4 if mode == "int8" else 0.5

