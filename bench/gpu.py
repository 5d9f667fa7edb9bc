#!/usr/bin/env python3
"""GPUs and LLMs, measured in one call on a GPU machine (issue 30): LoRA fine-tuning on the GPU and on the CPU, the
whole model's bytes beside the adapter's, and a site placing two concurrent jobs on its GPUs.

    python bench/gpu.py                       # everything, about 5-8 minutes on one H100; a table
    python bench/gpu.py --json                # one JSON object (also written to --out DIR/gpu.json)
    python bench/gpu.py --parts lora-gpu,placement
    python bench/gpu.py --quick --fake-gpus 1 # a machine without a GPU: the tiny model on the CPU, and placement
                                              # against a fake nvidia-smi with one GPU (checks this script)

On a machine that reaches no package registry (the `device` tool's), install flctl's wheels first:
`bash scripts/gpu_wheels.sh` here makes .whl/, then there
`python3 -m pip install -q --no-index --no-deps .whl/*.whl && python3 bench/gpu.py --out $OUT`.

Parts (each bounded by its own timeout, a failed part reported with its error and the rest still run):

- lora-gpu: `flctl simulate playbooks/jobs/llm-lora/gpu.yml -n 2 --gpus 0` (a ~99M-parameter Llama config in
  bfloat16, random weights, LoRA rank 16 on all linear layers, 50 steps of 8 x 512 tokens a round, 3 rounds): tokens
  per second per site (the median of each site's rounds 2.., from the job's metrics), the round time (between the
  server's round models, rounds 2..), the GPU's peak memory in use (NVML, sampled every 0.2 s, over what it held
  before), the bytes each site sent per round (the adapter) beside the whole model's bytes, the final perplexity.
- lora-cpu: the same model, dtype and batch on the CPU, 1 round of 2 steps (tokens/s is a rate: fewer steps keep
  the part short), each site's script with half the machine's cores.
- full-gpu: gpu.yml in `--mode full` for 1 round of 10 steps: the whole model trains and travels (the streaming
  path, bf16 at its own size): bytes per round and round time beside the adapter's.
- placement: a local federation (`flctl poc`, server and two sites as processes) on this machine's GPUs: site-1
  offers them unshared (`gpus: auto`), site-2 shared (`gpu_sharing: true`); four jobs submitted at once, two for
  each site, each ask `resources: {gpus: 1, gpu_memory_gb: G}` (G: a third of GPU 0's memory) and hold a tensor of
  G/2 GiB on the GPU doing matrix products for --hold-s seconds. Reported per job: the CUDA_VISIBLE_DEVICES its
  script saw, when it ran, its GPU memory; and how long each site's two jobs overlapped (on one GPU: not at site-1,
  where the second queues until the first frees the GPU; the whole hold at site-2, where they share it).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FLCTL = shutil.which("flctl", path=str(Path(sys.executable).parent)) or "flctl"
LORA = ROOT / "playbooks" / "jobs" / "llm-lora"
PARTS = ("lora-gpu", "lora-cpu", "full-gpu", "placement")
ENV = {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}

HOLD_SCRIPT = """\
import os
import time

import flctl.client as fl

fl.init()
while fl.running():
    model = fl.receive()
    try:
        import torch
        on_gpu = torch.cuda.is_available()
    except ImportError:
        on_gpu = False
    began = time.time()
    seen = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    metrics = {{"began": began, "gpus_seen": float(len([i for i in seen.split(",") if i]))}}
    for i in seen.split(","):
        if i.strip().isdigit():
            metrics[f"gpu{{int(i)}}"] = 1.0
    if on_gpu:
        held = torch.empty(int({hold_gib} * 2**30) // 2, dtype=torch.bfloat16, device="cuda")
        a = torch.randn(4096, 4096, dtype=torch.bfloat16, device="cuda")
        while time.time() - began < {hold_s}:
            a = (a @ a).clamp_(-1, 1)
        torch.cuda.synchronize()
        metrics["gpu_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
        print(f"on {{torch.cuda.get_device_name(0)}} (CUDA_VISIBLE_DEVICES={{seen}}), held "
              f"{{metrics['gpu_mem_gib']:.1f}} GiB")
        del held, a
    else:
        print(f"no GPU torch can use (CUDA_VISIBLE_DEVICES={{seen!r}}): holding {hold_s} s on the CPU")
        time.sleep({hold_s})
    metrics["ended"] = time.time()
    fl.send(fl.Model(params=model.params, metrics=metrics, num_examples=1))
"""


def run(cmd: list[str], timeout: float, env: dict[str, str] | None = None, cwd: Path | None = None
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, cwd=cwd, check=False)


# ------------------------------------------------------------------------------------------------- the machine
def machine() -> dict[str, Any]:
    from flctl.node.site.gpu_inventory import list_gpus

    gpus, source = list_gpus()
    info: dict[str, Any] = {"host": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version(),
                            "gpus": [{"index": g.index, "name": g.name, "memory_mb": g.memory_mb} for g in gpus],
                            "gpu_source": source, "load_1m": os.getloadavg()[0]}
    try:
        import torch

        info["torch"] = torch.__version__
        info["cuda"] = torch.version.cuda if torch.cuda.is_available() else None
    except ImportError:
        info["torch"] = None
    return info


class GpuPeak:
    """The most memory in use on the GPUs while it runs (NVML, else nvidia-smi), over what they held at its start."""

    def __init__(self, every_s: float = 0.2) -> None:
        self.every_s = every_s
        self.base = self.peak = self._used()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    @staticmethod
    def _used() -> float:
        from flctl.node.site.gpu_inventory import gpu_usage, list_gpus

        gpus, _ = list_gpus()
        return float(sum(g.used_mb for g in gpu_usage([g.index for g in gpus]).values()))

    def _watch(self) -> None:
        while not self._stop.wait(self.every_s):
            self.peak = max(self.peak, self._used())

    def __enter__(self) -> GpuPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def over_base_mb(self) -> float:
        return self.peak - self.base


# ------------------------------------------------------------------------------------------------- LoRA parts
def lora_job(work: Path, name: str, base: str, command: list[str], rounds: int, gpus: int) -> Path:
    """A copy of the llm-lora job with this command line and rounds (and the GPUs each site asks)."""
    import yaml

    job = work / name
    shutil.copytree(LORA / "app", job / "app")
    spec = yaml.safe_load((LORA / base).read_text())
    spec["name"] = name
    spec["workflow"]["args"]["rounds"] = rounds
    spec["app"]["command"] = command
    resources = dict(spec.get("resources") or {})
    resources.pop("gpus", None)
    if gpus:
        resources["gpus"] = gpus
    spec["resources"] = resources
    (job / "job.yml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return job


def simulate(job: Path, work: Path, timeout: float, gpus: str | None) -> dict[str, Any]:
    """Run `flctl simulate` on the job with two sites; its figures from the job's metrics and round models."""
    cmd = [FLCTL, "simulate", job, "-n", "2", "-w", work / f"{job.name}-results", "--json"]
    if gpus is not None:
        cmd += ["--gpus", gpus]
    began = time.monotonic()
    with GpuPeak() as peak:
        out = run(cmd, timeout, ENV)
    result: dict[str, Any] = {"wall_s": round(time.monotonic() - began, 1),
                              "gpu_peak_over_idle_mb": round(peak.over_base_mb)}
    try:
        summary = json.loads(out.stdout)
    except ValueError:
        return {**result, "error": f"flctl simulate exit {out.returncode}: {out.stderr.strip()[-2000:]}"}
    result["status"], result["isolation"] = summary.get("status"), summary.get("isolation")
    if summary.get("status") != "FINISHED":
        return {**result, "error": summary.get("error") or out.stderr.strip()[-2000:]}
    job_dir = Path(summary["job_dir"])
    metrics = json.loads((job_dir / "metrics.json").read_text())
    result.update(figures(metrics))
    result.update(round_times(job_dir / "models"))
    result["site_log_tail"] = tail(job_dir / "logs" / "site-1.log", 3)
    return result


def figures(metrics: list[dict[str, Any]]) -> dict[str, Any]:
    """tokens/s (median over sites of rounds 2.., else all rounds), bytes sent a round, the whole model's bytes,
    the last round's perplexity (mean over sites)."""
    def values(name: str, steady: bool) -> list[float]:
        rows = [m for m in metrics if m["name"] == name]
        later = [m for m in rows if m["round"] and m["round"] >= 1]
        return [float(m["value"]) for m in (later if steady and later else rows)]

    out: dict[str, Any] = {}
    if values("tokens_per_s", True):
        out["tokens_per_s_per_site"] = round(statistics.median(values("tokens_per_s", True)))
    for name in ("bytes_sent", "full_model_bytes"):
        if values(name, False):
            out[name] = int(statistics.median(values(name, False)))
    ppl = [m for m in metrics if m["name"] == "val_perplexity"]
    if ppl:
        last = max(m["round"] or 0 for m in ppl)
        out["val_perplexity_last"] = round(statistics.mean(m["value"] for m in ppl if (m["round"] or 0) == last), 2)
    return out


def round_times(models: Path) -> dict[str, Any]:
    """Seconds between the server's round models (round 1 on: round 0 holds the scripts' start)."""
    made = sorted((int(p.stem.split("-")[1]), p.stat().st_mtime) for p in models.glob("round-*.safetensors"))
    gaps = [b[1] - a[1] for a, b in itertools.pairwise(made)]
    return {"round_s": round(statistics.median(gaps), 2) if gaps else None, "rounds_done": len(made)}


def tail(path: Path, lines: int) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return []


def lora_command(mode: str, model: str, dtype: str, device: str, steps: int, threads: int, quick: bool) -> list[str]:
    if quick:  # the tiny model: checks the script on any machine in seconds
        return ["python", "train.py", "--mode", mode, "--model", "tiny", "--device", device, "--steps", str(steps),
                "--threads", str(threads)]
    return ["python", "train.py", "--mode", mode, "--model", model, "--dtype", dtype, "--device", device,
            "--threads", str(threads), "--chars", "2000000", "--seq-len", "512", "--batch", "8", "--steps",
            str(steps), "--lr", "1e-3", "--lora-r", "16", "--lora-alpha", "32", "--eval-batches", "2"]


# ------------------------------------------------------------------------------------------------- placement
def placement(work: Path, hold_s: float, fake_gpus: int, timeout: float) -> dict[str, Any]:
    """Two 1-GPU jobs at once on a local federation: site-1 unshared GPUs, site-2 shared."""
    from flctl.node.site.gpu_inventory import list_gpus

    env = {"XDG_CONFIG_HOME": str(work / "config"), "FLCTL_POC_WORKSPACE": str(work / "poc")}
    if fake_gpus:
        env["PATH"] = f"{fake_nvidia_smi(work / 'fake-gpu', fake_gpus)}{os.pathsep}{os.environ['PATH']}"
    old_path = os.environ["PATH"]
    os.environ["PATH"] = env.get("PATH", old_path)
    try:
        gpus, source = list_gpus()
    finally:
        os.environ["PATH"] = old_path
    if not gpus:
        return {"error": "no GPU found (NVML, nvidia-smi, torch); --fake-gpus N checks the part without one"}
    ask_gib = max(1, int(gpus[0].memory_mb / 1024 / 3))
    out = run([FLCTL, "poc", "prepare", "-n", "2", "--json"], 120, env)
    if out.returncode:
        return {"error": f"flctl poc prepare: {out.stderr.strip()}"}
    kits = Path(json.loads(out.stdout)["admin_kit"]).parent
    for site, extra in (("site-1", "gpus: auto\n"), ("site-2", "gpus: auto\ngpu_sharing: true\n")):
        path = kits / site / "local" / "resources.yml"
        path.write_text(path.read_text().replace("gpus: []\n", extra))
    server = kits / "localhost" / "local" / "resources.yml"
    server.write_text(server.read_text().replace("max_concurrent_jobs: 2", "max_concurrent_jobs: 4"))
    jobs = [hold_job(work, f"{site}-{x}", site, ask_gib, hold_s) for site in ("site-1", "site-2") for x in "ab"]
    result: dict[str, Any] = {"gpus": len(gpus), "gpu_source": source, "ask_gpu_memory_gb": ask_gib,
                              "hold_s": hold_s}
    try:
        started = run([FLCTL, "poc", "start"], 120, env)
        if started.returncode:
            return {**result, "error": f"flctl poc start: {started.stderr.strip()}"}
        if not wait_online(env, 2, 90):
            return {**result, "error": "the sites did not come online in 90 s"}
        listed = json.loads(run([FLCTL, "site", "ls", "--json"], 60, env).stdout)
        result["sites"] = {s["name"]: (s.get("resources") or {}).get("gpus") for s in listed}
        ids = [json.loads(run([FLCTL, "job", "submit", job, "--json"], 120, env).stdout)["id"] for job in jobs]
        shown = {job_id: ended(env, job_id, timeout) for job_id in ids}
        result["jobs"] = {job_id: summary_of(info) for job_id, info in shown.items()}
        for site in ("site-1", "site-2"):
            spans = [(info["last_metrics"][site]["began"], info["last_metrics"][site]["ended"])
                     for info in shown.values() if "ended" in (info.get("last_metrics") or {}).get(site, {})]
            if len(spans) == 2:
                (_, a1), (b0, b1) = sorted(spans)
                result[f"{site}_overlap_s"] = round(max(0.0, min(a1, b1) - b0), 1)
    except (subprocess.TimeoutExpired, ValueError, KeyError) as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        run([FLCTL, "poc", "stop"], 120, env)
    return result


def hold_job(work: Path, name: str, site: str, ask_gib: int, hold_s: float) -> Path:
    folder = work / name
    (folder / "app").mkdir(parents=True)
    (folder / "job.yml").write_text(
        f"api_version: 1\nname: {name}\nworkflow: {{type: fedavg, args: {{rounds: 1, round_timeout_s: 600}}}}\n"
        f"sites: [{site}]\nmin_sites: 1\nresources: {{cpus: 1, gpus: 1, gpu_memory_gb: {ask_gib}}}\n"
        "app:\n  command: [python, train.py]\n")
    (folder / "app" / "train.py").write_text(HOLD_SCRIPT.format(hold_gib=ask_gib / 2, hold_s=hold_s))
    return folder


def fake_nvidia_smi(folder: Path, count: int) -> Path:
    """An nvidia-smi answering flctl's query with `count` 80 GiB GPUs (to check this part without a GPU)."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = "".join(f"{i}, NVIDIA H100 80GB HBM3 (fake), 81559, 0, 81000\\n" for i in range(count))
    script = folder / "nvidia-smi"
    script.write_text(f'#!/bin/sh\ncase "$*" in\n  *--query-gpu=*) printf "{rows}" ;;\n  *) exit 2 ;;\nesac\n')
    script.chmod(0o755)
    return folder


def wait_online(env: dict[str, str], sites: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = run([FLCTL, "site", "ls", "--json"], 30, env)
        if out.returncode == 0 and sum(s["online"] for s in json.loads(out.stdout)) >= sites:
            return True
        time.sleep(0.5)
    return False


def ended(env: dict[str, str], job_id: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        info: dict[str, Any] = json.loads(run([FLCTL, "job", "show", job_id, "--json"], 60, env).stdout)
        if info["status"] in ("FINISHED", "FAILED", "ABORTED") or time.monotonic() > deadline:
            return info
        time.sleep(0.5)


def summary_of(info: dict[str, Any]) -> dict[str, Any]:
    sites = {}
    for site, metrics in (info.get("last_metrics") or {}).items():
        sites[site] = {"gpus": sorted(int(k[3:]) for k, v in metrics.items() if k[3:].isdigit() and v),
                       "began": metrics.get("began"), "ended": metrics.get("ended"),
                       "gpu_mem_gib": metrics.get("gpu_mem_gib")}
    return {"status": info["status"], "error": info.get("error", ""), "started_at": info.get("started_at"),
            "ended_at": info.get("ended_at"), "sites": sites}


# ------------------------------------------------------------------------------------------------- main
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--parts", default=",".join(PARTS), help=f"which parts, of {', '.join(PARTS)}")
    p.add_argument("--rounds", type=int, default=3, help="rounds of the lora-gpu run")
    p.add_argument("--hold-s", type=float, default=15.0, help="how long each placement job holds its GPU")
    p.add_argument("--quick", action="store_true", help="the tiny model (check this script on any machine)")
    p.add_argument("--fake-gpus", type=int, default=0, help="placement against a fake nvidia-smi with N GPUs")
    p.add_argument("--out", type=Path, help="also write gpu.json and the part logs here")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args()
    parts = [x.strip() for x in args.parts.split(",") if x.strip()]
    unknown = [x for x in parts if x not in PARTS]
    if unknown:
        p.error(f"unknown part {unknown[0]!r}: the parts are {', '.join(PARTS)}")
    report: dict[str, Any] = {"machine": machine(), "quick": args.quick}
    cores = max(1, (os.cpu_count() or 2) // 2)
    with tempfile.TemporaryDirectory(prefix="flctl-gpu-bench-") as tmp:
        work = Path(tmp)
        for part in parts:
            began = time.monotonic()
            note(f"{part} ...", args.json)
            try:
                report[part] = run_part(part, work, args, cores)
            except Exception as exc:  # noqa: BLE001 (a part that breaks must not lose the others' figures)
                report[part] = {"error": f"{type(exc).__name__}: {exc}"}
            report[part]["part_s"] = round(time.monotonic() - began, 1)
            note(f"{part}: {json.dumps(report[part])}", args.json)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "gpu.json").write_text(json.dumps(report, indent=1))
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        show(report)


def run_part(part: str, work: Path, args: argparse.Namespace, cores: int) -> dict[str, Any]:
    gpu = "cpu" if args.quick else "cuda"
    if part == "lora-gpu":
        job = lora_job(work, "lora-gpu", "gpu.yml", lora_command("lora", "100m", "bfloat16", gpu, 50, 0, args.quick),
                       args.rounds, 1)
        return simulate(job, work, 600, "0")
    if part == "lora-cpu":
        job = lora_job(work, "lora-cpu", "gpu.yml",
                       lora_command("lora", "100m", "bfloat16", "cpu", 2, cores, args.quick), 1, 0)
        return simulate(job, work, 400, None)
    if part == "full-gpu":
        job = lora_job(work, "full-gpu", "gpu.yml", lora_command("full", "100m", "bfloat16", gpu, 10, 0, args.quick),
                       2, 1)
        return simulate(job, work, 600, "0")
    return placement(work, args.hold_s, args.fake_gpus, 600)


def note(text: str, quiet: bool) -> None:
    print(text, file=sys.stderr if quiet else sys.stdout, flush=True)


def show(report: dict[str, Any]) -> None:
    m = report["machine"]
    gpus = ", ".join(f"{g['name']} ({g['memory_mb']} MiB)" for g in m["gpus"]) or "none"
    print(f"\nmachine: {m['host']}, {m['cpus']} CPUs, GPUs: {gpus}; torch {m.get('torch')} CUDA {m.get('cuda')}")
    for part in ("lora-gpu", "lora-cpu", "full-gpu"):
        r = report.get(part)
        if r is None:
            continue
        if "error" in r:
            print(f"{part:9} error: {r['error']}")
            continue
        print(f"{part:9} {r.get('tokens_per_s_per_site', '?')} tokens/s/site, round {r.get('round_s')} s, GPU peak "
              f"+{r['gpu_peak_over_idle_mb']} MiB, sent {r.get('bytes_sent', 0) / 1e6:.2f} MB/round of "
              f"{r.get('full_model_bytes', 0) / 1e6:.1f} MB whole, perplexity {r.get('val_perplexity_last')}, "
              f"wall {r['wall_s']} s")
    r = report.get("placement")
    if r is not None:
        if "error" in r:
            print(f"placement error: {r['error']}")
        for job_id, job in (r.get("jobs") or {}).items():
            seen = ", ".join(f"{s}: GPUs {v['gpus']}" for s, v in job["sites"].items())
            print(f"placement {job_id}: {job['status']} {seen}")
        print(f"placement overlap: site-1 (unshared) {r.get('site-1_overlap_s')} s, site-2 (shared) "
              f"{r.get('site-2_overlap_s')} s")


if __name__ == "__main__":
    main()
