"""A site's own trainer for playbooks/jobs/external-trainer: a process the site starts itself (from a notebook, a
scheduler, a container...), which attaches to the job at this site and does its training.

    python trainer.py SITE_KIT [--job NAME_OR_ID] [--wait-s 600]

SITE_KIT is the site's kit (or its workspace, or the job's folder there); the trainer waits for the job to start
there. It fits a linear model y = x @ w to data of its own (drawn from a seed made of the site's name, around
the same true weights everywhere) by a few steps of gradient descent per round, from the global model.
"""

from __future__ import annotations

import argparse

import numpy as np

import flctl.client as fl

TRUE_W = np.array([2.0, -1.0, 0.5])
EXAMPLES = 200
STEPS = 20
LEARNING_RATE = 0.1


def site_data(site: str) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(sum(site.encode()))
    x = rng.standard_normal((EXAMPLES, TRUE_W.size))
    return x, x @ TRUE_W + 0.1 * rng.standard_normal(EXAMPLES)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("place", help="the site's kit or workspace, or the job's folder at the site")
    parser.add_argument("--job", help="the job's name or id, where several wait for a trainer")
    parser.add_argument("--wait-s", type=float, default=600, help="how long to wait for the job (s)")
    args = parser.parse_args()
    trainer = fl.attach(args.place, wait_s=args.wait_s, job=args.job)
    print(f"attached to job {trainer.job_id} at {trainer.site}", flush=True)
    x, y = site_data(trainer.site)
    while trainer.running():
        task = trainer.receive()
        assert task is not None
        w = np.array(task.params.get("w", np.zeros(TRUE_W.size)), dtype=np.float64)
        for _ in range(STEPS):
            w -= LEARNING_RATE * 2 * x.T @ (x @ w - y) / len(x)
        loss = float(np.mean((x @ w - y) ** 2))
        trainer.log("loss", loss, step=task.round)
        trainer.send(fl.Model(params={"w": w}, metrics={"loss": loss}, num_examples=len(x)))
    print("the job ended at this site", flush=True)


if __name__ == "__main__":
    main()
