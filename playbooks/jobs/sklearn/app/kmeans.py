"""The site's part of federated k-means: its points, answered by flctl.client.kmeans (sums and counts per centre).
FLCTL_KMEANS_ROWS (300) sets the points per site."""

from __future__ import annotations

import os

from tabular import blobs


def main() -> None:
    from flctl.client.kmeans import serve

    import flctl.client as fl

    fl.init()
    serve(blobs(fl.site_name(), int(os.environ.get("FLCTL_KMEANS_ROWS", "300"))))


if __name__ == "__main__":
    main()
