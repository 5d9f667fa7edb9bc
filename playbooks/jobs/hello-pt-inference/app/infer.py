"""hello-pt-inference: each site runs the CNN it is sent over its own images and keeps its predictions.

A site's images are hello-pt's held-out images of that site (the same seeds: the pattern rule from one seed, the
images from the site's name). Each image's prediction and confidence are written to `predictions.csv` in
`fl.output_dir()`, at the site; only what job.yml's `returns` declares goes back: how many images, the accuracy,
the mean confidence of the predictions.
"""

from __future__ import annotations

import numpy as np
import torch
from net import Net  # net.py sits beside this script, in app/

RULE_SEED = 1234
TRAIN_SAMPLES = 512  # hello-pt's: its images come first in each site's stream; these are the ones after
TEST_SAMPLES = 256
NOISE = 0.5


def site_images(site: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(images, labels) of `site`: hello-pt's held-out images of that site, labelled by the shared rule."""
    blocks = np.ones((4, 4))
    rule = np.kron(np.random.default_rng(RULE_SEED).standard_normal((4, 4)), blocks)
    rng = np.random.default_rng(sum(site.encode()))
    count = TRAIN_SAMPLES + TEST_SAMPLES
    x = np.kron(rng.standard_normal((count, 1, 4, 4)), blocks) + NOISE * rng.standard_normal((count, 1, 16, 16))
    y = (np.einsum("nij,ij->n", x[:, 0], rule) > 0).astype(np.int64)
    return torch.from_numpy(x[TRAIN_SAMPLES:].astype(np.float32)), torch.from_numpy(y[TRAIN_SAMPLES:])


def predict(params: dict[str, torch.Tensor], images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(predicted class, its probability) of each image under the model `params`."""
    model = Net()
    model.load_state_dict(params)
    model.eval()
    with torch.no_grad():
        probabilities = torch.softmax(model(images), dim=1)
    confidence, predicted = probabilities.max(dim=1)
    return predicted, confidence


def figures(predicted: torch.Tensor, confidence: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """What a site returns: how many images, the accuracy, the mean confidence."""
    return {"count": len(labels), "accuracy": float((predicted == labels).float().mean()),
            "mean_confidence": float(confidence.mean())}


def main() -> None:
    import flctl.client as fl  # imported here so tests can load predict without a running job

    torch.set_num_threads(1)
    fl.init()
    while fl.running():
        task = fl.receive()
        if task is None:
            break
        images, labels = site_images(fl.site_name())
        predicted, confidence = predict(task.params, images)
        with (fl.output_dir() / "predictions.csv").open("w") as out:  # stays at the site
            out.write("image,label,predicted,confidence\n")
            for i, (label, guess, p) in enumerate(zip(labels.tolist(), predicted.tolist(), confidence.tolist(),
                                                      strict=True)):
                out.write(f"{i},{label},{guess},{p:.6f}\n")
        fl.send(fl.Model(metrics=figures(predicted, confidence, labels), num_examples=len(labels)))


if __name__ == "__main__":
    main()
