"""A Flower app on flctl beside Flower's own runs of it: the same app (FedAvg over linear regression on --dim
features, each node's data seeded by its partition-id) as a flctl job on a local mTLS federation of --sites sites
(`flctl job submit APP --watch`, Flower's SuperLink in the server's job process, each SuperNode relayed over flctl),
with Flower's deployment engine alone (its SuperLink and --sites SuperNodes on 127.0.0.1, no flctl), and with
`flwr run` on Flower's Simulation Engine. Wall time from submit (or from starting the SuperLink) to the final
model, and whether each final model equals the Simulation Engine's.

    .venv/bin/python bench/flower_app.py                       # 2 sites, 3 rounds, 3 features
    .venv/bin/python bench/flower_app.py --sites 2 --rounds 5 --dim 1000000 --repeats 2

Needs .venv-flower (bash scripts/setup.sh --all) or FLCTL_FLOWER_PYTHON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the tests' federation helpers

from flctl.node.flower.flower_python import flower_python, flower_tool
from flctl.node.flower.process_tree import stop_tree
from flctl.node.flower.superlink_runner import FlwrRun, SuperLink, free_port
from flctl.node.wire import tensors
from tests.federation import make_federation

APP = {
    "pyproject.toml": """
        [build-system]
        requires = ["hatchling"]
        build-backend = "hatchling.build"

        [project]
        name = "bench-flower"
        version = "1.0.0"
        dependencies = ["flwr[simulation]>=1.42.0", "numpy>=2.0"]

        [tool.hatch.build.targets.wheel]
        packages = ["."]

        [tool.flwr.app]
        publisher = "flctl-bench"

        [tool.flwr.app.components]
        serverapp = "benchapp.server_app:app"
        clientapp = "benchapp.client_app:app"

        [tool.flwr.app.config]
        num-server-rounds = %(rounds)d
        dim = %(dim)d
        """,
    "benchapp/__init__.py": "",
    "benchapp/client_app.py": """
        import numpy as np
        from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
        from flwr.clientapp import ClientApp

        app = ClientApp()


        @app.train()
        def train(msg: Message, context: Context) -> Message:
            (w,) = msg.content["arrays"].to_numpy_ndarrays()
            rng = np.random.default_rng(100 + int(context.node_config["partition-id"]))
            x = rng.standard_normal((16, w.size)).astype(np.float32)
            y = x @ np.linspace(-1, 1, w.size, dtype=np.float32)
            for _ in range(3):
                w = w - np.float32(0.05) * (x.T @ (x @ w - y) / len(y)).astype(np.float32)
            reply = RecordDict({"arrays": ArrayRecord([w.astype(np.float32)]),
                                "metrics": MetricRecord({"train_loss": float(np.mean((x @ w - y) ** 2)),
                                                         "num-examples": len(y)})})
            return Message(content=reply, reply_to=msg)
        """,
    "benchapp/server_app.py": """
        import os

        import numpy as np
        from flwr.app import ArrayRecord, Context
        from flwr.serverapp import Grid, ServerApp
        from flwr.serverapp.strategy import FedAvg

        app = ServerApp()


        @app.main()
        def main(grid: Grid, context: Context) -> None:
            init = ArrayRecord([np.zeros(int(context.run_config["dim"]), dtype=np.float32)])
            result = FedAvg(fraction_train=1.0, fraction_evaluate=0.0).start(
                grid=grid, initial_arrays=init, num_rounds=int(context.run_config["num-server-rounds"]))
            np.savez(os.path.join(os.environ["FLCTL_FLOWER_OUTPUT"], "final.npz"), *result.arrays.to_numpy_ndarrays())
        """,
}


def write_app(folder: Path, rounds: int, dim: int) -> Path:
    for name, text in APP.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        body = textwrap.dedent(text).lstrip()
        (folder / name).write_text(body % {"rounds": rounds, "dim": dim} if name == "pyproject.toml" else body)
    return folder


def _follow(run: FlwrRun) -> list[str]:
    lines: list[str] = []
    while True:
        batch = list(run.lines(5.0))
        if None in batch:
            return lines
        lines += [line for line in batch if line is not None]


def _final(output: Path) -> list[np.ndarray]:
    with np.load(output / "final.npz") as saved:
        return [saved[name] for name in saved.files]


def flower_alone(python: Path, app: Path, work: Path, sites: int, simulation: bool) -> tuple[float, list[np.ndarray]]:
    """Flower by itself: its SuperLink, and `sites` SuperNodes (or the Simulation Engine's); seconds, final model."""
    began = time.monotonic()
    link = SuperLink(python, work, simulation=sites if simulation else 0)
    nodes: list[subprocess.Popen[bytes]] = []
    run = None
    try:
        link.start()
        for i in range(0 if simulation else sites):
            nodes.append(subprocess.Popen(
                [str(flower_tool(python, "flower-supernode")), "--insecure", "--superlink", f"127.0.0.1:{link.port}",
                 "--port", str(free_port()), "--node-config", f"partition-id={i} num-partitions={sites}"],
                env=link.env(), cwd=str(work), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True))
        run = FlwrRun(link, app, [])
        lines = _follow(run)
        if run.wait() != 0:
            raise RuntimeError("flwr run failed: " + " | ".join(lines[-10:]))
        wall = time.monotonic() - began
    finally:
        if run is not None:
            run.stop()
        for node in nodes:
            stop_tree(node)
        link.stop()
    return wall, _final(link.output)


def on_flctl(python: Path, app: Path, root: Path, sites: int) -> tuple[float, list[np.ndarray]]:
    """The app as a flctl job on a local mTLS federation (started and online before the clock starts)."""
    root.mkdir(parents=True)
    fed = make_federation(root, sites=sites)
    for site in fed.sites:
        resources = fed.kit(site) / "local" / "resources.yml"
        resources.write_text(resources.read_text() + f"data_paths: [{python.parent.parent}]\n"
                             "job_env_allow: [FLCTL_FLOWER_PYTHON]\n")
    env = {"FLCTL_FLOWER_PYTHON": str(python)}
    try:
        for name in ["localhost", *fed.sites]:
            fed.start(name, env=env)
        fed.wait_online(fed.sites)
        began = time.monotonic()
        out = fed.flctl("job", "submit", app, "--watch", "--json", timeout=3600)
        wall = time.monotonic() - began
        if out.returncode != 0:
            raise RuntimeError(f"the flctl job failed: {out.stdout} {out.stderr}")
        job_id = json.loads(out.stdout)["id"]
    finally:
        fed.stop_all()
    final = tensors.read_file(next(fed.prod.glob(f"localhost/workspace/jobs/{job_id}/models/final.safetensors")))
    return wall, [np.asarray(final[f"arr_{i}"]) for i in range(len(final))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sites", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dim", type=int, default=3, help="the model's size, in float32 values")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    python = flower_python()
    runs: dict[str, list[float]] = {"flwr run, Simulation Engine": [], "Flower deployment alone": [],
                                    "flctl job (Flower relayed over mTLS)": []}
    equal: dict[str, bool] = {}
    with tempfile.TemporaryDirectory(prefix="flctl-bench-flower-") as tmp:
        app = write_app(Path(tmp) / "app", args.rounds, args.dim)
        for r in range(args.repeats):
            sim_wall, reference = flower_alone(python, app, Path(tmp) / f"sim-{r}", args.sites, simulation=True)
            runs["flwr run, Simulation Engine"].append(sim_wall)
            dep_wall, deployed = flower_alone(python, app, Path(tmp) / f"dep-{r}", args.sites, simulation=False)
            runs["Flower deployment alone"].append(dep_wall)
            fl_wall, relayed = on_flctl(python, app, Path(tmp) / f"flctl-{r}", args.sites)
            runs["flctl job (Flower relayed over mTLS)"].append(fl_wall)
            for name, final in (("Flower deployment alone", deployed), ("flctl job (Flower relayed over mTLS)",
                                                                           relayed)):
                same = len(final) == len(reference) and all(np.array_equal(a, b) for a, b in zip(final, reference,
                                                                                                   strict=True))
                equal[name] = equal.get(name, True) and same
            print(f"repeat {r + 1}: simulation {sim_wall:.1f} s, deployment {dep_wall:.1f} s, flctl {fl_wall:.1f} s",
                  file=sys.stderr, flush=True)
    print(f"Flower app, {args.sites} sites, {args.rounds} rounds, model {args.dim} float32 "
          f"({args.dim * 4 / 1e6:.3f} MB), {args.repeats} repeat(s)")
    print(f"{'run':40s} {'median s':>9s} {'range s':>15s}  final model = Simulation Engine's")
    for name, walls in runs.items():
        same = "(the reference)" if name not in equal else ("yes, bit for bit" if equal[name] else "NO")
        print(f"{name:40s} {statistics.median(walls):9.1f} {min(walls):7.1f}-{max(walls):<7.1f}  {same}")


if __name__ == "__main__":
    main()
