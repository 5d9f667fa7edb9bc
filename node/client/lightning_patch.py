"""PyTorch Lightning in a flctl job: one callback on the trainer does the Client API's work (NVIDIA FLARE's
`nvflare.client.lightning.patch`, argument for argument).

- On fit, validate or test start, the task's global model is loaded into the LightningModule (`load_state_dict`,
  `strict` as asked), once per task (a task received, not yet answered, is not received again).
- When validation ends (not the sanity check): for an evaluate task, `trainer.callback_metrics` are its answer
  (metrics only); for a train task they are kept: the last ones go with the trained model, and those of a
  `trainer.validate` before `fit` (the global model's) also go in the answer's meta as `initial_metrics`.
- When training ends, a train task is answered with the module's `state_dict()` (on the CPU), the last validation
  metrics, the steps trained this round as its weight, and the module's `__fl_meta__` dict in the meta.
- `update_fit_loop`: each `fit` after the first trains as many more epochs (and steps) as the first did, since a
  trainer's `max_epochs` counts from its first fit. `restore_state`: the optimizers' and LR schedulers' state is
  carried from one round's fit to the next (Lightning makes new ones each fit).

Only rank 0 (a trainer's `global_rank`) talks to flctl. The job's params are torch tensors
(`framework: pytorch`, or `compat: nvflare`'s default); numpy params are converted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flctl.node.client import api as fl

FL_META = "__fl_meta__"
"""A LightningModule attribute (a dict of JSON values) added to the meta of every answer."""


@dataclass
class _State:
    """What the callback keeps between hooks and rounds."""

    strict: bool
    update_fit_loop: bool
    restore_state: bool
    task: fl.Model | None = None  # the task whose model is loaded and not yet answered
    metrics: dict[str, float] = field(default_factory=dict)
    initial_metrics: dict[str, float] = field(default_factory=dict)
    fits: int = 0
    epochs_per_fit: int = 0
    steps_per_fit: int = 0
    steps_at_fit_start: int = 0
    optimizer_states: list[dict[str, Any]] = field(default_factory=list)
    scheduler_states: list[dict[str, Any]] = field(default_factory=list)


def patch(trainer: Any, restore_state: bool = True, load_state_dict_strict: bool = True,
          update_fit_loop: bool = True) -> None:
    """Add flctl's callback to `trainer` (a `pytorch_lightning` or `lightning.pytorch` Trainer) and connect to the
    site (`fl.init()`), on rank 0 only."""
    base = _callback_class(trainer)
    state = _State(load_state_dict_strict, update_fit_loop, restore_state)
    callback_type = type("FLCallback", (base,), dict(_HOOKS))
    callback = callback_type()
    callback.fl_state = state
    trainer.callbacks.append(callback)
    if getattr(trainer, "global_rank", 0) == 0:
        fl.init()


def _callback_class(trainer: Any) -> type:
    """The Callback base of the Lightning package `trainer` comes from (`lightning.pytorch` or
    `pytorch_lightning`)."""
    import importlib

    package = "lightning.pytorch" if type(trainer).__module__.startswith("lightning.") else "pytorch_lightning"
    found: type = importlib.import_module(package).Callback
    return found


def _rank0(trainer: Any) -> bool:
    return getattr(trainer, "global_rank", 0) == 0


def _load(state: _State, trainer: Any, module: Any) -> fl.Model | None:
    """The current task, its model loaded into `module` the first time it is seen; None once the job ended."""
    task = fl.receive()
    if task is None:
        state.task = None
        return None
    if task is not state.task:
        state.task = task
        state.metrics, state.initial_metrics = {}, {}
        if task.params:
            module.load_state_dict(_tensors(task.params), strict=state.strict)
    return task


def _tensors(params: dict[str, Any]) -> dict[str, Any]:
    import torch

    return {name: value if isinstance(value, torch.Tensor) else torch.as_tensor(value)
            for name, value in params.items()}


def _metrics(trainer: Any) -> dict[str, float]:
    """`trainer.callback_metrics` as numbers (a one-element tensor is a number)."""
    found: dict[str, float] = {}
    for name, value in dict(trainer.callback_metrics).items():
        try:
            found[str(name)] = float(value)
        except (TypeError, ValueError):
            continue
    return found


def _meta(module: Any, extra: dict[str, Any]) -> dict[str, Any]:
    own = getattr(module, FL_META, None)
    return {**(own if isinstance(own, dict) else {}), **extra}


def _on_fit_start(self: Any, trainer: Any, pl_module: Any) -> None:
    state: _State = self.fl_state
    if not _rank0(trainer):
        return
    task = _load(state, trainer, pl_module)
    if task is None:
        trainer.should_stop = True  # the job ended: nothing to train for
        return
    loop = trainer.fit_loop
    if state.fits == 0:
        state.epochs_per_fit = max(int(loop.max_epochs or 0), 0)
        state.steps_per_fit = max(int(loop.max_steps or -1), -1)
    elif state.update_fit_loop:
        if state.epochs_per_fit > 0:
            loop.max_epochs = trainer.current_epoch + state.epochs_per_fit
        if state.steps_per_fit > 0:
            loop.max_steps = trainer.global_step + state.steps_per_fit
    state.fits += 1
    state.steps_at_fit_start = trainer.global_step


def _validating(trainer: Any) -> bool:
    """Whether the trainer runs `trainer.validate()` (not the validation inside `fit`)."""
    return bool(trainer.state.fn == "validate")


def _on_validation_start(self: Any, trainer: Any, pl_module: Any) -> None:
    if _rank0(trainer) and _validating(trainer):
        _load(self.fl_state, trainer, pl_module)


def _on_test_start(self: Any, trainer: Any, pl_module: Any) -> None:
    if _rank0(trainer):
        _load(self.fl_state, trainer, pl_module)


def _on_validation_end(self: Any, trainer: Any, pl_module: Any) -> None:
    state: _State = self.fl_state
    if not _rank0(trainer) or trainer.sanity_checking or state.task is None:
        return
    metrics = _metrics(trainer)
    if state.task.task == "evaluate":
        if _validating(trainer):
            fl.send(fl.Model(metrics=metrics, num_examples=1, meta=_meta(pl_module, {})))
            state.task = None
        return
    state.metrics = metrics
    if _validating(trainer):  # trainer.validate() before fit: the global model's figures
        state.initial_metrics = metrics


def _on_train_start(self: Any, trainer: Any, pl_module: Any) -> None:
    state: _State = self.fl_state
    if not state.restore_state:
        return
    for optimizer, saved in zip(trainer.optimizers, state.optimizer_states, strict=False):
        optimizer.load_state_dict(saved)
    for config, saved in zip(trainer.lr_scheduler_configs, state.scheduler_states, strict=False):
        config.scheduler.load_state_dict(saved)


def _on_train_end(self: Any, trainer: Any, pl_module: Any) -> None:
    state: _State = self.fl_state
    if state.restore_state:
        state.optimizer_states = [optimizer.state_dict() for optimizer in trainer.optimizers]
        state.scheduler_states = [config.scheduler.state_dict() for config in trainer.lr_scheduler_configs]
    if not _rank0(trainer) or state.task is None or state.task.task != "train":
        return
    steps = max(trainer.global_step - state.steps_at_fit_start, 0)
    params = {name: value.detach().cpu() for name, value in pl_module.state_dict().items()}
    extra = {"initial_metrics": state.initial_metrics} if state.initial_metrics else {}
    fl.send(fl.Model(params=params, metrics=state.metrics, num_examples=steps or 1,
                     meta=_meta(pl_module, extra)))
    state.task = None


_HOOKS = {"on_fit_start": _on_fit_start, "on_validation_start": _on_validation_start,
          "on_test_start": _on_test_start, "on_validation_end": _on_validation_end,
          "on_train_start": _on_train_start, "on_train_end": _on_train_end}
