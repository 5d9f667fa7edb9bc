"""The model the fedbuff example starts from (job.yml's initial_model, built once at the server): FedBuff takes
updates, so the server needs a model from the start."""

from __future__ import annotations

import numpy as np


def initial_params() -> dict[str, np.ndarray]:
    return {"w": np.zeros((4, 4), np.float32), "b": np.zeros(4, np.float32)}
