#!/usr/bin/env python3
"""Secure aggregation end to end in `flctl simulate`: wall time per round, plain FedAvg against HE and masking.

    python bench/secure_simulate.py                          # 10 sites x 100k parameters, 100 sites x 10k
    python bench/secure_simulate.py --cases 10:1000000       # SITES:PARAMS pairs

Each case runs the same job (a numpy script that adds a little to the model it gets) for 3 rounds with
`flctl simulate -n SITES`, once plain, once with `encryption: he` and once with `secure_aggregation: masking`, and
prints the wall time per round (the whole run over 3: workers' start included, the same for all three). The
simulation runs every site's secure-aggregation side in its main process, one site after another (at a real
federation they work in parallel), so the secure columns are an upper bound of a real round's time on one machine.
Run it on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROUNDS = 3
FLCTL = str(Path(sys.executable).parent / "flctl")
SCRIPT = """
import numpy as np
import flctl.client as fl

fl.init()
while fl.running():
    model = fl.receive()
    params = model.params or {"w": np.zeros(%(params)d, np.float32)}
    fl.send(fl.Model(params={k: v + np.float32(0.001) for k, v in params.items()}, num_examples=10))
"""
MODES = {"plain": {}, "he": {"encryption": "he"}, "masking": {"secure_aggregation": "masking"}}


def per_round(root: Path, sites: int, params: int, mode: str) -> float:
    job = root / f"{mode}-{sites}-{params}"
    (job / "app").mkdir(parents=True)
    (job / "app" / "train.py").write_text(SCRIPT % {"params": params})
    args = {"rounds": ROUNDS, "round_timeout_s": 600, **MODES[mode]}
    (job / "job.yml").write_text(f"api_version: 1\nname: {job.name}\nworkflow: {{type: fedavg, args: "
                                 f"{json.dumps(args)}}}\nmin_sites: {sites}\napp: {{command: [python, train.py]}}\n")
    start = time.perf_counter()
    run = subprocess.run([FLCTL, "--quiet", "simulate", str(job), "-n", str(sites), "-w", str(root / "ws")],
                         capture_output=True, text=True, timeout=3600, check=False)
    if run.returncode != 0:
        raise SystemExit(f"flctl simulate {job.name} exited {run.returncode}: {run.stderr.strip()}")
    return (time.perf_counter() - start) / ROUNDS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=["10:100000", "100:10000"], help="SITES:PARAMS")
    args = parser.parse_args()
    print(f"{'sites':>5} {'params':>9} {'plain s/round':>13} {'he s/round':>10} {'masking s/round':>15}")
    for case in args.cases:
        sites, params = (int(n) for n in case.split(":"))
        with tempfile.TemporaryDirectory() as tmp:
            times = {mode: per_round(Path(tmp), sites, params, mode) for mode in MODES}
        print(f"{sites:>5} {params:>9} {times['plain']:>13.2f} {times['he']:>10.2f} {times['masking']:>15.2f}")


if __name__ == "__main__":
    main()
