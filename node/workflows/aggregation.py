"""Pure maths for combining site results: weighted model averages and weighted metric means.

`WeightedSum` keeps one running sum while results arrive, so memory stays about one model
whatever the number of sites. It adds a model a block at a time: a model mapped from a file
(`flctl.node.wire.tensors.map_file`) is read a block at a time and each block's pages are given back as
soon as it is added, so adding never holds a second copy of the model.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping

import numpy as np

from flctl.node.jobs.tasks import Params
from flctl.node.wire.model_buffers import ModelBuffers
from flctl.node.wire.tensors import is_float, is_numeric, release

BLOCK = 1 << 20
"""Elements added per step: a weighted add's one temporary is a block of the sum's dtype (4 MiB of float32)."""


class WeightedSum:
    """A running weighted sum of models; `result()` is their weighted mean.

    Every model added must have the keys and shapes of `like` when given (the global model),
    otherwise of the first model added. When every weight is zero, the models count equally.
    Sums are kept in float32 for float16, bfloat16, float8 and float32 tensors (as NVIDIA FLARE and
    Flower average them: a float64 sum would double the server's memory for a big model; a 16-bit
    tensor is widened exactly, a block at a time), in float64 for float64 and integer tensors, in
    complex64 for complex64. The mean is rounded once, to the model's own dtype.

    With `buffers` (a workflow's own `ModelBuffers`, kept from round to round) the sums are made in one buffer taken
    from it: last round's, once nothing holds that round's mean any more, so its pages are not faulted in and
    zeroed by the kernel again (0.65 CPU-s per GB on the machine flctl is measured on, against 0.08 s to zero pages
    already there); the mean (made in place of the sums) is then a view of that buffer.
    """

    def __init__(self, like: Mapping[str, np.ndarray] | None = None, like_name: str = "the global model",
                 buffers: ModelBuffers | None = None) -> None:
        self._shapes: dict[str, tuple[int, ...]] | None = None
        self._dtypes: dict[str, np.dtype] = {}
        self._reference = like_name
        if like is not None:
            self._shapes = {name: tuple(np.shape(value)) for name, value in like.items()}
            self._dtypes = {name: np.asarray(value).dtype for name, value in like.items()}
        self._sums: dict[str, np.ndarray] = {}
        self._buffers = buffers
        self._total = 0.0
        self._count = 0
        self._mean: Params | None = None

    @property
    def count(self) -> int:
        """How many models were added."""
        return self._count

    @property
    def total_weight(self) -> float:
        return self._total

    def add(self, params: Mapping[str, np.ndarray], weight: float, site: str = "a site") -> None:
        """Add one site's model; if it does not fit, raise ValueError naming `site` and the tensor, changing nothing."""
        if self._mean is not None:
            raise RuntimeError("the sum was already averaged by result(); start a new WeightedSum")
        weight = float(weight)
        if not math.isfinite(weight) or weight < 0:
            raise ValueError(f"{site}: weight {weight} is not a finite number >= 0")
        arrays = {name: np.asarray(value) for name, value in params.items()}
        self.check(arrays, site)
        if self._shapes is None:
            self._shapes = {name: array.shape for name, array in arrays.items()}
            self._reference = site
        for name, array in arrays.items():
            self._dtypes.setdefault(name, array.dtype)
        if self._total == 0 and weight > 0:
            # Every weight so far was zero, so the sums are plain sums: start over, weighted.
            self._sums = {}
        factor = weight if self._total > 0 or weight > 0 else 1.0
        if factor > 0:
            if not self._sums and self._buffers is not None:
                self._sums = _zeros_in(self._buffers, arrays)
            for name, array in arrays.items():
                total = self._sums.get(name)
                if total is None:
                    total = self._sums[name] = np.zeros(array.shape, accumulator_dtype(array.dtype))
                _add_scaled(total.reshape(-1), array.reshape(-1), factor)
        self._total += weight
        self._count += 1

    def result(self) -> Params:
        """The weighted mean, each tensor cast back to its original dtype (integers rounded). The mean is made in
        place of the sums: call it once all models are added (again, it returns the same mean)."""
        if self._mean is not None:
            return self._mean
        if self._count == 0:
            raise ValueError("no models were added")
        divisor = self._total if self._total > 0 else float(self._count)
        out: Params = {}
        for name in list(self._sums):
            mean = self._sums.pop(name)
            mean /= divisor
            dtype = self._dtypes[name]
            if dtype.kind in "biu":
                np.rint(mean, out=mean)
            out[name] = mean.astype(dtype, copy=False)
            del mean
        self._mean = out
        return out

    def check(self, arrays: Mapping[str, np.ndarray], site: str = "a site") -> None:
        """Raise ValueError, naming `site` and the tensor, unless `arrays` can be added: numeric, finite, with the
        names, shapes and dtypes of the models before (or of `like`)."""
        for name, array in arrays.items():
            if not is_numeric(array.dtype):
                raise ValueError(f"{site}: tensor '{name}' has dtype {array.dtype}, which is not numeric")
        if self._shapes is not None:
            for name, shape in self._shapes.items():
                if name not in arrays:
                    raise ValueError(f"{site}: tensor '{name}' is missing (it is in {self._reference})")
                if arrays[name].shape != shape:
                    raise ValueError(f"{site}: tensor '{name}' has shape {arrays[name].shape}, "
                                     f"but {self._reference} has {shape}")
            for name in arrays:
                if name not in self._shapes:
                    raise ValueError(f"{site}: tensor '{name}' is not in {self._reference}")
        for name, array in arrays.items():
            want = self._dtypes.get(name)
            if want is not None and array.dtype != want:
                raise ValueError(f"{site}: tensor '{name}' has dtype {array.dtype}, but {self._reference} has {want}")
            if not all_finite(array):
                raise ValueError(f"{site}: tensor '{name}' holds NaN or infinite values")


def full_params(params: Mapping[str, np.ndarray], params_type: str, base: Callable[[], Params]) -> Params:
    """A site's answer as a model: `params` themselves when `params_type` is "full"; `base()` (the model the site
    was sent) plus them when it is "diff", each tensor in the model's dtype. ValueError naming what is wrong: another
    params_type, a diff with no model to add it to, or a diff whose tensors are not the model's."""
    if params_type == "full":
        return dict(params)
    if params_type != "diff":
        raise ValueError(f"params_type {params_type!r} is neither 'full' nor 'diff'")
    model = base()
    if not model:
        raise ValueError("it sent a diff, but there is no model yet to add it to (the first round of a job with no "
                         "initial model); send the full model")
    if set(params) != set(model):
        raise ValueError(f"its diff has the tensors {sorted(params)}, the model has {sorted(model)}")
    out: Params = {}
    for name, value in model.items():
        sent = np.asarray(value)
        diff = np.asarray(params[name])
        if diff.shape != sent.shape:
            raise ValueError(f"its diff of tensor '{name}' has shape {diff.shape}, the model's is {sent.shape}")
        if is_float(sent.dtype) and sent.dtype.kind != "f":  # bfloat16, float8: added in float32, rounded once
            out[name] = np.add(sent, diff, dtype=np.float32).astype(sent.dtype)
        else:
            out[name] = (sent + diff).astype(sent.dtype, copy=False)
    return out


def _zeros_in(buffers: ModelBuffers, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A zeroed sum for each of `arrays` (in its accumulator dtype), all in one buffer taken from `buffers`."""
    plan: list[tuple[str, tuple[int, ...], np.dtype, int]] = []
    size = 0
    for name, array in arrays.items():
        dtype = accumulator_dtype(array.dtype)
        size = -(-size // 64) * 64  # each sum starts on a 64-byte boundary
        plan.append((name, array.shape, dtype, size))
        size += array.size * dtype.itemsize
    buffer = np.frombuffer(buffers.take(size), np.uint8)
    buffer.fill(0)
    return {name: buffer[offset:offset + math.prod(shape) * dtype.itemsize].view(dtype).reshape(shape)
            for name, shape, dtype, offset in plan}


def all_finite(array: np.ndarray) -> bool:
    """Whether every value of `array` is finite (integers always are), looked at a block at a time: no temporary
    the size of the array, and a file-mapped block's pages given back once looked at."""
    if not is_float(array.dtype) and array.dtype.kind != "c":
        return True
    flat = array.reshape(-1)
    for start in range(0, flat.size, BLOCK):
        block = flat[start:start + BLOCK]
        finite = bool(np.isfinite(block).all())
        release(block)
        if not finite:
            return False
    return True


def _add_scaled(total: np.ndarray, values: np.ndarray, factor: float) -> None:
    """total += values * factor, a block at a time; a file-mapped block's pages are given back once added."""
    for start in range(0, values.size, BLOCK):
        block = values[start:start + BLOCK]
        if factor == 1.0:
            total[start:start + BLOCK] += block
        else:
            total[start:start + BLOCK] += np.multiply(block, total.dtype.type(factor), dtype=total.dtype)
        release(block)


def accumulator_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype a sum of `dtype` tensors is kept in (see `WeightedSum`)."""
    if dtype.kind == "c":
        return np.dtype(np.complex64) if dtype.itemsize <= 8 else np.dtype(np.complex128)
    if is_float(dtype) and dtype.itemsize <= 4:
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def weighted_metrics(results: Iterable[tuple[Mapping[str, float], float]]) -> dict[str, float]:
    """Weighted mean of each metric over the sites that reported it (plain mean where their weights sum to 0)."""
    sums: dict[str, float] = {}
    weights: dict[str, float] = {}
    plain: dict[str, tuple[float, int]] = {}
    for metrics, weight in results:
        for name, value in metrics.items():
            sums[name] = sums.get(name, 0.0) + float(value) * float(weight)
            weights[name] = weights.get(name, 0.0) + float(weight)
            total, count = plain.get(name, (0.0, 0))
            plain[name] = (total + float(value), count + 1)
    return {
        name: sums[name] / weights[name] if weights[name] > 0 else plain[name][0] / plain[name][1]
        for name in sorted(sums)
    }

