#!/usr/bin/env python3
"""Provisioning benchmark: `flctl provision` (and optionally `nvflare provision`) for 1 server + 1 admin + N sites.

Usage
-----
    python bench/provision.py                              # flctl only, N = 10 100 1000, 3 repeats
    python bench/provision.py --n 10 100 --repeats 5
    python bench/provision.py --vs-nvflare                 # also NVIDIA FLARE 2.9.0, N = 10 100 500
    python bench/provision.py --vs-nvflare --n 10 100 500 --json-out /tmp/provision.json

The driver uses the standard library only; each tool runs as a subprocess, so what is measured is what a
user waits for: interpreter start, imports, key generation, signing and writing every kit.

flctl is the `flctl` next to the running interpreter (`Path(sys.executable).parent / "flctl"`), else the
one on PATH. It runs `flctl provision PROJECT.yml -w WORKSPACE --json` with a project file in flctl's
format (api_version 1). With `--vs-nvflare`, NVIDIA FLARE is installed once (cached) into its own virtual
environment (`--nvflare-venv`, default ~/.cache/flctl-bench/venv-nvflare; `pip install nvflare==2.9.0`, no
torch) and runs `nvflare provision -p project.yml -w WORKSPACE --force` on an equivalent api_version 3
project (the builders of `nvflare provision -g`: WorkspaceBuilder with the master/aws/azure templates,
StaticFileBuilder, CertBuilder, SignatureBuilder).

Every run gets a fresh temporary workspace and working directory (under `--workdir`, default the system
temp dir), removed afterwards; every subprocess has a timeout (`--timeout`, seconds) after which its whole
process group is killed. Both tools write thousands of small files at N=1000 (about 11 per participant plus
a zip each), so on a slow or busy disk the figures measure the disk as much as the tool: compare with
`--workdir /dev/shm` (tmpfs) to separate the two, and run on an otherwise idle machine (a warning is printed
when the load average is high).

Figures
-------
- seconds med/min/max: wall-clock time from spawn to exit of the provisioning command, over `--repeats`.
- peak RSS MB: the largest "Maximum resident set size" over the repeats, i.e. the peak resident memory
  of the provisioning process. It comes from `/usr/bin/time -v` when that exists. Otherwise each run goes
  through a tiny Python wrapper whose only child is the command, and the wrapper reports
  `getrusage(RUSAGE_CHILDREN).ru_maxrss` (exact, because it has a single child; the driver's own
  RUSAGE_CHILDREN is not used, since it is a running maximum over every child the driver ever had).
  Both figures are those of the largest single process, not a sum over a process tree (flctl forks
  helper processes for big projects, each smaller than the parent; nvflare runs as a single process).
- cpu s: median user + system CPU seconds of the command and every process it waited for (its forked
  helpers included), from the same source. On a busy machine it moves much less than the wall time.
- load: the 1-minute load average when each run started (printed per run).
- files: number of files under prod_00 (kit folders and zips together).
- kits KB: apparent size (sum of file sizes, not disk blocks) of every file under prod_00 except the
  zips; zips KB: the same for the `*.zip` files.
- site kit B / site zip B: apparent size of one site's kit folder (site-1) and of its zip, i.e. the bytes
  per site.
- ratio nvflare/flctl: median nvflare seconds divided by median flctl seconds, per N.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

NVFLARE_VERSION = "2.9.0"
DEFAULT_N = [10, 100, 1000]
DEFAULT_N_VS_NVFLARE = [10, 100, 500]
DEFAULT_NVFLARE_VENV = Path.home() / ".cache" / "flctl-bench" / "venv-nvflare"
GNU_TIME = Path("/usr/bin/time")
SITE = "site-1"
PROJECT_ORG = "bench"
ADMIN = "admin@bench.org"

# Runs CMD... as its only child and writes "<wall seconds> <maxrss KiB> <exit code> <cpu seconds>" to OUTFILE.
_WRAPPER = """\
import resource, subprocess, sys, time
out, cmd = sys.argv[1], sys.argv[2:]
t0 = time.perf_counter()
rc = subprocess.call(cmd)
wall = time.perf_counter() - t0
with open(out, "w") as f:
    use = resource.getrusage(resource.RUSAGE_CHILDREN)
    f.write(f"{wall} {use.ru_maxrss} {rc} {use.ru_utime + use.ru_stime}")
sys.exit(rc)
"""


@dataclass
class Run:
    """One provisioning run."""

    tool: str
    n: int
    seconds: float
    peak_rss_mb: float | None
    cpu_s: float | None
    load_1min: float
    files: int
    kits_bytes: int
    zips_bytes: int
    site_kit_bytes: int
    site_zip_bytes: int


@dataclass
class Summary:
    """The repeats of one tool at one N."""

    tool: str
    n: int
    runs: list[Run] = field(default_factory=list)

    def seconds(self) -> list[float]:
        return [r.seconds for r in self.runs]

    def median(self) -> float:
        return statistics.median(self.seconds())

    def cpu_s(self) -> float | None:
        values = [r.cpu_s for r in self.runs if r.cpu_s is not None]
        return statistics.median(values) if values else None

    def peak_rss_mb(self) -> float | None:
        values = [r.peak_rss_mb for r in self.runs if r.peak_rss_mb is not None]
        return max(values) if values else None


# ---------------------------------------------------------------------------------------------- projects


def flctl_project(n: int) -> str:
    """flctl's project format (api_version 1): 1 server, N sites, 1 admin."""
    lines = ["api_version: 1", f"name: bench_n{n}",
             f"server: {{name: server1, org: {PROJECT_ORG}, port: 8002}}", "sites:"]
    lines += [f"  - {{name: site-{i}, org: {PROJECT_ORG}}}" for i in range(1, n + 1)]
    lines += ["admins:", f"  - {{name: {ADMIN}, org: {PROJECT_ORG}, role: project_admin}}"]
    return "\n".join(lines) + "\n"


def nvflare_project(n: int) -> str:
    """NVIDIA FLARE's project format (api_version 3) with the builders of `nvflare provision -g`."""
    lines = ["api_version: 3", f"name: bench_n{n}", "description: flctl bench (1 server, 1 admin, N clients)",
             "participants:",
             "  - {name: server1, type: server, org: bench, fed_learn_port: 8002}"]
    lines += [f"  - {{name: site-{i}, type: client, org: {PROJECT_ORG}}}" for i in range(1, n + 1)]
    lines += [
        f"  - {{name: {ADMIN}, type: admin, org: {PROJECT_ORG}, role: project_admin}}",
        "builders:",
        "  - path: nvflare.lighter.impl.workspace.WorkspaceBuilder",
        "    args:",
        "      template_file: [master_template.yml, aws_template.yml, azure_template.yml]",
        "  - path: nvflare.lighter.impl.static_file.StaticFileBuilder",
        "    args:",
        "      config_folder: config",
        "  - path: nvflare.lighter.impl.cert.CertBuilder",
        "  - path: nvflare.lighter.impl.signature.SignatureBuilder",
    ]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------- running


def run_with_timeout(cmd: list[str], cwd: Path, timeout: float, env: dict[str, str] | None = None
                     ) -> subprocess.CompletedProcess[str]:
    """Run `cmd` in its own process group; on timeout kill the whole group and raise."""
    with subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def measured(cmd: list[str], cwd: Path, timeout: float, env: dict[str, str] | None = None
             ) -> tuple[float, float | None, float | None]:
    """Run `cmd`; return (wall seconds, peak RSS MB, CPU seconds). Raises on failure or timeout."""
    report = cwd / ".bench-measure.txt"
    if GNU_TIME.exists():
        wrapped = [str(GNU_TIME), "-v", "-o", str(report), *cmd]
    else:
        wrapped = [sys.executable, "-c", _WRAPPER, str(report), *cmd]
    start = time.perf_counter()
    done = run_with_timeout(wrapped, cwd, timeout, env)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{cmd[0]} exited {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    text = report.read_text()
    report.unlink()
    if GNU_TIME.exists():
        return wall, _gnu_time_maxrss_mb(text), _gnu_time_cpu_s(text)
    wrapper_wall, maxrss_kib, _rc, cpu = text.split()
    return float(wrapper_wall), int(maxrss_kib) / 1024, float(cpu)


def _gnu_time_maxrss_mb(text: str) -> float | None:
    for line in text.splitlines():
        if line.strip().startswith("Maximum resident set size"):
            return int(line.split()[-1]) / 1024
    return None


def _gnu_time_cpu_s(text: str) -> float | None:
    found = [float(line.split()[-1]) for line in text.splitlines()
             if line.strip().startswith(("User time (seconds)", "System time (seconds)"))]
    return sum(found) if len(found) == 2 else None


# ---------------------------------------------------------------------------------------------- sizes


def tree_sizes(prod: Path) -> tuple[int, int, int]:
    """(file count, apparent bytes of non-zip files, apparent bytes of zips) under `prod`."""
    files = kits = zips = 0
    for path in prod.rglob("*"):
        if path.is_file() and not path.is_symlink():
            files += 1
            size = path.stat().st_size
            if path.suffix == ".zip":
                zips += size
            else:
                kits += size
    return files, kits, zips


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def describe(tool: str, n: int, measure: tuple[float, float | None, float | None], load: float, prod: Path
             ) -> Run:
    if not prod.is_dir():
        raise RuntimeError(f"{tool} wrote no {prod}")
    files, kits, zips = tree_sizes(prod)
    site_zip = prod / f"{SITE}.zip"
    seconds, rss, cpu = measure
    return Run(tool, n, round(seconds, 4), None if rss is None else round(rss, 1),
               None if cpu is None else round(cpu, 3), round(load, 2), files, kits, zips,
               dir_bytes(prod / SITE), site_zip.stat().st_size if site_zip.exists() else 0)


# ---------------------------------------------------------------------------------------------- tools


def find_flctl() -> str:
    beside = Path(sys.executable).parent / "flctl"
    if beside.exists():
        return str(beside)
    found = shutil.which("flctl")
    if not found:
        sys.exit("flctl not found next to this python nor on PATH; install the project first")
    return found


def flctl_once(flctl: str, n: int, timeout: float, workdir: Path | None) -> Run:
    with tempfile.TemporaryDirectory(prefix="flctl-bench-", dir=workdir) as tmp:
        root = Path(tmp)
        project = root / "project.yml"
        project.write_text(flctl_project(n))
        load = os.getloadavg()[0]
        measure = measured([flctl, "provision", str(project), "-w", str(root / "ws"), "--json"], root, timeout)
        return describe("flctl", n, measure, load, root / "ws" / f"bench_n{n}" / "prod_00")


def nvflare_once(nvflare: str, n: int, timeout: float, workdir: Path | None) -> Run:
    with tempfile.TemporaryDirectory(prefix="nvflare-bench-", dir=workdir) as tmp:
        root = Path(tmp)
        project = root / "project.yml"
        project.write_text(nvflare_project(n))
        env = dict(os.environ, PATH=f"{Path(nvflare).parent}{os.pathsep}{os.environ.get('PATH', '')}")
        load = os.getloadavg()[0]
        measure = measured([nvflare, "provision", "-p", str(project), "-w", str(root / "ws"), "--force"],
                           root, timeout, env)
        return describe("nvflare", n, measure, load, root / "ws" / f"bench_n{n}" / "prod_00")


def nvflare_installed(venv: Path) -> bool:
    python = venv / "bin" / "python"
    if not (venv / "bin" / "nvflare").exists():
        return False
    probe = [str(python), "-c", "import importlib.metadata as m; print(m.version('nvflare'))"]
    try:
        done = run_with_timeout(probe, venv, 120)
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0 and done.stdout.strip() == NVFLARE_VERSION


def ensure_nvflare(venv: Path, timeout: float) -> str:
    """Create (once) a venv with nvflare==2.9.0 and no torch; return the path of its `nvflare`."""
    if nvflare_installed(venv):
        return str(venv / "bin" / "nvflare")
    python3 = shutil.which("python3") or sys.executable
    print(f"installing nvflare=={NVFLARE_VERSION} into {venv} (once) ...", flush=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    for cmd in ([python3, "-m", "venv", "--clear", str(venv)],
                [str(venv / "bin" / "pip"), "install", "-q", f"nvflare=={NVFLARE_VERSION}"]):
        done = run_with_timeout(cmd, venv.parent, timeout)
        if done.returncode != 0:
            sys.exit(f"failed: {' '.join(cmd)}\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    if not nvflare_installed(venv):
        sys.exit(f"nvflare=={NVFLARE_VERSION} did not install into {venv}")
    return str(venv / "bin" / "nvflare")


# ---------------------------------------------------------------------------------------------- output


def fmt_rss(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def fmt_cpu(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def table(summaries: list[Summary]) -> str:
    head = (f"{'tool':<8} {'N':>5} {'med s':>8} {'min s':>8} {'max s':>8} {'cpu s':>6} {'peak RSS MB':>11} "
            f"{'files':>6} {'kits KB':>9} {'zips KB':>9} {'site kit B':>10} {'site zip B':>10}")
    rows = [head, "-" * len(head)]
    for s in summaries:
        last = s.runs[-1]
        rows.append(f"{s.tool:<8} {s.n:>5} {s.median():>8.3f} {min(s.seconds()):>8.3f} {max(s.seconds()):>8.3f} "
                    f"{fmt_cpu(s.cpu_s()):>6} {fmt_rss(s.peak_rss_mb()):>11} {last.files:>6} "
                    f"{last.kits_bytes / 1000:>9.1f} {last.zips_bytes / 1000:>9.1f} {last.site_kit_bytes:>10} "
                    f"{last.site_zip_bytes:>10}")
    return "\n".join(rows)


def ratios(summaries: list[Summary]) -> dict[int, float]:
    by = {(s.tool, s.n): s for s in summaries}
    return {n: by["nvflare", n].median() / by["flctl", n].median()
            for (tool, n) in by if tool == "flctl" and ("nvflare", n) in by}


# ---------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, nargs="+", help=f"site counts [default: {DEFAULT_N}; "
                    f"{DEFAULT_N_VS_NVFLARE} with --vs-nvflare]")
    ap.add_argument("--repeats", type=int, default=3, help="runs per tool and N [default: 3]")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per provisioning run [default: 900]")
    ap.add_argument("--workdir", type=Path, help="parent folder of the temporary workspaces [default: the "
                    "system temp dir]; e.g. /dev/shm to take the disk out of the figures")
    ap.add_argument("--json-out", type=Path, help="also write every run and summary to this JSON file")
    ap.add_argument("--vs-nvflare", action="store_true", help=f"also run nvflare=={NVFLARE_VERSION} provision")
    ap.add_argument("--nvflare-venv", type=Path, default=DEFAULT_NVFLARE_VENV,
                    help="where to create (once) the nvflare virtual environment [default: %(default)s]")
    args = ap.parse_args(argv)
    if args.n is None:
        args.n = DEFAULT_N_VS_NVFLARE if args.vs_nvflare else DEFAULT_N
    if args.repeats < 1 or any(n < 1 for n in args.n):
        ap.error("--repeats and every --n must be at least 1")
    return args


def warn_if_busy() -> None:
    """Timings are only comparable on an idle machine: say so when the 1-minute load is high."""
    load, cpus = os.getloadavg()[0], os.cpu_count() or 1
    if load > 0.5 * cpus:
        print(f"warning: 1-minute load average {load:.2f} on {cpus} CPUs; timings will be noisy", flush=True)


def bench(tool: str, once: Callable[[int], Run], n: int, repeats: int) -> Summary:
    summary = Summary(tool, n)
    for rep in range(repeats):
        run = once(n)
        summary.runs.append(run)
        print(f"  {tool} N={n} run {rep + 1}/{repeats}: {run.seconds:.3f} s, cpu {fmt_cpu(run.cpu_s)} s, peak RSS "
              f"{fmt_rss(run.peak_rss_mb)} MB, {run.files} files, load {run.load_1min:.2f}", flush=True)
    return summary


def write_json(path: Path, summaries: list[Summary], rate: dict[int, float]) -> None:
    data = {
        "runs": [asdict(r) for s in summaries for r in s.runs],
        "summary": [{"tool": s.tool, "n": s.n, "median_s": s.median(), "min_s": min(s.seconds()),
                     "max_s": max(s.seconds()), "cpu_s": s.cpu_s(), "peak_rss_mb": s.peak_rss_mb()}
                    for s in summaries],
        "ratio_nvflare_over_flctl": {str(n): r for n, r in rate.items()},
        "rss_source": "/usr/bin/time -v" if GNU_TIME.exists() else "wrapper getrusage(RUSAGE_CHILDREN)",
    }
    path.write_text(json.dumps(data, indent=1) + "\n")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    flctl = find_flctl()
    tools: list[tuple[str, Callable[[int], Run]]] = [
        ("flctl", lambda n: flctl_once(flctl, n, args.timeout, args.workdir))]
    if args.vs_nvflare:
        nvflare = ensure_nvflare(args.nvflare_venv.expanduser(), max(args.timeout, 1800))
        tools.append(("nvflare", lambda n: nvflare_once(nvflare, n, args.timeout, args.workdir)))
    print(f"flctl: {flctl}; peak RSS from {'/usr/bin/time -v' if GNU_TIME.exists() else 'getrusage wrapper'}; "
          f"workspaces under {args.workdir or tempfile.gettempdir()}")
    warn_if_busy()
    summaries = [bench(tool, once, n, args.repeats) for n in args.n for tool, once in tools]
    print()
    print(table(summaries))
    rate = ratios(summaries)
    if rate:
        print()
        for n, r in rate.items():
            print(f"N={n}: nvflare / flctl median time = {r:.2f}x")
    if args.json_out:
        write_json(args.json_out, summaries, rate)


if __name__ == "__main__":
    main()
