#!/usr/bin/env python3
"""Secure aggregation by masking against plain FedAvg: one round's protocol, in process, with real keys.

    python bench/secagg.py                        # 10 and 100 sites, 1M parameters
    python bench/secagg.py --sites 10 --drop 2    # 2 sites drop after sharing their keys, before uploading
    python bench/secagg.py --sites 10 --full      # every site computes every pairwise mask (see below)

It provisions a project with that many sites (their certificates sign their masking keys) and runs the functions
the sites' job processes and the server's job process run (`flctl.node.secagg.masking`), timing:

- keys s / shares s: one site's key step (two X25519 pairs, a signature) and share step (checking every peer's
  signature and certificate, Shamir-splitting two secrets t-of-n, sealing n - 1 shares);
- upload s: one site quantizing and masking its update (its self mask and n - 1 pairwise masks, ChaCha20);
- server s: adding the n uploads and removing the masks (t shares combined per secret; a self mask per survivor,
  and for each dropped site its pairwise masks with every survivor);
- round s: keys + shares + upload (the sites work in parallel) + server; plain s: the server's weighted sum of the
  same updates (`WeightedSum`);
- MB up / site: what one site sends (upload, adverts, shares) against plain FedAvg's float32 model; MB down / site
  extra: the adverts and sealed shares the key steps and the training task bring (the training task carries every
  site's shares: n (n - 1) of them);
- max error: the masked average against numpy's weighted mean (bound: 2^-25).

Every site's upload is exact, but to keep the bench short only site-1 computes all its pairwise masks: the other
sites mask with their self mask and with site-1 only. Pairwise masks between two other sites cancel in the sum, so
the server's work and the result are those of the full protocol; a site's time is site-1's. `--full` makes every
site compute every mask (100 sites: about 400 s here). Run it on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from flctl.node.secagg.mask_crypto import b64
from flctl.node.secagg.masking import Aggregate, MaskingSite, default_threshold, dequantize, quantize
from flctl.node.workflows.aggregation import WeightedSum
from flctl.provisioner.build import provision
from flctl.provisioner.project_loader import project_from_document
from flctl.provisioner.yaml_source import parse_yaml


def kits(root: Path, count: int) -> tuple[dict[str, tuple[bytes, bytes]], bytes]:
    sites = "".join(f"  - {{name: site-{i:03d}, org: org}}\n" for i in range(1, count + 1))
    text = f"api_version: 1\nname: bench\nserver: {{name: localhost, org: hub}}\nsites:\n{sites}"
    prod = provision(project_from_document(parse_yaml(text, "project.yml")).project, root).prod_dir
    keys = {p.name: ((p / "startup" / "site.key").read_bytes(), (p / "startup" / "site.crt").read_bytes())
            for p in sorted(prod.glob("site-*")) if p.is_dir()}
    return keys, (prod / "site-001" / "startup" / "ca.crt").read_bytes()


def bench(count: int, size: int, drop: int, full: bool, root: Path) -> dict[str, float]:
    keys, ca = kits(root, count)
    names = sorted(keys)
    first = names[0]
    rng = np.random.default_rng(0)
    updates = {n: rng.normal(size=size).astype(np.float32) for n in names}
    weights = {n: float(100 + i) for i, n in enumerate(names)}
    threshold = default_threshold(count)
    sites = {n: MaskingSite("bench", 0, n, *keys[n], ca) for n in names}
    start = time.perf_counter()
    adverts = {n: sites[n].advertise() for n in names}
    keys_s = (time.perf_counter() - start) / count
    timed = time.perf_counter()
    sealed = {first: sites[first].share(adverts, threshold)}
    shares_s = time.perf_counter() - timed
    sealed.update({n: sites[n].share(adverts, threshold) for n in names[1:]})
    for n in names:
        sites[n].receive({sender: shares[n] for sender, shares in sealed.items() if n in shares})
    dropped = set(names[count - drop:])
    aggregate = Aggregate("bench", 0, adverts, threshold)
    uploads: dict[str, np.ndarray] = {}
    upload_s = 0.0
    for n in names:
        if n in dropped:
            continue
        timed = time.perf_counter()
        quantized = quantize(updates[n], weights[n])
        if full or n == first:
            uploads[n] = sites[n].masked(quantized)
        else:  # its self mask, and its pairwise masks with site-1 and the dropped sites (see the docstring)
            uploads[n] = _partial(sites[n], quantized, first, dropped, threshold)
        if n == first:
            upload_s = time.perf_counter() - timed
    timed = time.perf_counter()
    for n, values in uploads.items():
        aggregate.add(n, values, weights[n])
    survivors = sorted(aggregate.uploaded)
    reveals = {n: sites[n].reveal(survivors, aggregate.dropped()) for n in survivors[:threshold]}
    mean = dequantize(aggregate.total(reveals), aggregate.weight)
    server_s = time.perf_counter() - timed
    timed = time.perf_counter()
    plain = WeightedSum()
    for n in survivors:
        plain.add({"w": updates[n]}, weights[n])
    plain_mean = plain.result()["w"]
    plain_s = time.perf_counter() - timed
    expected = sum(updates[n].astype(np.float64) * weights[n] for n in survivors) / sum(weights[n] for n in survivors)
    advert_bytes = len(json.dumps(adverts[first].as_json()))
    share_bytes = sum(len(b64(v)) + len(k) + 6 for k, v in sealed[first].items())
    down = advert_bytes * count + sum(len(b64(v)) + 2 * len(k) + 6 for s in sealed.values() for k, v in s.items())
    return {"keys": keys_s, "shares": shares_s, "upload": upload_s, "server": server_s,
            "round": keys_s + shares_s + upload_s + server_s, "plain": plain_s,
            "up_mb": (8 * size + advert_bytes + share_bytes) / 1e6, "plain_mb": 4 * size / 1e6, "down_mb": down / 1e6,
            "error": float(np.abs(mean - expected).max()), "float32_error": float(np.abs(plain_mean - expected).max())}


def _partial(site: MaskingSite, quantized: np.ndarray, first: str, dropped: set[str], threshold: int) -> np.ndarray:
    """`site`'s upload with its self mask and only its pairwise masks with `first` and the dropped sites (the ones
    the server removes, or that do not cancel among the other sites)."""
    keep = {name: advert for name, advert in site.peers.items() if name in ({first, site.site} | dropped)}
    everyone = site.peers
    site.peers = keep
    try:
        out = site.masked(quantized, sorted(keep)) if len(keep) >= threshold else _masked_few(site, quantized)
    finally:
        site.peers = everyone
    site.participants = sorted(everyone)
    return out


def _masked_few(site: MaskingSite, quantized: np.ndarray) -> np.ndarray:
    saved = site.threshold
    site.threshold = 0
    try:
        return site.masked(quantized, sorted(site.peers))
    finally:
        site.threshold = saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--params", type=int, default=1_000_000)
    parser.add_argument("--drop", type=int, default=0, help="sites that drop after sharing, before uploading")
    parser.add_argument("--full", action="store_true", help="every site computes every pairwise mask")
    args = parser.parse_args()
    print(f"{'sites':>5} {'params':>9} {'drop':>4} {'keys s':>7} {'shares s':>8} {'upload s':>8} {'server s':>8} "
          f"{'round s':>7} {'plain s':>7} {'MB up/site':>10} {'plain':>5} {'MB down extra':>13} {'max error':>9}")
    for count in args.sites:
        with tempfile.TemporaryDirectory() as tmp:
            r = bench(count, args.params, args.drop, args.full, Path(tmp))
        print(f"{count:>5} {args.params:>9} {args.drop:>4} {r['keys']:>7.4f} {r['shares']:>8.3f} {r['upload']:>8.2f} "
              f"{r['server']:>8.2f} {r['round']:>7.2f} {r['plain']:>7.3f} {r['up_mb']:>10.1f} {r['plain_mb']:>5.1f} "
              f"{r['down_mb']:>13.2f} {r['error']:>9.1e}")


if __name__ == "__main__":
    main()
