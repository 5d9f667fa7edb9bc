"""hello-keras: a Keras 3 model learns a rule hidden in synthetic data, across sites.

The rule (a fixed random direction in 8 dimensions; an example is class 1 when it points along it) comes from one
seed, the same everywhere; each site draws its own examples from a seed made of its name. Each round a site loads
the global weights (by name), trains two epochs and sends its model; it reports loss and accuracy on its own
held-out examples, before training (`val_accuracy`, the global model's) and after.
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")  # before Keras is imported: flctl installs torch, not TensorFlow

import keras
import numpy as np

import flctl.client as fl
from flctl.client import keras as flk

RULE_SEED = 1234
FEATURES = 8
TRAIN, TEST = 400, 200


def site_seed(site: str) -> int:
    return sum(site.encode())


def make_data(site: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train x, train y, test x, test y) of `site`: its own examples, labelled by the shared rule."""
    rule = np.random.default_rng(RULE_SEED).standard_normal(FEATURES)
    rng = np.random.default_rng(site_seed(site))
    x = rng.standard_normal((TRAIN + TEST, FEATURES)).astype("float32")
    y = (x @ rule > 0).astype("float32")
    return x[:TRAIN], y[:TRAIN], x[TRAIN:], y[TRAIN:]


def new_model() -> keras.Model:
    """The same model, with the same initial weights, at every site."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((FEATURES,)), keras.layers.Dense(16, activation="relu", name="hidden"),
                              keras.layers.Dense(1, activation="sigmoid", name="out")])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss="binary_crossentropy",
                  metrics=["accuracy"])
    return model


def main() -> None:
    fl.init()
    model = new_model()
    x, y, test_x, test_y = make_data(fl.site_name())
    while fl.running():
        task = fl.receive()
        assert task is not None
        if task.params:
            flk.load(model, task.params)
        val_loss, val_accuracy = model.evaluate(test_x, test_y, verbose=0)
        if fl.is_evaluate():
            fl.send(fl.Model(metrics={"val_loss": val_loss, "val_accuracy": val_accuracy}))
            continue
        model.fit(x, y, epochs=2, batch_size=32, shuffle=False, verbose=0)
        loss, accuracy = model.evaluate(test_x, test_y, verbose=0)
        fl.send(fl.Model(params=model, num_examples=len(x), metrics={
            "loss": loss, "accuracy": accuracy, "val_loss": val_loss, "val_accuracy": val_accuracy}))


if __name__ == "__main__":
    main()
