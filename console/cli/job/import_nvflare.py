"""`flctl job import NVFLARE_JOB_DIR -o DIR [--json]`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flctl.console.cli import exit_codes, terminal
from flctl.console.cli.options import JsonOption


def command(
    source: Annotated[Path, typer.Argument(metavar="NVFLARE_JOB_DIR",
                                           help="An NVIDIA FLARE job folder (meta.json, app folders with "
                                                "config/config_fed_server.json and config_fed_client.json, custom/).")],
    out: Annotated[Path, typer.Option("--out", "-o", metavar="DIR", file_okay=False,
                                      help="The flctl job folder to write (new or empty).")],
    json_out: JsonOption = False,
) -> None:
    """Turn an NVIDIA FLARE job folder into a flctl job folder: FedAvg / ScatterAndGather, cross-site evaluation and
    cyclic map to flctl's workflows, the Client API script runs as it is (app.compat: nvflare), custom/ becomes
    app/. Everything that does not map is named, one line each (and in job.yml's comments). Exit code 2 when the
    folder cannot be read, its workflow or script cannot map, or DIR is not empty."""
    from flctl.node.errors import JobError
    from flctl.node.jobs.job_spec import load_job
    from flctl.node.jobs.nvflare_import import convert, write
    from flctl.node.jobs.nvflare_job import read_job

    target = out.expanduser().absolute()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        terminal.abort(f"{target} exists and is not an empty folder; pass a new one", exit_codes.BAD_INPUT)
    try:
        conversion = convert(read_job(source.expanduser().absolute()))
    except JobError as exc:
        terminal.abort(str(exc), exit_codes.BAD_INPUT)
    write(conversion, target, source)
    try:
        load_job(target)  # what was written is a valid flctl job
    except JobError as exc:
        terminal.abort(f"the imported job does not load ({target} kept for a look):\n{exc}", exit_codes.BAD_INPUT)
    if json_out:
        terminal.print_json({"out": str(target), "job": conversion.job, "mapped": conversion.mapped,
                             "not_mapped": conversion.unmapped})
        return
    for line in conversion.mapped:
        terminal.info(line)
    for line in conversion.unmapped:
        terminal.warning(f"not mapped: {line}")
    terminal.success(f"wrote {target}: run it with `flctl simulate {target}` or `flctl job submit {target}`")
