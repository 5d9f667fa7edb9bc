"""Image-intensity histograms: each site's images (here synthetic 64x64 grey scans, brighter or darker by site,
made from a seed drawn from its name) as one column of pixel intensities per channel statistic. A real site would
read its PNG or DICOM files: `numpy.asarray(PIL.Image.open(path))`.
"""

from __future__ import annotations

import zlib

import numpy as np

import flctl.client as fl


def load() -> dict[str, np.ndarray]:
    """Every pixel of the site's images (intensity, 0-255), and each image's mean intensity."""
    rng = np.random.default_rng(zlib.crc32(fl.site_name().encode()))
    count = int(rng.integers(20, 60))
    brightness = rng.uniform(70, 150)
    images = rng.normal(brightness, 35, (count, 64, 64))
    yy, xx = np.mgrid[:64, :64]
    images += 60 * np.exp(-((yy - 32) ** 2 + (xx - 32) ** 2) / 200)  # a bright blob in the middle of each
    images = images.clip(0, 255).round()
    return {"intensity": images.reshape(-1), "image_mean": images.mean(axis=(1, 2))}


if __name__ == "__main__":
    fl.serve_statistics(load)
