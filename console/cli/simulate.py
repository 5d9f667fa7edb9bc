"""`flctl simulate JOB -n SITES [-w DIR] [--workers K] [--gpus 0,1] [--engine local|ray] [--data PATH]...
[--privacy FILE] [--json]`,
and `flctl simulate --resume RESULTS` (a run's results folder: on from its last round's checkpoint)."""

from __future__ import annotations

import json
import signal
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from flctl.console.cli import exit_codes, terminal
from flctl.console.cli.options import JsonOption

if TYPE_CHECKING:
    from flctl.node.simulator.runtime import Engine


class EngineName(StrEnum):
    local = "local"
    ray = "ray"


def command(
    job: Annotated[Path | None, typer.Argument(metavar="JOB", show_default=False,
                                               help="Job folder (job.yml and app/), or job file (NAME.yml with "
                                                    "app/ beside it); none with --resume.")] = None,
    sites: Annotated[int | None, typer.Option("--sites", "-n", min=1, max=100_000, show_default=False,
                                              help="How many sites to simulate (site-1..site-N) [default: the "
                                                   "sites job.yml names, else max(2, min_sites)].")] = None,
    workspace: Annotated[Path | None, typer.Option(
        "--workspace", "-w", file_okay=False, show_default=False,
        help="Where results go: WORKSPACE/<job name>/ [default: $FLCTL_SIM_WORKSPACE, else "
             "~/.local/share/flctl/simulate].")] = None,
    workers: Annotated[int | None, typer.Option("--workers", min=1, max=1024, show_default=False,
                                                help="Worker processes the sites share [default: CPU cores, "
                                                     "at most one per site].")] = None,
    data: Annotated[list[Path] | None, typer.Option(
        "--data", exists=True, help="A folder or file the scripts may read besides their app folder (they are "
                                    "confined with Landlock where the kernel has it); repeat for more.")] = None,
    privacy: Annotated[Path | None, typer.Option(
        "--privacy", exists=True, dir_okay=False, show_default=False,
        help="A site's local/privacy.yml that every simulated site applies: its filters for the job's "
             "privacy_scope run on each task and result [default: one scope, public, without filters].")] = None,
    engine: Annotated[EngineName | None, typer.Option(
        "--engine", show_default=False,
        help="What runs the sites: local (worker processes on this machine) or ray (Ray actors on a Ray cluster, "
             "or a local Ray; needs flctl[ray]) [default: local; with --resume, the run's].")] = None,
    address: Annotated[str | None, typer.Option(
        "--address", show_default=False, help="--engine ray: the Ray cluster (auto, or HOST:PORT of its head) "
                                              "[default: start a local Ray and stop it at the end].")] = None,
    site_cpus: Annotated[float | None, typer.Option(
        "--site-cpus", min=0, show_default=False, help="--engine ray: CPUs a site's script needs; Ray runs as "
                                                        "many at once as the cluster has [default: the job's "
                                                        "resources.cpus].")] = None,
    gpus: Annotated[str | None, typer.Option(
        "--gpus", metavar="0,1", show_default=False,
        help="GPUs to spread the sites over (local engine): a worker per GPU (per the job's resources.gpus GPUs), "
             "each seeing only its own through CUDA_VISIBLE_DEVICES; sites go to them in turn. Refused when the "
             "job's gpu_memory_gb times the sites a GPU holds exceeds its memory.")] = None,
    site_gpus: Annotated[float, typer.Option("--site-gpus", min=0, show_default=False,
                                             help="--engine ray: GPUs a site's script needs; fractions share one "
                                                  "[default: 0].")] = 0.0,
    resume: Annotated[Path | None, typer.Option(
        "--resume", file_okay=False, show_default=False,
        help="A run's results folder (WORKSPACE/<job name>): run it on from its last round's checkpoint, with its "
             "sites and engine (--engine/--address given here override).")] = None,
    json_out: JsonOption = False,
) -> None:
    """Run a job with its sites simulated on this machine: no provisioning, no TLS, the same code.

    The workflow runs in this process; the sites' training scripts run as threads of a few worker
    processes (many sites share each worker), unchanged. Results land where a real run puts them:
    models/round-N.safetensors and final.safetensors, metrics.json, logs/<site>.log. The scripts get a
    minimal environment (PATH, LANG, HOME, TMPDIR and the job's app.env, never this shell's other variables)
    and, with Landlock, read only their app folder, the Python installation and --data paths.
    With --engine ray the sites run in Ray actors instead, as many at once as the cluster's CPUs (GPUs) allow
    for --site-cpus (--site-gpus) each; a node lost mid-run moves its sites to the others.
    Exit codes: 0 the job FINISHED, 1 it FAILED, 2 the job folder or an option is wrong.
    """
    from flctl.node.config.privacy import load_privacy
    from flctl.node.jobs.job_spec import load_job
    from flctl.node.jobs.job_status import JobStatus
    from flctl.node.simulator.runtime import MARKER, SimulationError, default_workspace, simulate, site_names
    from flctl.provisioner.errors import KitError

    settings: dict[str, Any] = {}
    if resume is not None:
        job, sites, settings = _resumed(resume, job, sites, MARKER)
    if job is None:
        terminal.abort("name the JOB to simulate (or --resume RESULTS)", exit_codes.BAD_INPUT)
    loaded = load_job(job)
    try:
        rules = load_privacy(privacy) if privacy is not None else None
    except KitError as exc:
        terminal.abort(str(exc), exit_codes.BAD_INPUT)
    try:
        names = site_names(loaded, sites)
    except SimulationError as exc:
        terminal.abort(str(exc), exit_codes.BAD_INPUT)
    needs = loaded.spec.resources
    chosen = _engine(engine, settings, address, site_cpus or settings.get("site_cpus") or needs.cpus,
                     site_gpus or settings.get("site_gpus") or 0.0, workers or settings.get("workers"))
    if gpus is not None or settings.get("gpu_groups"):
        chosen = _on_gpus(chosen, gpus, settings, loaded.spec.resources, len(names), quiet=json_out)
    root = resume.resolve().parent if resume is not None else (workspace or default_workspace())
    progress = _Progress(loaded.spec.name, quiet=json_out)
    previous = signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM stops the run as Ctrl-C does
    try:
        with progress:
            result = simulate(loaded, names, root, workers, progress, [str(p) for p in data or []], rules,
                              engine=chosen, resume=resume is not None)
    except SimulationError as exc:
        unreachable = type(exc).__name__ == "RayUnreachable"
        terminal.abort(str(exc), exit_codes.NO_CONNECTION if unreachable else exit_codes.BAD_INPUT)
    finally:
        signal.signal(signal.SIGTERM, previous)
    if json_out:
        terminal.print_json(result.as_dict())
    elif result.status == JobStatus.FINISHED:
        terminal.success(f"{result.job} FINISHED in {result.wall_s:.2f} s ({result.sites} sites, "
                         f"{result.workers} workers); results in {result.job_dir}")
        _show_cross_site_eval(result.job_dir / "reports" / "cross_site_eval.json")
        _show_statistics(result.job_dir / "reports")
        _show_inference(result.job_dir / "reports" / "inference.json")
    else:
        terminal.error(f"{result.job} FAILED: {result.error}; logs in {result.job_dir / 'logs'}")
    if result.status != JobStatus.FINISHED:
        raise typer.Exit(exit_codes.FAILED)


def _on_gpus(engine: Engine, gpus: str | None, settings: dict[str, Any], resources: Any, sites: int, quiet: bool
             ) -> Engine:
    """The local engine with its workers spread over --gpus (a resumed run's groups without it); exit 2 with why
    when they cannot hold the sites."""
    from dataclasses import replace

    from flctl.node.simulator.gpu_spread import GpuSpreadError, check_listed, parse_gpus, spread
    from flctl.node.simulator.runtime import LocalEngine
    from flctl.node.site.placement import Ask

    if not isinstance(engine, LocalEngine):
        terminal.abort("--gpus is for --engine local; Ray places sites on GPUs itself (--site-gpus)",
                       exit_codes.BAD_INPUT)
    if gpus is None:
        return replace(engine, gpu_groups=tuple(settings["gpu_groups"]))
    try:
        listed = parse_gpus(gpus)
        plan = spread(listed, sites, Ask.of(resources), check_listed(listed))
    except GpuSpreadError as exc:
        terminal.abort(str(exc), exit_codes.BAD_INPUT)
    if not quiet:
        terminal.info(f"{sites} sites over GPUs {', '.join(plan.groups)}: up to {plan.sites_per_group} a GPU group")
    return replace(engine, gpu_groups=plan.groups)


def _resumed(resume: Path, job: Path | None, sites: int | None, marker: str) -> tuple[Path, int, dict[str, Any]]:
    """The job, site count and engine settings of the run in `resume` (its results folder)."""
    if job is not None:
        terminal.abort("--resume continues a run with the job it ran: drop JOB", exit_codes.BAD_INPUT)
    try:
        kept = json.loads((resume / marker).read_text())
        return resume, sites or int(kept["sites"]), dict(kept.get("engine") or {})
    except (OSError, ValueError, KeyError, TypeError) as exc:
        terminal.abort(f"{resume} is not a simulation's results folder (its {marker} cannot be read: {exc})",
                       exit_codes.BAD_INPUT)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _engine(name: EngineName | None, settings: dict[str, Any], address: str | None, site_cpus: float, site_gpus: float,
            workers: int | None) -> Engine:
    """The engine asked for: --engine (else a resumed run's), ray only when Ray is installed (else exit 2 with the
    hint)."""
    from flctl.node.simulator.runtime import LocalEngine

    if name is None:
        name = EngineName(settings.get("name") or "local")  # a resumed run keeps its engine unless told another
    if name == EngineName.local:
        if address is not None:
            terminal.abort("--address is for --engine ray", exit_codes.BAD_INPUT)
        return LocalEngine(workers)
    from flctl.node.simulator.ray_engine import RayEngine, ray_missing

    hint = ray_missing()
    if hint:
        terminal.abort(hint, exit_codes.BAD_INPUT)
    return RayEngine(address or settings.get("address"), float(site_cpus), float(site_gpus))


class _Progress:
    """Progress on stderr: on a terminal, a rich bar of rounds with the sites done in the round and the elapsed
    time; otherwise (a pipe, a file, --quiet) plain lines, one per round."""

    def __init__(self, name: str, quiet: bool) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._quiet = quiet
        self._name = name
        self._rounds = 0
        self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                             TextColumn("{task.fields[sites]}"), TimeElapsedColumn(), console=terminal.err,
                             transient=True, auto_refresh=False,
                             disable=quiet or not terminal.interactive())  # no refresh thread while workers start
        self._task = self._bar.add_task(f"{name} rounds", total=None, sites="")
        self._shown = 0.0

    def __enter__(self) -> _Progress:
        self._bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._bar.__exit__(*exc)

    def site_answered(self, round_no: int, answered: int, asked: int) -> None:
        """Sites done in the round in progress: the bar redraws at most ten times a second (a thousand sites
        answering must not cost a thousand redraws)."""
        import time

        now = time.monotonic()
        if answered < asked and now - self._shown < 0.1:
            return
        self._shown = now
        self._bar.update(self._task, sites=f"round {round_no + 1}: {answered}/{asked} sites")
        self._bar.refresh()

    def round_done(self, round_no: int, rounds: int, metrics: dict[str, dict[str, float]]) -> None:
        self._bar.update(self._task, completed=round_no + 1, total=rounds or None, sites="")
        self._bar.refresh()
        if self._quiet:
            return
        sums: dict[str, list[float]] = {}
        for values in metrics.values():
            for name, value in values.items():
                sums.setdefault(name, []).append(value)
        shown = " ".join(f"{name}={sum(v) / len(v):.4g}" for name, v in sorted(sums.items()))
        step = f"round {round_no + 1} of {rounds}" if rounds else "answers"  # a job of one step (inference)
        self._bar.console.print(f"{step}: {len(metrics)} sites, mean {shown}", markup=False, highlight=False)

    def log(self, line: str) -> None:
        if not self._quiet and ("failed" in line or "ignored" in line):
            self._bar.console.print(line, markup=False, highlight=False)


def _show_cross_site_eval(path: Path) -> None:
    """The cross-site evaluation's matrix, when the job made one."""
    import json

    from flctl.console.cli.job.render import cross_site_table

    if path.is_file():
        columns, rows = cross_site_table(json.loads(path.read_text()))
        if rows:
            terminal.table(columns, rows, title="cross-site evaluation (rows evaluate the column's model)")


def _show_inference(path: Path) -> None:
    """An inference job's table (each site's declared metrics, all sites), when the job made one."""
    import json

    from flctl.console.cli.job.inference_view import show

    if path.is_file():
        show({"inference": json.loads(path.read_text())})


def _show_statistics(reports: Path) -> None:
    """A statistics or data-check job's tables, and a PNG histogram per feature beside statistics.json."""
    import json

    from flctl.console.cli.job.statistics_plots import write_histograms
    from flctl.console.cli.job.statistics_view import show

    found = {name: json.loads((reports / f"{name}.json").read_text()) for name in ("statistics", "data_check")
             if (reports / f"{name}.json").is_file()}
    if found:
        show(found)
    if "statistics" in found:
        written = write_histograms(found["statistics"], reports)
        if written:
            terminal.info(f"histograms: {len(written)} PNG files in {reports}")
