"""The ServerApp: FedAvg over every node for num-server-rounds; the final arrays saved as final.npz where flctl
asks ($FLCTL_FLOWER_OUTPUT: flctl keeps them as the job's final model)."""

import os

import numpy as np
from flwr.app import ArrayRecord, Context
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    init = ArrayRecord([np.zeros(3, dtype=np.float32), np.zeros(1, dtype=np.float32)])
    strategy = FedAvg(fraction_train=1.0, fraction_evaluate=0.0)
    result = strategy.start(grid=grid, initial_arrays=init, num_rounds=int(context.run_config["num-server-rounds"]))
    out = os.environ.get("FLCTL_FLOWER_OUTPUT")
    if out:
        np.savez(os.path.join(out, "final.npz"), *result.arrays.to_numpy_ndarrays())
