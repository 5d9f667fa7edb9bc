"""`flctl.client.kmeans.serve(points)`: a site's part of the `kmeans` workflow, the whole script loop.

    import flctl.client as fl
    from flctl.client.kmeans import serve

    fl.init()
    serve(load_my_points())          # an (n, features) array; answers every task until the job ends

Each step sends, per centre, the sum of the site's points nearest to it and their count (never a point); the first
step, when the job has no initial centres, sends the centres of a local k-means and their sizes.
"""

from __future__ import annotations

from typing import Any

__all__ = ["answer", "serve"]

LOCAL_ITERATIONS = 10
"""Lloyd iterations of the local k-means whose centres a site offers as initial candidates."""


def serve(points: Any) -> None:
    """Answer the job's k-means tasks from `points` until the job ends."""
    import flctl.client as fl

    while fl.running():
        model = fl.receive()
        if model is None:
            break
        fl.send(answer(model, points, fl.site_name()))


def answer(model: Any, points: Any, site: str) -> Any:
    """The answer to one k-means task (`model`, from `fl.receive()`) over `points`."""
    import zlib

    import numpy as np

    import flctl.client as fl
    from flctl.node.frameworks.kmeans import kmeans_plus_plus, new_centers, site_sums

    x = np.asarray(points, np.float64)
    step = model.meta.get("kmeans")
    if step == "init":
        k = int(model.meta["clusters"])
        if len(x) < k:
            raise ValueError(f"this site has {len(x)} points, fewer than the {k} clusters")
        seed = int(model.meta.get("seed", 0)) * 7919 + zlib.crc32(site.encode())
        centers = kmeans_plus_plus(x, np.ones(len(x)), k, seed)
        for _ in range(LOCAL_ITERATIONS):
            sums, counts, _ = site_sums(x, centers)
            centers = new_centers(centers, sums, counts)
        _, counts, _ = site_sums(x, centers)
        return fl.Model(params={"centers": centers, "counts": counts}, num_examples=len(x))
    if step == "step":
        sums, counts, inertia = site_sums(x, np.asarray(model.params["centers"], np.float64))
        return fl.Model(params={"sums": sums, "counts": counts}, metrics={"inertia": inertia}, num_examples=len(x))
    raise ValueError(f"not a k-means task (meta kmeans={step!r}): run this script in a job of workflow.type kmeans")
