"""`flctl job submit JOB [--watch]`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from flctl.console.cli import exit_codes, terminal
from flctl.console.cli.admin_kit import ContextOption, KitOption, connect
from flctl.console.cli.options import JsonOption

if TYPE_CHECKING:  # grpc is heavy: imported when a command connects, not for --help
    from flctl.node.admin.admin_client import AdminClient
    from flctl.node.admin.admin_types import JobInfo


def command(
    job: Annotated[Path, typer.Argument(metavar="JOB",
                                        help="Job folder (job.yml and app/), or job file (NAME.yml with app/ "
                                             "beside it).")],
    watch: Annotated[bool, typer.Option("--watch", help="Follow the job live until it ends.")] = False,
    valid_days: Annotated[float, typer.Option("--valid-days", min=0.001, max=3650,
                                              help="Sites start (or restart) the job only this many days after "
                                                   "it is signed.")] = 7.0,
    model_from: Annotated[str | None, typer.Option("--model-from", metavar="JOB_ID",
                                                   help="Run the final model of this finished job (job.yml's "
                                                        "initial_model becomes job:JOB_ID; you must be allowed "
                                                        "to download that job).")] = None,
    kit: KitOption = None, _context: ContextOption = None,
    json_out: JsonOption = False,
) -> None:
    """Submit a job (a folder, or a job file with app/ beside it) and print its id; with --watch, follow it to the end.

    The job is checked before anything is sent: a missing job.yml, an unknown
    workflow, a bad argument or a missing script is refused with exit code 2.
    --model-from JOB_ID runs a finished job's final model (an inference job over
    a trained model): refused with exit code 2 when that job is not on the server
    or has no final model, 4 when you may not download it.
    With --watch the exit code is 0 when the job FINISHED and 1 otherwise.
    """
    from flctl.console.cli.progress import byte_progress
    from flctl.node.jobs.job_status import JobStatus

    if model_from is not None:
        from flctl.node.jobs.initial_model import JOB_PREFIX, parse

        try:
            parse(JOB_PREFIX + model_from)
        except ValueError as exc:
            terminal.abort(f"--model-from: {exc}", exit_codes.BAD_INPUT)
    with connect(kit) as admin:
        with byte_progress(f"packing {job.name}", json_out) as packing:
            job_id = admin.submit_job(job, valid_for_s=valid_days * 86400, progress=packing, model_from=model_from)
        if not watch:
            if json_out:
                terminal.print_json({"id": job_id})
            else:
                terminal.out.print(job_id)
            return
        if not json_out:
            terminal.info(f"submitted job {job_id}")
        info = follow(admin, job_id, quiet=json_out)
    if json_out:
        terminal.print_json({"id": job_id, "status": info.status, "error": info.error})
    if info.status != JobStatus.FINISHED:
        raise typer.Exit(exit_codes.FAILED)


def follow(admin: AdminClient, job_id: str, quiet: bool = False, hint: bool = True) -> JobInfo:
    """Stream the job's events (no polling) with a progress bar for rounds; return the final job info.

    `quiet` prints nothing: it only waits on the same stream for the job's final event. `hint` ends a FINISHED job
    with how to fetch its results (quickstart, which fetches them itself, leaves it out).
    """
    from flctl.node.jobs.job_status import JobStatus

    if quiet or terminal.settings.quiet:
        for _ in admin.watch(job_id):
            pass
        final = admin.get_job(job_id)
        if not quiet and final.status != JobStatus.FINISHED:  # --quiet keeps the error
            terminal.error(f"job {job_id} {final.status}" + (f": {final.error}" if final.error else ""))
        return final
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from flctl.console.cli.job.render import metrics_line, outcome
    from flctl.console.visible_text import hanging

    job = admin.get_job(job_id)
    show_bar = terminal.interactive() and job.rounds > 0
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=terminal.err, transient=True, disable=not show_bar)
    with bar:
        task = bar.add_task(terminal.escape(job.name), total=job.rounds or None)
        for event in admin.watch(job_id):
            if event.kind == "round":
                round_no = int(event.data.get("round", 0))
                bar.update(task, completed=round_no + 1)
                bar.console.print(hanging(f"round {round_no + 1} of {job.rounds}: ",
                                          metrics_line(event.data.get("metrics", {}))), markup=False, highlight=False)
            elif event.kind in ("started", "waiting", "site_failed", "aborting"):
                bar.console.print(hanging("", event.message), markup=False, highlight=False)
    final = admin.get_job(job_id)
    if final.status == JobStatus.FINISHED:
        if hint:
            terminal.success(f"job {job_id} {outcome(final)}; `flctl job download {job_id}` fetches the results")
        elif outcome(final) != final.status:
            terminal.warning(f"job {job_id} {outcome(final)}")
    else:
        terminal.error(f"job {job_id} {outcome(final)}" + (f": {final.error}" if final.error else ""))
    return final
