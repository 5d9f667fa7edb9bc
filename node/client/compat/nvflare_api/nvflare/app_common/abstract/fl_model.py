"""`FLModel`, `ParamsType` and `FLMetaKey` as NVIDIA FLARE 2.x defines them (the same names, arguments and checks).

An `FLModel` is what a script receives (`flare.receive()`) and sends back (`flare.send(...)`): the params, whether
they are the whole model (FULL) or what training added to it (DIFF), metrics, the round and free-form meta.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ParamsType(StrEnum):
    """Whether `params` hold the whole model or the change to the model received."""

    FULL = "FULL"
    DIFF = "DIFF"


class FLMetaKey:
    """The keys of `FLModel.meta` flctl fills or reads."""

    NUM_STEPS_CURRENT_ROUND = "NUM_STEPS_CURRENT_ROUND"
    """Read from a sent model: its weight in averaging (flctl's num_examples); 1 when absent, as in NVIDIA FLARE."""
    PROCESS_RC_FILE = "PROCESS_RC_FILE"
    SUBMIT_MODEL_NAME = "submit_model_name"
    INITIAL_METRICS = "initial_metrics"
    FILTER_HISTORY = "filter_history"
    CONFIGS = "configs"
    VALIDATE_TYPE = "validate_type"
    CURRENT_ROUND = "current_round"
    TOTAL_ROUNDS = "total_rounds"
    JOB_ID = "job_id"
    SITE_NAME = "site_name"


class FLModel:
    """A model travelling between the federation and the script (NVIDIA FLARE's FLModel, argument for argument)."""

    def __init__(self, params_type: ParamsType | str | None = None, params: Any = None,
                 optimizer_params: Any = None, metrics: dict[str, Any] | None = None, start_round: int | None = 0,
                 current_round: int | None = None, total_rounds: int | None = None,
                 meta: dict[str, Any] | None = None) -> None:
        if params_type is not None:
            params_type = ParamsType(params_type)
        elif params is not None:
            params_type = ParamsType.FULL
        if params_type is not None and params is None:
            raise ValueError(f"params must be given with params_type {params_type.value}")
        if metrics is not None and not isinstance(metrics, dict):
            raise TypeError(f"metrics must be a dict, not {type(metrics).__name__}")
        if meta is not None and not isinstance(meta, dict):
            raise TypeError(f"meta must be a dict, not {type(meta).__name__}")
        for name, value in (("start_round", start_round), ("current_round", current_round),
                            ("total_rounds", total_rounds)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise ValueError(f"{name} must be a non-negative int, not {value!r}")
        self.params_type: ParamsType | None = params_type
        self.params = params
        self.optimizer_params = optimizer_params
        self.metrics = metrics
        self.start_round = start_round
        self.current_round = current_round
        self.total_rounds = total_rounds
        self.meta: dict[str, Any] = {} if meta is None else meta

    def summary(self) -> dict[str, Any]:
        """The fields that are set, params and metrics shortened to their keys."""
        shown: dict[str, Any] = {}
        if self.params_type is not None:
            shown["params_type"] = self.params_type.value
        if self.params is not None:
            shown["params"] = list(self.params) if isinstance(self.params, dict) else type(self.params).__name__
        if self.metrics is not None:
            shown["metrics"] = self.metrics
        for name in ("start_round", "current_round", "total_rounds"):
            if getattr(self, name) is not None:
                shown[name] = getattr(self, name)
        if self.meta:
            shown["meta"] = list(self.meta)
        return shown

    def __str__(self) -> str:
        return str(self.summary())

    __repr__ = __str__
