"""quickstart-numpy: a Flower app that runs unchanged under `flwr run` and on flctl."""
