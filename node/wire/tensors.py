"""Model parameters as safetensors: in, out and on disk, without copies the size of the model.

The format (https://github.com/huggingface/safetensors): an 8-byte little-endian header length,
a JSON header (`{name: {"dtype", "shape", "data_offsets": [begin, end]}}`), then the tensors'
bytes back to back. Writing goes straight from each array's memory to the file or the wire
(`write_file`, `Layout.parts`); reading goes straight from the file into each array (`read_file`),
or maps the file without reading it (`map_file`, whose pages `release` hands back once used).
`parse_header` checks everything a reader relies on, so a site's bytes are checked before any
array is made from them. Never pickle.

Every dtype safetensors knows travels as itself: bfloat16 and the two float8 types, which numpy lacks, are
held as `ml_dtypes` arrays (the numpy dtypes JAX and TensorFlow use), so a bf16 model goes at 2 bytes a value,
not widened to float32. torch is never imported here: a torch tensor is recognised by its type's module and
turned into numpy through its own methods (a bf16 tensor through a view of its 16-bit words: nothing rounded),
so numpy-only sites need no torch.
"""

from __future__ import annotations

import json
import math
import mmap
import struct
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from flctl.node.jobs.tasks import Params
from flctl.node.wire import disk_space
from flctl.node.wire.model_buffers import held_only_by

_NUMERIC_KINDS = "biufc"
_NATIVE: dict[str, np.dtype] = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "I64": np.dtype("<i8"),
    "U64": np.dtype("<u8"), "I32": np.dtype("<i4"), "U32": np.dtype("<u4"), "I16": np.dtype("<i2"),
    "U16": np.dtype("<u2"), "I8": np.dtype("i1"), "U8": np.dtype("u1"), "BOOL": np.dtype("?"),
    "C64": np.dtype("<c8"),
}
_NATIVE_CODES = {dtype: code for code, dtype in _NATIVE.items()}
_EXTRA_NAMES = {"BF16": "bfloat16", "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2"}
"""The floating-point dtypes numpy holds only through ml_dtypes (their numpy `kind` is "V", or "f"), by safetensors
code: their ml_dtypes names. ml_dtypes is imported the first time one is needed, not with this module: importing it
takes half a second of CPU or more, which every node, job process and `flctl job submit` would pay for nothing."""
CODES = ("F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2", "I64", "U64", "I32", "U32", "I16", "U16", "I8", "U8",
         "BOOL", "C64")
"""Safetensors dtypes a model may use: every one safetensors knows (C64 included), numpy's own or ml_dtypes'."""
ALLOWED = "float64, float32, float16, bfloat16, float8 (e4m3, e5m2), complex64, an integer type or bool"
_TORCH_VIEWS = {"torch.bfloat16": ("int16", "BF16"), "torch.float8_e4m3fn": ("uint8", "F8_E4M3"),
                "torch.float8_e5m2": ("uint8", "F8_E5M2")}
"""torch dtypes numpy lacks: the torch dtype of the same width to view the tensor's words as, and the code of the
ml_dtypes dtype those words are."""
_extras: dict[str, np.dtype] = {}

# Made (ml_dtypes imported) when first asked for, by `__getattr__`.
BFLOAT16: np.dtype
FLOAT8_E4M3: np.dtype
FLOAT8_E5M2: np.dtype
EXTRA_FLOATS: frozenset[np.dtype]
"""Floating-point dtypes numpy holds only through ml_dtypes."""
DTYPES: dict[str, np.dtype]
"""Every code of `CODES` -> its numpy dtype."""


def _extra_dtypes(load: bool = True) -> dict[str, np.dtype]:
    """The ml_dtypes floats by code. With `load` False, none while ml_dtypes is not imported: no array can have one
    of its dtypes before it is."""
    if not _extras and (load or "ml_dtypes" in sys.modules):
        import ml_dtypes

        _extras.update({code: np.dtype(getattr(ml_dtypes, name)) for code, name in _EXTRA_NAMES.items()})
    return _extras


def __getattr__(name: str) -> Any:
    """BFLOAT16, FLOAT8_E4M3, FLOAT8_E5M2, EXTRA_FLOATS and DTYPES, made the first time one is asked for."""
    if name not in ("BFLOAT16", "FLOAT8_E4M3", "FLOAT8_E5M2", "EXTRA_FLOATS", "DTYPES"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    extra = _extra_dtypes()
    values: dict[str, Any] = {
        "BFLOAT16": extra["BF16"], "FLOAT8_E4M3": extra["F8_E4M3"], "FLOAT8_E5M2": extra["F8_E5M2"],
        "EXTRA_FLOATS": frozenset(extra.values()),
        "DTYPES": {code: _NATIVE[code] if code in _NATIVE else extra[code] for code in CODES}}
    globals().update(values)
    return values[name]


def is_extra_float(dtype: np.dtype) -> bool:
    """Whether `dtype` is one of the floats numpy holds only through ml_dtypes (bfloat16, float8)."""
    return dtype in _extra_dtypes(load=False).values()


def _code(dtype: np.dtype) -> str | None:
    """The safetensors code of a little-endian `dtype`, or None."""
    code = _NATIVE_CODES.get(dtype)
    if code is None:
        code = next((c for c, extra in _extra_dtypes(load=False).items() if extra == dtype), None)
    return code


def is_float(dtype: np.dtype) -> bool:
    """Whether `dtype` is a real floating-point dtype: numpy's (float16/32/64) or ml_dtypes' (bfloat16, float8)."""
    return dtype.kind == "f" or is_extra_float(dtype)


def code_of(dtype: np.dtype) -> str:
    """The safetensors name of `dtype` ("F32", "BF16"...); ValueError for one that has none."""
    code = _code(dtype.newbyteorder("<") if dtype.byteorder == ">" else dtype)
    if code is None:
        raise ValueError(f"dtype {dtype} has no safetensors name; use {ALLOWED}")
    return code


def is_numeric(dtype: np.dtype) -> bool:
    """Whether `dtype` holds numbers a model may be made of: bool, integers, floats (bfloat16 and float8 too),
    complex."""
    return dtype.kind in _NUMERIC_KINDS or is_extra_float(dtype)
_LENGTH = struct.Struct("<Q")
MAX_HEADER = 100 * 1024 * 1024
"""The largest header accepted (safetensors' own limit)."""


def to_numpy(value: Any) -> np.ndarray:
    """A numpy array from a numpy array, a python number or (nested) list, or a torch tensor."""
    if type(value).__module__.startswith("torch"):
        tensor = value.detach().cpu()
        view = _TORCH_VIEWS.get(str(tensor.dtype))
        if view is not None:  # numpy has no bfloat16: the same words, read as ml_dtypes' bfloat16
            words, code = view
            torch = sys.modules["torch"]  # loaded: `value` is one of its tensors
            array = np.asarray(tensor.contiguous().view(getattr(torch, words)).numpy())
            array = array.view(_extra_dtypes()[code])
        else:
            array = np.asarray(tensor.numpy())
    else:
        array = np.asarray(value)
    if not is_numeric(array.dtype):
        raise ValueError(f"cannot send a {type(value).__name__} of dtype {array.dtype}; use numbers")
    return array


# ---------------------------------------------------------------------------------------------- writing
@dataclass(frozen=True)
class Layout:
    """What encoding `params` takes: the header (length prefix included) and each array, ready to write as is."""

    header: bytes
    arrays: list[tuple[str, np.ndarray]]

    @property
    def size(self) -> int:
        """Bytes of the whole encoding."""
        return len(self.header) + sum(array.nbytes for _, array in self.arrays)

    def parts(self) -> list[memoryview]:
        """The encoding as buffers over the header and each array's own memory, in order (nothing copied)."""
        return [memoryview(self.header), *(_bytes_of(array) for _, array in self.arrays)]


def layout(params: Mapping[str, Any], metadata: Mapping[str, str] | None = None) -> Layout:
    """The safetensors layout of `params` (name -> numpy array, number, list or torch tensor), with `metadata`
    (text keys and values) in the header's `__metadata__`; arrays that are already C-contiguous and
    little-endian are used as they are, not copied."""
    arrays: list[tuple[str, np.ndarray]] = []
    for name, value in params.items():
        if not isinstance(name, str):
            raise ValueError(f"parameter names must be strings, not {type(name).__name__} ({name!r})")
        if name == "__metadata__":
            raise ValueError("'__metadata__' is reserved by safetensors; name the parameter otherwise")
        try:
            array = to_numpy(value)
        except ValueError as exc:
            raise ValueError(f"parameter '{name}': {exc}") from None
        wanted = array.dtype.newbyteorder("<") if array.dtype.byteorder == ">" else array.dtype
        code = _code(wanted)
        if code is None:
            raise ValueError(f"parameter '{name}': dtype {array.dtype} cannot be sent; use {ALLOWED}")
        array = np.asarray(array, dtype=wanted, order="C")  # keeps 0-d arrays 0-d; a copy only when needed
        arrays.append((name, array))
    return Layout(header_of([(name, array.dtype, array.shape) for name, array in arrays], metadata), arrays)


def header_of(specs: list[tuple[str, np.dtype, tuple[int, ...]]], metadata: Mapping[str, str] | None = None
              ) -> bytes:
    """The safetensors header (length prefix included) of tensors `specs` (name, little-endian dtype, shape), laid out
    one after another in that order, with `metadata`: what `layout` writes before the arrays, for a writer that
    makes the arrays' bytes a block at a time."""
    entries: dict[str, Any] = {"__metadata__": dict(metadata)} if metadata else {}
    offset = 0
    for name, dtype, shape in specs:
        nbytes = math.prod(shape) * dtype.itemsize
        entries[name] = {"dtype": code_of(dtype), "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    text = json.dumps(entries, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned, as safetensors writes it
    return _LENGTH.pack(len(text)) + text


def _bytes_of(array: np.ndarray) -> memoryview:
    return memoryview(array.reshape(-1).view(np.uint8))  # type: ignore[arg-type]  # numpy is a buffer


def empty_buffer(size: int) -> memoryview:
    """`size` bytes to read into, not zeroed first (a fresh bytearray would write every byte once more)."""
    return _bytes_of(np.empty(size, np.uint8))


def encode(params: Mapping[str, Any], metadata: Mapping[str, str] | None = None) -> bytes:
    """Safetensors bytes of `params` (name -> numpy array, number, list or torch tensor), with `metadata` (text keys
    and values) in the header's `__metadata__`."""
    plan = layout(params, metadata)
    out = bytearray(plan.size)
    out[:len(plan.header)] = plan.header
    at = len(plan.header)
    for _, array in plan.arrays:
        out[at:at + array.nbytes] = _bytes_of(array)
        at += array.nbytes
    return bytes(out)


def write_file(path: Path, params: Mapping[str, Any], metadata: Mapping[str, str] | None = None) -> int:
    """Write `params` (and `metadata`) to `path` as safetensors straight from the arrays' memory; the bytes
    written."""
    plan = layout(params, metadata)
    with open(path, "wb") as out:
        disk_space.reserve(out.fileno(), plan.size)
        out.write(plan.header)
        for _, array in plan.arrays:
            out.write(_bytes_of(array))
    return plan.size


# ---------------------------------------------------------------------------------------------- reading
@dataclass(frozen=True)
class Entry:
    """One tensor of an encoding: its bytes are [begin, end) from the start of the data."""

    name: str
    dtype: np.dtype
    shape: tuple[int, ...]
    begin: int
    end: int


def header_length(prefix: bytes | bytearray | memoryview) -> int:
    """The JSON header's length from the first 8 bytes of an encoding; ValueError when it cannot be one."""
    if len(prefix) < _LENGTH.size:
        raise ValueError(f"not safetensors data ({len(prefix)} bytes is shorter than the 8-byte header length)")
    (length,) = _LENGTH.unpack_from(prefix)
    if length > MAX_HEADER:
        raise ValueError(f"not safetensors data (a header of {length} bytes is over the {MAX_HEADER}-byte limit)")
    return int(length)


def parse_header(head: bytes | bytearray | memoryview, total: int) -> tuple[int, list[Entry]]:
    """Where the data starts, and every tensor in order, from the first bytes of an encoding `total` bytes long
    (`head` holds at least the length prefix and the JSON header). ValueError names what is wrong: the header is
    not a JSON object of tensors, a dtype numpy cannot hold, offsets that do not fit the dtype and shape, or
    tensors that do not cover the data exactly."""
    length = header_length(head)
    start = _LENGTH.size + length
    if start > total or len(head) < start:
        raise ValueError(f"not safetensors data (a header of {length} bytes runs past the end)")
    try:
        raw = json.loads(bytes(head[_LENGTH.size:start]).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"not safetensors data (the header is not UTF-8 JSON: {exc})") from None
    if not isinstance(raw, dict):
        raise ValueError("not safetensors data (the header is not a JSON object)")
    entries = [_entry(name, info) for name, info in raw.items() if name != "__metadata__"]
    entries.sort(key=lambda e: (e.begin, e.end))
    at = 0
    for entry in entries:
        if entry.begin != at:
            raise ValueError(f"not safetensors data (tensor '{entry.name}' starts at byte {entry.begin} of the "
                             f"data, not {at}: tensors must follow each other)")
        at = entry.end
    if at != total - start:
        raise ValueError(f"not safetensors data (the tensors take {at} bytes but {total - start} follow the header)")
    return start, entries


def _entry(name: str, info: Any) -> Entry:
    if not isinstance(info, dict):
        raise ValueError(f"not safetensors data (tensor '{name}' is described by {type(info).__name__})")
    code, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if not isinstance(code, str) or code not in CODES:
        raise ValueError(f"tensor '{name}' has dtype {code!r}, which is not a safetensors dtype flctl takes "
                         f"({', '.join(CODES)})")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                              for d in shape):
        raise ValueError(f"not safetensors data (tensor '{name}' has shape {shape!r})")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) and not isinstance(o, bool)
                                                                    and o >= 0 for o in offsets)):
        raise ValueError(f"not safetensors data (tensor '{name}' has data_offsets {offsets!r})")
    dtype = _NATIVE[code] if code in _NATIVE else _extra_dtypes()[code]
    begin, end = offsets
    if end - begin != math.prod(shape) * dtype.itemsize:
        raise ValueError(f"not safetensors data (tensor '{name}' of dtype {code} and shape {shape} takes "
                         f"{math.prod(shape) * dtype.itemsize} bytes, not {end - begin})")
    return Entry(name, dtype, tuple(shape), begin, end)


def read_header(path: Path) -> tuple[int, list[Entry]]:
    """`parse_header` for a file: reads only the header."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        prefix = handle.read(_LENGTH.size)
        length = header_length(prefix)
        return parse_header(prefix + handle.read(length), size)


def read_metadata(path: Path) -> dict[str, str]:
    """The header's `__metadata__` of a safetensors file (empty when it has none); ValueError when it is not
    text keys and values."""
    with open(path, "rb") as handle:
        prefix = handle.read(_LENGTH.size)
        return _metadata(handle.read(header_length(prefix)), path.name)


def metadata_of(data: bytes | bytearray | memoryview) -> dict[str, str]:
    """The header's `__metadata__` of safetensors bytes (empty when it has none); ValueError when the header cannot
    be read or its metadata is not text keys and values."""
    length = header_length(data)
    if len(data) < _LENGTH.size + length:
        raise ValueError(f"not safetensors data (a header of {length} bytes runs past the end)")
    return _metadata(data[_LENGTH.size:_LENGTH.size + length], "the data")


def _metadata(text: bytes | bytearray | memoryview, whose: str) -> dict[str, str]:
    try:
        raw = json.loads(bytes(text).decode("utf-8") or "{}")
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"not safetensors data (the header is not UTF-8 JSON: {exc})") from None
    metadata = raw.get("__metadata__", {}) if isinstance(raw, dict) else None
    if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                  for k, v in metadata.items()):
        raise ValueError(f"not safetensors data ({whose}'s __metadata__ is not text keys and values)")
    return metadata


def check_file(path: Path) -> None:
    """Raise ValueError unless `path` holds safetensors data that `read_file` accepts; reads only the header."""
    read_header(path)


def decode(data: bytes | bytearray | memoryview) -> Params:
    """Parameters from safetensors bytes (each array a copy, so `data` may go); ValueError for anything else."""
    return {name: array.copy() for name, array in views(data).items()}


def views(data: bytes | bytearray | memoryview) -> Params:
    """Parameters as arrays over `data` itself, without copying (writable when `data` is); ValueError for anything
    that is not safetensors data."""
    start, entries = parse_header(data, len(data))
    return {e.name: np.frombuffer(data, e.dtype, math.prod(e.shape), start + e.begin).reshape(e.shape)
            for e in entries}


def receive(read_into: Callable[[memoryview], None], size: int, reuse: dict[str, Any] | None = None) -> Params:
    """Parameters from a stream of `size` bytes of safetensors data, read straight into new (writable) arrays:
    `read_into(view)` fills `view` with the stream's next bytes. ValueError when the data is not safetensors
    (what follows in the stream is then unread).

    `reuse` (emptied here) offers arrays to read into instead of new ones, by name: one is used when it has the
    tensor's dtype and shape, owns its memory, is contiguous and writable, and nothing but `reuse` refers to it (a
    script that still holds the array it sent keeps it as it was). Reading into memory already there spares the
    kernel faulting in and zeroing new pages (0.65 CPU-s per GB on the machine flctl is measured on)."""
    reuse = reuse if reuse is not None else {}
    prefix = bytearray(min(_LENGTH.size, size))
    read_into(memoryview(prefix))
    head = prefix + bytearray(min(header_length(prefix), size - len(prefix)))
    read_into(memoryview(head)[len(prefix):])
    _start, entries = parse_header(head, size)
    out: Params = {}
    for e in entries:
        array = reuse.pop(e.name) if _reusable(reuse, e.name, e.dtype, e.shape) else np.empty(e.shape, e.dtype)
        if array.nbytes:
            read_into(_bytes_of(array))
        out[e.name] = array
    reuse.clear()
    return out


def reusable(params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The arrays of `params` that `receive` could read into later (numpy arrays that own their memory, contiguous
    and writable): what a sender keeps to offer, and nothing else (a torch tensor, a view: not held longer)."""
    return {name: value for name, value in params.items() if isinstance(value, np.ndarray) and value.base is None
            and value.flags.c_contiguous and value.flags.writeable}


def _reusable(reuse: dict[str, Any], name: str, dtype: np.dtype, shape: tuple[int, ...]) -> bool:
    if not isinstance(reuse.get(name), np.ndarray) or not held_only_by(reuse, name):
        return False
    flags = reuse[name].flags
    return bool(reuse[name].dtype == dtype and reuse[name].shape == shape and reuse[name].base is None
                and flags.c_contiguous and flags.writeable)




def read_file(path: Path) -> Params:
    """Parameters from a safetensors file, read straight into new arrays (writable, the file may go)."""
    size = path.stat().st_size
    with open(path, "rb", buffering=0) as handle:

        def read_into(view: memoryview) -> None:
            while view.nbytes:
                got = handle.readinto(view)
                if not got:
                    raise ValueError(f"not safetensors data ({path.name} ended early)")
                view = view[got:]

        return receive(read_into, size)


def map_file(path: Path) -> Params:
    """Parameters as read-only arrays over the file mapped into memory: nothing is read until used, and
    `release` gives back what was. The arrays stay valid after the file is deleted."""
    start, entries = read_header(path)
    if not entries or path.stat().st_size == start:
        return {e.name: np.empty(e.shape, e.dtype) for e in entries}
    with open(path, "rb") as handle:
        mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    return {e.name: np.frombuffer(mapped, e.dtype, math.prod(e.shape), start + e.begin).reshape(e.shape)
            for e in entries}


_PAGE = mmap.PAGESIZE


def mapping_of(array: np.ndarray) -> mmap.mmap | None:
    """The file mapping (`map_file`) `array` is a view of, or None."""
    base: Any = array
    while isinstance(base, np.ndarray | memoryview):
        base = base.base if isinstance(base, np.ndarray) else base.obj
    return base if isinstance(base, mmap.mmap) else None


def release(array: np.ndarray) -> None:
    """Give back the memory pages of a read-only file-mapped array (from `map_file`) that lie wholly inside it;
    the file's bytes are read again if the array is used again. Does nothing for other arrays."""
    base = mapping_of(array)
    if base is None or array.flags.writeable or not hasattr(mmap, "MADV_DONTNEED"):
        return
    origin = np.frombuffer(base, np.uint8, 1).ctypes.data
    first = array.ctypes.data - origin
    begin = -(-first // _PAGE) * _PAGE
    end = (first + array.nbytes) // _PAGE * _PAGE
    if end > begin:
        base.madvise(mmap.MADV_DONTNEED, begin, end - begin)
