"""A model as one flat float64 vector and back: what HE encrypts and masking quantizes.

The layout (names, dtypes, shapes, in name order) travels in the clear with the payload: it is the model's
architecture, which the server knows anyway; the values never do.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from flctl.node.jobs.tasks import Params
from flctl.node.wire.tensors import is_extra_float, is_numeric


@dataclass(frozen=True)
class ModelLayout:
    """Each tensor's name, dtype and shape, in name order."""

    entries: tuple[tuple[str, str, tuple[int, ...]], ...]

    @classmethod
    def of(cls, params: Mapping[str, np.ndarray]) -> ModelLayout:
        entries = []
        for name in sorted(params):
            array = np.asarray(params[name])
            if not is_numeric(array.dtype) or array.dtype.kind == "c":
                raise ValueError(f"tensor '{name}' has dtype {array.dtype}; secure aggregation sums real numbers")
            entries.append((name, _dtype_text(array.dtype), tuple(int(n) for n in array.shape)))
        return cls(tuple(entries))

    @property
    def size(self) -> int:
        return sum(math.prod(shape) for _, _, shape in self.entries)

    def flatten(self, params: Mapping[str, np.ndarray]) -> np.ndarray:
        """The tensors of `params`, which must fit this layout, as one float64 vector."""
        if set(params) != {name for name, _, _ in self.entries}:
            raise ValueError(f"the model has the tensors {sorted(params)}, the layout {self.names()}")
        out = np.empty(self.size, np.float64)
        at = 0
        for name, _, shape in self.entries:
            array = np.asarray(params[name])
            if tuple(array.shape) != shape:
                raise ValueError(f"tensor '{name}' has shape {tuple(array.shape)}, the layout {shape}")
            n = math.prod(shape)
            out[at:at + n] = array.reshape(-1)
            at += n
        return out

    def unflatten(self, vector: np.ndarray) -> Params:
        """`vector` back as tensors of this layout (integer tensors rounded)."""
        if vector.size != self.size:
            raise ValueError(f"the vector has {vector.size} values, the layout {self.size}")
        out: Params = {}
        at = 0
        for name, dtype, shape in self.entries:
            n = math.prod(shape)
            part = vector[at:at + n].reshape(shape)
            kind = np.dtype(dtype).kind
            out[name] = (np.rint(part) if kind in "biu" else part).astype(dtype)
            at += n
        return out

    def names(self) -> list[str]:
        return [name for name, _, _ in self.entries]

    def as_json(self) -> list[list[Any]]:
        return [[name, dtype, list(shape)] for name, dtype, shape in self.entries]

    @classmethod
    def from_json(cls, raw: Any) -> ModelLayout:
        """A layout from its JSON form; ValueError when it is not one."""
        try:
            entries = tuple((str(name), _dtype_text(np.dtype(str(dtype))), tuple(int(n) for n in shape))
                            for name, dtype, shape in raw)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"not a model layout: {exc}") from None
        if any(n < 0 for _, _, shape in entries for n in shape):
            raise ValueError("not a model layout: a negative dimension")
        return cls(entries)


def _dtype_text(dtype: np.dtype) -> str:
    """How a layout names `dtype`: numpy's `str` ("<f4"), or the name of an ml_dtypes float ("bfloat16"), whose
    `str` ("<V2") would not name it back."""
    return dtype.name if is_extra_float(dtype) else dtype.str
