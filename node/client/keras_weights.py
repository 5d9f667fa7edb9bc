"""Keras 3 models' weights as flctl params, and back: what a job with `app: {framework: keras}` exchanges.

A Keras model travels as its `model.weights` (trainable and not: a BatchNormalization's moving mean goes too, as
a torch state_dict's buffers do), each under its Keras 3 variable path without the model's own name:
`<layer name>/<weight name>`, e.g. `hidden/kernel`, `hidden/bias`, `batch_normalization/moving_mean` (a layer
inside a nested model keeps the nested model's name: `encoder/dense/kernel`). Layer names are the model's own:
give them (`Dense(16, name="hidden")`) or let Keras number them (`dense`, `dense_1`, ...) — every site runs the
same script, so the numbers agree, as long as the script builds its model the same way everywhere.

`weights(model)` is name -> numpy array (what `fl.send` takes); `load(model, params)` assigns them back, like
`model.set_weights` but by name: a missing, unknown or misshapen name is an error that says which. Nothing here
imports Keras: it works on whatever backend the script's Keras runs (flctl's example jobs: torch,
`KERAS_BACKEND=torch` in job.yml's app.env).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def is_keras_model(value: Any) -> bool:
    """Whether `value` looks like a Keras 3 model or layer (weights with paths), not a dict of params."""
    return not isinstance(value, Mapping) and hasattr(value, "weights") and hasattr(value, "name") \
        and all(hasattr(v, "path") for v in getattr(value, "weights", ()))


def weight_names(model: Any) -> list[str]:
    """The params' names of `model`'s weights, in `model.weights` order (see the module's doc for the scheme)."""
    prefix = f"{model.name}/"
    names = [v.path[len(prefix):] if v.path.startswith(prefix) else v.path for v in model.weights]
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"the Keras model {model.name!r} has two weights named {name!r}; give its layers "
                             "distinct names")
        seen.add(name)
    return names


def weights(model: Any) -> dict[str, Any]:
    """`model`'s weights as name -> numpy array (a copy), ready for `fl.Model(params=...)`."""
    import numpy as np

    return {name: np.array(variable.numpy()) for name, variable in zip(weight_names(model), model.weights,
                                                                      strict=True)}


def load(model: Any, params: Mapping[str, Any]) -> None:
    """Assign `params` (name -> array, from `fl.receive()` or a saved model) to `model`'s weights, by name.

    Every weight of the model must be in `params` with its shape, and every param must be a weight of the model:
    otherwise ValueError naming them (and nothing is assigned)."""
    import numpy as np

    names = weight_names(model)
    missing = [name for name in names if name not in params]
    unknown = [name for name in params if name not in set(names)]
    if missing or unknown:
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + \
                ([f"not in the model: {', '.join(unknown)}"] if unknown else [])
        raise ValueError(f"the params do not match the Keras model {model.name!r}: {'; '.join(parts)} "
                         f"(its weights: {', '.join(names)})")
    arrays = [np.asarray(params[name]) for name in names]
    for name, variable, array in zip(names, model.weights, arrays, strict=True):
        if tuple(array.shape) != tuple(variable.shape):
            raise ValueError(f"the param {name!r} has shape {tuple(array.shape)}, the Keras model's weight "
                             f"{tuple(variable.shape)}")
    for variable, array in zip(model.weights, arrays, strict=True):
        variable.assign(array.astype(variable.dtype, copy=False))
