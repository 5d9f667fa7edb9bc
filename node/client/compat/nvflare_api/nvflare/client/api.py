"""NVIDIA FLARE 2.x's Client API (`import nvflare.client as flare`) over flctl's own (`flctl.client`).

Every function takes NVIDIA FLARE's arguments (`ctx` included, which flctl ignores: one process or simulated site
has one connection) and does what NVIDIA FLARE's does, mapped onto flctl's task loop:

    NVIDIA FLARE                          flctl
    flare.receive() -> FLModel            fl.receive() -> fl.Model (params, round, meta, task)
    task "train" / "validate" /           task kind "train" / "evaluate" / "submit_model"
      "submit_model"
    FLModel.meta[NUM_STEPS_CURRENT_ROUND] Model.num_examples: the weight in averaging (1 when absent)
    ParamsType.FULL / DIFF                params_type "full" / "diff"
    flare.log(key, value, SCALAR, ...)    fl.log(key, value, step)

Params are torch tensors or numpy arrays as job.yml's `app.framework` says (`pytorch` unless the job says
`numpy`, as NVIDIA FLARE's ScriptRunner). The state kept between calls (the FLModel of the current task) is per
connection, so the simulator's sites, which share a process, each have their own.
"""

from __future__ import annotations

import json
import os
import threading
import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flctl.node.client import api as fl
from flctl.node.client import api_wire as wire

from ..apis.analytix import AnalyticsDataType
from ..app_common.abstract.fl_model import FLMetaKey, FLModel, ParamsType

TASK_NAMES = {"train": "train", "evaluate": "validate", "submit_model": "submit_model"}
"""flctl's task kinds as NVIDIA FLARE names its tasks."""


@dataclass
class _State:
    """What the compat layer keeps for one connection: the FLModel made of the current flctl task."""

    task: fl.Model | None = None
    model: FLModel | None = None
    rank: str = "0"


_states: weakref.WeakKeyDictionary[Any, _State] = weakref.WeakKeyDictionary()
_lock = threading.Lock()
_warned: set[str] = set()


def _state() -> _State:
    session = fl._connected()
    with _lock:
        state = _states.get(session)
        if state is None:
            state = _states[session] = _State()
        return state


def init(rank: str | int | None = None, config_file: str | None = None, ctx: Any = None) -> None:
    """Connect to flctl's site job process (again: nothing happens). Only rank 0 (the default, or env RANK) takes
    part: flctl runs one script process per site."""
    fl.init()
    chosen = str(rank if rank is not None else os.environ.get("RANK", "0"))
    _state().rank = chosen


def is_running(ctx: Any = None) -> bool:
    """True while the job goes on (a task is waiting: read it with `receive()`); False once it ended."""
    return fl.running()


def receive(timeout: float | None = None, ctx: Any = None) -> FLModel | None:
    """The current task's model as an FLModel; None once the job ended. Until `send()`, the same FLModel."""
    task = fl.receive(timeout)
    if task is None:
        return None
    state = _state()
    if state.task is not task or state.model is None:
        state.task, state.model = task, _fl_model(task)
    return state.model


def _fl_model(task: fl.Model) -> FLModel:
    total = task.meta.get("rounds")
    total_rounds = total if isinstance(total, int) and not isinstance(total, bool) and total >= 0 else None
    meta = {**task.meta, FLMetaKey.CURRENT_ROUND: task.round, FLMetaKey.TOTAL_ROUNDS: total_rounds,
            FLMetaKey.JOB_ID: fl.job_id(), FLMetaKey.SITE_NAME: fl.site_name()}
    params = task.params if task.params or task.task != "submit_model" else None
    return FLModel(params_type=ParamsType.FULL if params is not None else None, params=params,
                   current_round=task.round, total_rounds=total_rounds, meta=meta)


def send(model: FLModel, clear_cache: bool = True, ctx: Any = None) -> None:
    """Answer the current task with `model` (exactly once per task)."""
    if not isinstance(model, FLModel):
        raise TypeError(f"flare.send() takes an FLModel, not {type(model).__name__}")
    if model.params is not None and not isinstance(model.params, dict):
        raise TypeError(f"FLModel.params must be a dict of name -> array or tensor, not {type(model.params).__name__}")
    meta = dict(model.meta or {})
    steps = meta.pop(FLMetaKey.NUM_STEPS_CURRENT_ROUND, None)
    fl.send(fl.Model(params=dict(model.params or {}), metrics=_numbers(model.metrics or {}),
                     num_examples=_weight(steps), meta=_json_values(meta),
                     params_type="diff" if model.params_type == ParamsType.DIFF else "full"))
    if clear_cache:
        clear()


def clear(ctx: Any = None) -> None:
    """Forget the cached FLModel of the current task."""
    state = _state()
    state.task, state.model = None, None


def _weight(steps: Any) -> int:
    """NUM_STEPS_CURRENT_ROUND as flctl's num_examples: a whole number >= 0; 1 when absent (NVIDIA FLARE's
    aggregators weigh a result without it as 1)."""
    if steps is None:
        return 1
    if isinstance(steps, bool) or not isinstance(steps, int | float) or steps < 0:
        raise ValueError(f"meta[{FLMetaKey.NUM_STEPS_CURRENT_ROUND!r}] must be a number >= 0, not {steps!r}")
    return round(steps)


def _numbers(metrics: dict[str, Any]) -> dict[str, float]:
    """The metrics flctl can record (numbers); others are left out, with one warning per name."""
    kept: dict[str, float] = {}
    for name, value in metrics.items():
        try:
            kept[str(name)] = float(value)
        except (TypeError, ValueError):
            _warn_once(f"metric:{name}", f"metric {name!r} is not a number ({type(value).__name__}): flctl "
                                         "records numbers only, so it is left out")
    return kept


def _json_values(meta: dict[str, Any]) -> dict[str, Any]:
    """The meta entries that can travel (JSON values); flctl's wire carries nothing else."""
    kept: dict[str, Any] = {}
    for key, value in meta.items():
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            continue
        kept[str(key)] = value
    return kept


def _task_kind() -> str:
    if _state().rank != "0":
        raise RuntimeError("only rank 0 can ask for the task's name (flctl runs one script process per site)")
    task = fl.receive()
    return task.task if task is not None else ""


def is_train(ctx: Any = None) -> bool:
    """Whether the current task is "train"."""
    return _task_kind() == "train"


def is_evaluate(ctx: Any = None) -> bool:
    """Whether the current task is "validate" (flctl's evaluate: answer with metrics)."""
    return _task_kind() == "evaluate"


def is_submit_model(ctx: Any = None) -> bool:
    """Whether the current task is "submit_model" (answer with this site's own best model)."""
    return _task_kind() == "submit_model"


def get_task_name(ctx: Any = None) -> str:
    """The current task's name as NVIDIA FLARE names it: "train", "validate" or "submit_model"."""
    kind = _task_kind()
    return TASK_NAMES.get(kind, kind)


def get_site_name(ctx: Any = None) -> str:
    """The name of the site this script runs at."""
    return fl.site_name()


def get_job_id(ctx: Any = None) -> str:
    """The id of the job this script belongs to."""
    return fl.job_id()


def get_config(ctx: Any = None) -> dict[str, Any]:
    """The client configuration NVIDIA FLARE gives a script (its TASK_EXCHANGE part), as flctl runs it."""
    framework = os.environ.get(wire.FRAMEWORK_ENV, "numpy")
    return {"TASK_EXCHANGE": {"exchange_format": framework, "server_expected_format": "numpy",
                              "transfer_type": "FULL", "train_with_eval": True, "train_task_name": "train",
                              "eval_task_name": "validate", "submit_model_task_name": "submit_model"}}


def system_info(ctx: Any = None) -> dict[str, Any]:
    """The job id and site name."""
    return {"job_id": fl.job_id(), "site_name": fl.site_name()}


def log(key: str, value: Any, data_type: AnalyticsDataType | str = AnalyticsDataType.SCALAR, ctx: Any = None,
        **kwargs: Any) -> None:
    """Record `value` under `key`: a number (SCALAR, METRIC) or a dict of numbers (SCALARS, METRICS, recorded as
    KEY/NAME), at step `global_step` (or `step`) when given. Other kinds are dropped with one warning."""
    kind = AnalyticsDataType(data_type)
    step = kwargs.get("global_step", kwargs.get("step"))
    step = int(step) if isinstance(step, int | float) and not isinstance(step, bool) else None
    if kind in (AnalyticsDataType.SCALAR, AnalyticsDataType.METRIC):
        fl.log(key, value, step=step)
    elif kind in (AnalyticsDataType.SCALARS, AnalyticsDataType.METRICS):
        if not isinstance(value, dict):
            raise TypeError(f"flare.log({key!r}, ..., {kind.value}) takes a dict of name -> number")
        for name, number in value.items():
            fl.log(f"{key}/{name}" if key else str(name), number, step=step)
    else:
        _warn_once(f"kind:{kind.value}", f"flare.log(..., {kind.value}): flctl records numbers only; "
                                         f"{kind.value} values are dropped")


def shutdown(ctx: Any = None) -> None:
    """Nothing to release: the connection ends with the script."""


def _warn_once(key: str, message: str) -> None:
    with _lock:
        if key in _warned:
            return
        _warned.add(key)
    warnings.warn(message, stacklevel=3)


def train(_func: Callable[..., Any] | None = None, **_kwargs: Any) -> Any:
    """The deprecated `@flare.train` decorator: the function gets the received FLModel and returns the FLModel
    to send, which is sent."""
    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            received = receive()
            result = func(received, *args, **kwargs)
            if not isinstance(result, FLModel):
                raise TypeError(f"a @flare.train function must return an FLModel, not {type(result).__name__}")
            send(result)
            return result
        return wrapper
    return decorate(_func) if _func is not None else decorate


def evaluate(_func: Callable[..., Any] | None = None, **_kwargs: Any) -> Any:
    """The deprecated `@flare.evaluate` decorator: the function gets the received FLModel (its result is kept as
    this round's metrics by the caller)."""
    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return func(receive(), *args, **kwargs)
        return wrapper
    return decorate(_func) if _func is not None else decorate
