"""Model parameters as bytes: safetensors in, safetensors out, never pickle.

torch is never imported here: a torch tensor is recognised by its type's module and turned
into numpy through its own methods, so numpy-only sites need no torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.numpy
from safetensors import SafetensorError, safe_open

from node.tasks import Params

_NUMERIC_KINDS = "biufc"
NUMPY_DTYPES = frozenset({"F64", "F32", "F16", "I64", "U64", "I32", "U32", "I16", "U16", "I8", "U8", "BOOL", "C64"})
"""Safetensors dtypes that numpy holds, so `decode` accepts them."""


def to_numpy(value: Any) -> np.ndarray:
    """A numpy array from a numpy array, a python number or (nested) list, or a torch tensor."""
    if type(value).__module__.startswith("torch"):
        tensor = value.detach().cpu()
        if str(tensor.dtype) == "torch.bfloat16":  # numpy has no bfloat16
            tensor = tensor.float()
        array = np.asarray(tensor.numpy())
    else:
        array = np.asarray(value)
    if array.dtype.kind not in _NUMERIC_KINDS:
        raise ValueError(f"cannot send a {type(value).__name__} of dtype {array.dtype}; use numbers")
    return array


def encode(params: Mapping[str, Any]) -> bytes:
    """Safetensors bytes of `params` (name -> numpy array, number, list or torch tensor)."""
    arrays: dict[str, np.ndarray] = {}
    for name, value in params.items():
        if not isinstance(name, str):
            raise ValueError(f"parameter names must be strings, not {type(name).__name__} ({name!r})")
        try:
            array = to_numpy(value)
            arrays[name] = array if array.flags.c_contiguous else array.copy(order="C")  # keeps 0-d arrays 0-d
        except ValueError as exc:
            raise ValueError(f"parameter '{name}': {exc}") from None
    try:
        return safetensors.numpy.save(arrays)
    except SafetensorError as exc:
        raise ValueError(f"cannot encode parameters: {exc}") from None


def decode(data: bytes) -> Params:
    """Parameters from safetensors bytes; raise ValueError for anything else."""
    try:
        return dict(safetensors.numpy.load(bytes(data)))
    except KeyError as exc:  # a dtype numpy cannot hold (bfloat16, float8)
        raise ValueError(f"safetensors data with dtype {exc} that numpy cannot hold; send float32") from None
    except (SafetensorError, ValueError, TypeError) as exc:
        raise ValueError(f"not safetensors data ({exc})") from None


def check_file(path: Path) -> None:
    """Raise ValueError unless `path` holds safetensors data that `decode` accepts; reads only the header.

    Safetensors checks that the header is JSON, that every tensor's offsets fit its dtype and shape, and that
    the tensors cover the data exactly; this adds that numpy can hold every dtype.
    """
    try:
        with safe_open(str(path), framework="numpy") as handle:
            for name in handle.keys():  # noqa: SIM118 - a safetensors handle, not a dict
                dtype = handle.get_slice(name).get_dtype()
                if dtype not in NUMPY_DTYPES:
                    raise ValueError(f"tensor '{name}' has dtype {dtype}, which numpy cannot hold; send float32")
    except SafetensorError as exc:
        raise ValueError(f"not safetensors data ({exc})") from None
