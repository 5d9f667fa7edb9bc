"""XGBoost's JSON model format, as far as the `xgboost` workflow edits it: an empty model of the job's parameters
(made by a site's XGBoost, so its version's format) to which trees are appended, each tree one boosting
iteration (`iteration_indptr`), as NVIDIA FLARE's tree-based bagging adds each site's trees to one forest."""

from __future__ import annotations

import copy
import json
from typing import Any

import numpy as np


def to_array(model: dict[str, Any]) -> np.ndarray:
    """The model as a uint8 tensor (how it travels and is checkpointed)."""
    return np.frombuffer(json.dumps(model, separators=(",", ":")).encode(), np.uint8).copy()


def from_array(array: np.ndarray) -> dict[str, Any]:
    """The model a uint8 tensor holds; ValueError when it is not an XGBoost gbtree model."""
    try:
        model: dict[str, Any] = json.loads(np.asarray(array, np.uint8).tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not an XGBoost JSON model: {exc}") from None
    trees(model)
    return model


def _booster(model: dict[str, Any]) -> dict[str, Any]:
    try:
        booster = model["learner"]["gradient_booster"]
        if booster.get("name") != "gbtree" or not isinstance(booster["model"]["trees"], list):
            raise ValueError(f"a {booster.get('name')!r} booster, not gbtree")
        return booster["model"]  # type: ignore[no-any-return]
    except (KeyError, TypeError) as exc:
        raise ValueError(f"not an XGBoost gbtree JSON model (no {exc})") from None


def trees(model: dict[str, Any]) -> list[dict[str, Any]]:
    """The model's trees, in order."""
    return _booster(model)["trees"]  # type: ignore[no-any-return]


def num_features(model: dict[str, Any]) -> int:
    return int(model["learner"]["learner_model_param"]["num_feature"])


def empty(model: dict[str, Any]) -> dict[str, Any]:
    """A copy of `model` without trees: the template every tree is appended to."""
    out = copy.deepcopy(model)
    booster = _booster(out)
    booster["trees"], booster["tree_info"], booster["iteration_indptr"] = [], [], [0]
    booster["gbtree_model_param"]["num_trees"] = "0"
    booster["gbtree_model_param"]["num_parallel_tree"] = "1"
    return out


def append(model: dict[str, Any], new: list[dict[str, Any]]) -> dict[str, Any]:
    """Add the trees `new` to `model` (in place, and returned), each renumbered and its own boosting iteration (its
    predictions are the sum of every tree's, as before plus the new trees'); ValueError, changing nothing, when a
    tree is over another number of features."""
    booster = _booster(model)
    features = num_features(model)
    for tree in new:
        if int(tree.get("tree_param", {}).get("num_feature", features)) != features:
            raise ValueError(f"a tree over {tree['tree_param']['num_feature']} features added to a model over "
                             f"{features}")
    for tree in new:
        tree["id"] = len(booster["trees"])
        booster["trees"].append(tree)
        booster["tree_info"].append(0)
        booster["iteration_indptr"].append(len(booster["trees"]))
    booster["gbtree_model_param"]["num_trees"] = str(len(booster["trees"]))
    return model
