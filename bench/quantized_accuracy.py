#!/usr/bin/env python3
"""The accuracy effect of quantized transfer on the hello-pt example (playbooks/jobs/hello-pt).

    python bench/quantized_accuracy.py                 # job.yml, fp16.yml, bf16.yml, int8.yml; 2 sites
    python bench/quantized_accuracy.py --sites 3 --json

Each job is simulated (`flctl simulate JOB -n SITES`: the same quantize-and-dequantize round trip, both ways, as on a
federation) from the same seeds. Per mode it reports the sites' mean accuracy and loss after their last round's
training (what the job logs), and the final global model evaluated here on every simulated site's held-out images
(hello-pt's own data and network), with the largest weight difference from the unquantized run's final model.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
JOBS = ROOT / "playbooks" / "jobs" / "hello-pt"
FLCTL = str(Path(sys.executable).parent / "flctl")
MODES = {"none": "job.yml", "fp16": "fp16.yml", "bf16": "bf16.yml", "int8": "int8.yml"}


def simulate(job: Path, sites: int, workspace: Path) -> Path:
    out = subprocess.run([FLCTL, "simulate", str(job), "-n", str(sites), "-w", str(workspace), "--json"],
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{job.name}: flctl simulate failed: {out.stdout[-2000:]} {out.stderr[-2000:]}")
    return next(workspace.glob("*/models/final.safetensors")).parent.parent


def last_round(result: Path) -> dict[str, float]:
    rows = json.loads((result / "metrics.json").read_text())
    last = max(r["round"] for r in rows)
    picked: dict[str, list[float]] = {}
    for row in rows:
        if row["round"] == last and row["name"] in ("accuracy", "loss") and row.get("step") in (None, last):
            picked.setdefault(row["name"], []).append(float(row["value"]))
    return {name: sum(values) / len(values) for name, values in picked.items()}


def evaluate(final: Path, sites: int) -> dict[str, float]:
    """The global model's accuracy and loss on each site's held-out images, averaged over the sites."""
    import torch

    sys.path.insert(0, str(JOBS / "app"))
    import train  # hello-pt's own data and network

    import flctl.client as fl

    net = train.new_model()
    fl.load_model(final, into=net)
    net.eval()
    accuracy = loss = 0.0
    with torch.no_grad():
        for i in range(1, sites + 1):
            _, _, x, y = train.make_data(f"site-{i}")
            logits = net(x)
            loss += float(torch.nn.functional.cross_entropy(logits, y)) / sites
            accuracy += float((logits.argmax(1) == y).float().mean()) / sites
    return {"global_accuracy": accuracy, "global_loss": loss}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sites", type=int, default=2)
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES))
    parser.add_argument("--json", action="store_true", help="one JSON object per mode, nothing else")
    args = parser.parse_args()
    from flctl.node.wire import tensors

    rows: list[dict[str, Any]] = []
    finals = {}
    with tempfile.TemporaryDirectory(prefix="flctl-qacc-") as tmp:
        for mode in args.modes:
            result = simulate(JOBS / MODES[mode], args.sites, Path(tmp) / mode)
            final = result / "models" / "final.safetensors"
            finals[mode] = tensors.read_file(final)
            site = last_round(result)
            rows.append({"mode": mode, "sites": args.sites, "site_accuracy": round(site.get("accuracy", 0), 4),
                         "site_loss": round(site.get("loss", 0), 4),
                         **{k: round(v, 4) for k, v in evaluate(final, args.sites).items()}})
    if "none" in finals:
        for row in rows:
            got = finals[row["mode"]]
            largest = max(float(abs(got[name] - value).max()) for name, value in finals["none"].items())
            row["max_weight_diff"] = float(f"{largest:.3g}")
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return
    print(f"{'mode':>5} | {'site acc':>8} {'site loss':>9} | {'global acc':>10} {'global loss':>11} | {'max |dw|':>9}")
    for r in rows:
        print(f"{r['mode']:>5} | {r['site_accuracy']:>8} {r['site_loss']:>9} | {r['global_accuracy']:>10} "
              f"{r['global_loss']:>11} | {r.get('max_weight_diff', '-'):>9}")


if __name__ == "__main__":
    main()
