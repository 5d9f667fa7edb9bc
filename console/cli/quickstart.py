"""`flctl quickstart [-n SITES] [--job EXAMPLE|PATH] [-w DIR] [-o DIR] [--json]`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from flctl.console.cli import exit_codes, terminal

EXAMPLES = Path(__file__).resolve().parents[2] / "playbooks" / "jobs"


def examples(root: Path = EXAMPLES) -> dict[str, Path]:
    """The example jobs by name, their path under playbooks/jobs: each folder with a job.yml (hello-pt), and each
    job file of a folder whose app/ several jobs share (noniid/fedavg.yml)."""
    found: dict[str, Path] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        if (folder / "job.yml").is_file():
            found[folder.name] = folder
        elif (folder / "app").is_dir():
            found.update({f"{folder.name}/{file.name}": file for file in sorted(folder.glob("*.yml"))})
    return found


def pick_job(job: str | None) -> Path:
    """The job to run: a path, an example's name, else hello-pt (hello-numpy when torch is missing)."""
    import importlib.util

    if job is None:
        job = "hello-pt" if importlib.util.find_spec("torch") is not None else "hello-numpy"
    known = examples()
    if job in known:
        return known[job]
    path = Path(job)
    if path.is_dir() or path.is_file():
        return path
    terminal.abort(f"no example or job '{job}'; pass a job folder, a job file or one of: {', '.join(known)}",
                   exit_codes.BAD_INPUT)


def command(
    sites: Annotated[int, typer.Option("--sites", "-n", min=1, max=64, help="How many sites to run.")] = 2,
    job: Annotated[str | None, typer.Option("--job", show_default=False,
                                            help="An example's name (hello-pt, hello-numpy, noniid/fedavg.yml...: "
                                                 "a wrong one lists them all), a job folder or a job file "
                                                 "[default: hello-pt, hello-numpy when torch is not "
                                                 "installed].")] = None,
    workspace: Annotated[Path | None, typer.Option(
        "--workspace", "-w", file_okay=False, show_default=False,
        help="Keep the local federation in this new folder [default: a temporary folder, removed at the end].")
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", file_okay=False,
                                      help="Where the job's results are downloaded.")] = Path("quickstart-results"),
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object a line on stdout, one per step: "
                                                          "up, submitted, ended, downloaded, stopped.")] = False,
) -> None:
    """Try flctl in one command: start a local federation, run an example job live, fetch its results.

    It provisions a server, N sites and an admin on 127.0.0.1, starts them, submits the job, shows
    each round's metrics, downloads the results and stops everything it started (also on Ctrl-C).
    Exit codes: 0 the job FINISHED, 1 it failed, 130 interrupted. With --json each step is one line
    of JSON on stdout ({"step": "up", ...}, "submitted", "ended", "downloaded", "stopped").
    """
    import shutil
    import signal
    import tempfile

    from flctl.cloud.local import LocalError, prepare, start, stop

    folder = pick_job(job)
    from flctl.node.jobs.job_spec import load_job

    loaded = load_job(folder)
    if sites < loaded.spec.min_sites:
        terminal.abort(f"{loaded.spec.name} needs at least {loaded.spec.min_sites} sites; pass -n "
                       f"{loaded.spec.min_sites}", exit_codes.BAD_INPUT)
    temporary = workspace is None
    root = Path(tempfile.mkdtemp(prefix="flctl-quickstart-")) if workspace is None else workspace.absolute()
    previous = signal.signal(signal.SIGTERM, _interrupt)
    state = None
    finished = False
    try:
        state = prepare(root, sites)
        seconds = start(root, state)
        _step(json_out, {"step": "up", "sites": sites, "seconds": round(seconds, 3), "workspace": str(root)},
              f"local federation up: server and {sites} sites online in {seconds:.2f} s ({root})")
        finished = _run_job(state.admin_kit(root), folder, loaded.spec.name, out.absolute(), json_out)
    except LocalError as exc:
        terminal.abort(f"{exc}", exit_codes.TIMED_OUT if exc.kind == "timeout" else exit_codes.FAILED)
    finally:
        if state is not None:
            began = time.monotonic()
            stop(root, state)
            took = time.monotonic() - began
            kept = None if temporary and finished else str(root)
            _step(json_out, {"step": "stopped", "seconds": round(took, 3), "kept": kept},
                  f"stopped the local federation in {took:.2f} s")
        signal.signal(signal.SIGTERM, previous)
        if temporary and finished:
            shutil.rmtree(root, ignore_errors=True)
        elif temporary and not json_out:
            terminal.info(f"kept its kits and logs in {root}")
    if not finished:
        raise typer.Exit(exit_codes.FAILED)


def _step(json_out: bool, data: dict[str, Any], message: str) -> None:
    """One step done: a JSON line with --json, else a line for the person watching."""
    if json_out:
        terminal.json_line(data)
    else:
        terminal.info(message)


def _run_job(admin_kit: Path, folder: Path, name: str, out: Path, json_out: bool = False) -> bool:
    """Submit the job at `folder` (a folder or a job file) named `name`, follow it live, download its results;
    True when it FINISHED."""
    from flctl.console.cli.job.submit import follow
    from flctl.node.admin.admin_client import AdminClient
    from flctl.node.jobs.job_status import JobStatus

    with AdminClient.from_kit(admin_kit) as admin:
        began = time.monotonic()
        job_id = admin.submit_job(folder)
        _step(json_out, {"step": "submitted", "job": name, "id": job_id}, f"submitted {name} as job {job_id}")
        info = follow(admin, job_id, quiet=json_out, hint=False)  # its federation is gone once it ends
        took = time.monotonic() - began
        if json_out:
            terminal.json_line({"step": "ended", "id": job_id, "status": info.status, "error": info.error,
                                "seconds": round(took, 3)})
        if info.status != JobStatus.FINISHED:
            if not json_out:
                terminal.error(f"job {job_id} {info.status}" + (f": {info.error}" if info.error else ""))
            return False
        out.mkdir(parents=True, exist_ok=True)
        results = admin.download_job(job_id, out)
    if json_out:
        terminal.json_line({"step": "downloaded", "id": job_id, "path": str(results)})
    else:
        terminal.success(f"job {job_id} FINISHED in {took:.2f} s from submit; results (models, metrics.json, "
                         f"logs) in {results}")
    return True


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt
