"""`flctl.client.keras`: a Keras 3 model's weights in and out of a job (job.yml `app: {framework: keras}`).

    import flctl.client as fl
    from flctl.client import keras as flk

    while fl.running():
        task = fl.receive()
        if task.params:
            flk.load(model, task.params)                 # by name: hidden/kernel, hidden/bias, ...
        model.fit(x, y, epochs=1)
        fl.send(fl.Model(params=flk.weights(model), num_examples=len(x)))   # or params=model

The names are the model's variable paths without its own name (`flctl.node.client.keras_weights`).
"""

from __future__ import annotations

from flctl.node.client.keras_weights import load, weight_names, weights

__all__ = ["load", "weight_names", "weights"]
