"""The site's part of federated k-means: its points, answered by flctl.client.kmeans (sums and counts per centre)."""

from __future__ import annotations

from tabular import blobs


def main() -> None:
    from flctl.client.kmeans import serve

    import flctl.client as fl

    fl.init()
    serve(blobs(fl.site_name()))


if __name__ == "__main__":
    main()
