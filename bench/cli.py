"""How fast the commands a person types all day answer, beside `python -c pass` on the same machine.

Each command runs --repeats times (default 7), alternating with `python -c pass`; the figure is the
median wall time minus the median of `python -c pass` (the interpreter's own start-up: what no command
can remove), so the figure holds on a noisy machine. The admin commands (`site ls`, `job ls`,
`job submit` of hello-numpy without --watch) run against a local federation this script starts
(`flctl poc`, real processes and mTLS) and stops. The goal (issue 19): under 0.25 s of their own for
--help, --version, kit show, kit verify, site ls and job ls; under 0.5 s for submitting a small job.

    .venv/bin/python bench/cli.py                  # every command
    .venv/bin/python bench/cli.py --repeats 11 --json out.json
    .venv/bin/python bench/cli.py --no-poc         # only the commands that need no federation

Standard library only; run it with the interpreter that has flctl installed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FLCTL = str(Path(sys.executable).parent / "flctl")
ROOT = Path(__file__).resolve().parent.parent
GOALS = {"submit": 0.5}
DEFAULT_GOAL = 0.25


def wall(cmd: list[str], env: dict[str, str]) -> float:
    began = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120, check=False)
    took = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.strip()}")
    return took


def measure(commands: dict[str, list[str]], env: dict[str, str], repeats: int) -> dict[str, dict[str, float]]:
    """name -> {median_s, own_s, min_s, max_s}; `python -c pass` alternates with every command."""
    baseline: list[float] = []
    runs: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(repeats):
        for name, cmd in commands.items():
            baseline.append(wall([sys.executable, "-c", "pass"], env))
            runs[name].append(wall(cmd, env))
    base = statistics.median(baseline)
    out = {"python -c pass": {"median_s": base, "own_s": 0.0, "min_s": min(baseline), "max_s": max(baseline)}}
    for name, times in runs.items():
        median = statistics.median(times)
        out[name] = {"median_s": median, "own_s": median - base, "min_s": min(times), "max_s": max(times)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--no-poc", action="store_true", help="skip the commands that need a local federation")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="flctl-bench-cli-") as tmp:
        root = Path(tmp)
        env = {**os.environ, "FLCTL_POC_WORKSPACE": str(root / "poc"), "XDG_CONFIG_HOME": str(root / "config")}
        env.pop("FLCTL_KIT", None)
        subprocess.run([FLCTL, "provision", str(ROOT / "playbooks/projects/local.yml"), "-w", str(root / "ws")],
                       capture_output=True, check=True, env=env)
        kit = str(root / "ws/local/prod_00/admin@localhost")
        commands = {"--help": [FLCTL, "--help"], "--version": [FLCTL, "--version"],
                    "kit show": [FLCTL, "kit", "show", kit], "kit verify": [FLCTL, "kit", "verify", kit]}
        results = measure(commands, env, args.repeats)
        if not args.no_poc:
            subprocess.run([FLCTL, "poc", "prepare", "-n", "2"], capture_output=True, check=True, env=env)
            try:
                subprocess.run([FLCTL, "poc", "start"], capture_output=True, check=True, env=env)
                job = str(ROOT / "playbooks/jobs/hello-numpy")
                results |= {k: v for k, v in measure({"site ls": [FLCTL, "site", "ls"], "job ls": [FLCTL, "job", "ls"],
                                                       "submit": [FLCTL, "job", "submit", job]},
                                                      env, args.repeats).items() if k != "python -c pass"}
            finally:
                subprocess.run([FLCTL, "poc", "stop"], capture_output=True, check=False, env=env)
                subprocess.run([FLCTL, "poc", "clean"], capture_output=True, check=False, env=env)

    load = os.getloadavg()[0]
    print(f"flctl command start-up, median of {args.repeats} (1-minute load {load:.2f}); own = median - python -c pass")
    print(f"{'command':<16} {'median':>8} {'own':>8} {'range':>15}  goal")
    for name, fig in results.items():
        goal = GOALS.get(name, DEFAULT_GOAL) if name != "python -c pass" else None
        verdict = "" if goal is None else f"< {goal} s: {'met' if fig['own_s'] < goal else 'NOT met'}"
        print(f"{name:<16} {fig['median_s']:>7.3f}s {fig['own_s']:>7.3f}s {fig['min_s']:>6.3f}-{fig['max_s']:.3f}s"
              f"  {verdict}")
    if args.json:
        args.json.write_text(json.dumps({"load": load, "repeats": args.repeats, "results": results}, indent=2))


if __name__ == "__main__":
    main()
