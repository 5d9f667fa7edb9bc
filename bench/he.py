#!/usr/bin/env python3
"""Homomorphic encryption's cost against plain FedAvg: one round's maths, in process, 3 sites.

    python bench/he.py                      # 100k and 1M parameters, 3 sites
    python bench/he.py --params 100000 --sites 5

For each model size it times, with the project's default CKKS context (poly_modulus_degree 8192, coefficient
moduli [60, 40, 40], scale 2^40; what `homomorphic_encryption: {}` in project.yml provisions):

- encrypt s: one site encrypting its weighted model (`CkksKeys.encrypt`, the site's job process does it);
- aggregate s: the server adding the sites' ciphertexts (`CiphertextSum`, deserializing each site's payload);
- decrypt s: one site decrypting the sum (`CkksKeys.decrypt`);
- plain s: the server's plain weighted sum of the same models (`WeightedSum`);
- MB up / site: the bytes one site sends (safetensors of its payload), HE against plain;
- max error: the largest absolute difference between the decrypted mean and numpy's.

These are the functions the federation runs; the network time of the bigger payload is on top (see
bench/transfer.py for MB/s). Run it on an idle machine.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from flctl.node.secagg.he import CiphertextSum, CkksKeys
from flctl.node.wire import tensors
from flctl.node.workflows.aggregation import WeightedSum
from flctl.provisioner.he_context import make_contexts
from flctl.provisioner.project import HomomorphicEncryptionSpec


def model(size: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"layer.weight": rng.normal(size=size - size // 100).astype(np.float32),
            "layer.bias": rng.normal(size=size // 100).astype(np.float32)}


def bench(size: int, sites: int) -> dict[str, float]:
    made = make_contexts(HomomorphicEncryptionSpec())
    site, server = CkksKeys(made.secret, "site"), CkksKeys(made.public, "server")
    models = [model(size, i) for i in range(sites)]
    weights = [100 * (i + 1) for i in range(sites)]
    start = time.perf_counter()
    payloads = [site.encrypt(m, w) for m, w in zip(models, weights, strict=True)]
    encrypt = (time.perf_counter() - start) / sites
    wire = [tensors.encode(p) for p in payloads]
    start = time.perf_counter()
    total = CiphertextSum(server)
    for data, weight in zip(wire, weights, strict=True):
        total.add(tensors.decode(data), weight, "site")
    result = tensors.encode(total.result())
    aggregate = time.perf_counter() - start
    start = time.perf_counter()
    mean = site.decrypt(tensors.decode(result), "sum")
    decrypt = time.perf_counter() - start
    start = time.perf_counter()
    plain = WeightedSum()
    for m, w in zip(models, weights, strict=True):
        plain.add({k: tensors.decode(tensors.encode({k: v}))[k] for k, v in m.items()}, w)
    expected = plain.result()
    plain_s = time.perf_counter() - start
    error = max(float(np.abs(mean[k].astype(np.float64) - expected[k]).max()) for k in expected)
    return {"encrypt": encrypt, "aggregate": aggregate, "decrypt": decrypt, "plain": plain_s,
            "he_mb": len(wire[0]) / 1e6, "plain_mb": len(tensors.encode(models[0])) / 1e6, "error": error}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--sites", type=int, default=3)
    args = parser.parse_args()
    print(f"{'params':>9} {'sites':>5} {'encrypt s':>9} {'aggregate s':>11} {'decrypt s':>9} {'plain s':>8} "
          f"{'MB up/site HE':>13} {'plain':>6} {'x':>5} {'max error':>9}")
    for size in args.params:
        r = bench(size, args.sites)
        print(f"{size:>9} {args.sites:>5} {r['encrypt']:>9.2f} {r['aggregate']:>11.2f} {r['decrypt']:>9.2f} "
              f"{r['plain']:>8.3f} {r['he_mb']:>13.1f} {r['plain_mb']:>6.1f} {r['he_mb'] / r['plain_mb']:>5.1f} "
              f"{r['error']:>9.1e}")


if __name__ == "__main__":
    main()
