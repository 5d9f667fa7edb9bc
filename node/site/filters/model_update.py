"""The update a result carries, for the filters that act on it (percentile_privacy, svt_privacy, gaussian_dp).

Shokri & Shmatikov's largest-update sharing, the sparse vector technique and the Gaussian mechanism all bound and
perturb what a site's training *changed*, not the model itself. A script answers with the model (`full`, the
default) or with its change (`diff`, the result's `params_type` meta): `update_of` turns either into the update, in
float64, and `params_with` turns the filtered update back into what the script answered with (the model the task
brought plus the update, or the update alone), each tensor in the dtype the script sent.

Nothing a script sends escapes the filter that way: every tensor is treated as part of the update, whatever its
dtype (integer and bool tensors are filtered as numbers and rounded back; a complex tensor keeps its real part), and
a tensor the task did not bring (a new name, or another shape) counts whole as update. A script that claims `diff`
for a model gets its model clipped and noised as an update: distorted, never sent in clear. An update holding NaN or
infinity is refused (ValueError): it cannot be clipped.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from flctl.node.jobs.tasks import PARAMS_TYPE, Params, TaskKind, TaskResult

Update = dict[str, np.ndarray]
"""Tensor name -> its update, float64, in the tensor's shape."""


def carries_update(result: TaskResult, task_kind: str) -> bool:
    """Whether `result` is filtered: it has params, and answers any task but a swarm round's `aggregate` (the mean
    of models their sites filtered already: filtering it again would clip and noise the mean itself; see
    `own_aggregate`)."""
    return bool(result.params) and task_kind != TaskKind.AGGREGATE


def own_aggregate(result: TaskResult, received: Params | None, task_meta: dict[str, Any]) -> TaskResult:
    """A swarm `aggregate` answer as the site sends it: the weighted mean of the models the task brought, computed
    here (by the Client API's own function, so an honest answer is unchanged), whatever the script answered (it
    could answer with its own raw model). ValueError when the task's models cannot be averaged."""
    from flctl.node.client.swarm import weighted_mean

    return replace(result, params=weighted_mean(received or {}, task_meta.get("weights", {})))


def is_diff(result: TaskResult) -> bool:
    """Whether the script answered with the change to the model (`params_type: diff`) rather than the model."""
    return bool(result.meta.get(PARAMS_TYPE) == "diff")


def update_of(result: TaskResult, received: Params | None) -> Update:
    """The update `result` carries: its params when they are a diff; else each tensor less the one of its name and
    shape the task brought (`received`; none: zero). ValueError for NaN or infinity."""
    base = {} if is_diff(result) else (received or {})
    update = {name: _float64(value) - _reference(base.get(name), np.shape(value))
              for name, value in result.params.items()}
    bad = sorted(name for name, value in update.items() if not np.all(np.isfinite(value)))
    if bad:
        raise ValueError(f"the update of {', '.join(bad[:3])}{' and others' if len(bad) > 3 else ''} holds NaN or "
                         "infinity; it cannot be clipped, so nothing is sent")
    return update


def params_with(result: TaskResult, received: Params | None, update: Update) -> Params:
    """What goes out for `result` once its update is filtered to `update`: the diff itself, or the model the task
    brought plus `update`; each tensor in the dtype the script sent it in."""
    base = {} if is_diff(result) else (received or {})
    return {name: _as_dtype(update[name] + _reference(base.get(name), np.shape(value)), np.asarray(value).dtype)
            for name, value in result.params.items()}


def flat(update: Update, names: list[str]) -> np.ndarray:
    """The update of `names`, in that order, as one vector."""
    if not names:
        return np.zeros(0)
    return np.concatenate([update[name].ravel() for name in names])


def unflat(vector: np.ndarray, update: Update, names: list[str]) -> Update:
    """`vector` cut back into tensors of `names`, shaped as in `update` (the inverse of `flat`)."""
    out: Update = {}
    start = 0
    for name in names:
        size = update[name].size
        out[name] = vector[start:start + size].reshape(update[name].shape)
        start += size
    return out


def _float64(value: np.ndarray) -> np.ndarray:
    array = np.asarray(value)
    return np.real(array).astype(np.float64) if np.iscomplexobj(array) else array.astype(np.float64)


def _reference(value: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray | float:
    """The tensor the task brought, as float64, when it has `shape`; else 0 (the whole tensor is the update)."""
    if value is None or np.shape(value) != shape:
        return 0.0
    return _float64(value)


def _as_dtype(value: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """`value` (float64) in `dtype`: rounded (and kept in range) for integers, >= 0.5 for bool."""
    value = np.asarray(value)
    if dtype.kind == "b":
        return np.asarray(value >= 0.5)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        rounded: np.ndarray = np.clip(np.rint(value), info.min, info.max)
        return rounded.astype(dtype)
    return value.astype(dtype)
