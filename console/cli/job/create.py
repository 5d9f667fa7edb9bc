"""`flctl job create --template NAME DIR [--name JOB] [--json]`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flctl.console.cli import exit_codes, terminal
from flctl.console.cli.options import JsonOption


def command(
    folder: Annotated[Path, typer.Argument(metavar="DIR", help="The new job folder (new or empty).")],
    template: Annotated[str, typer.Option("--template", "-t", metavar="NAME",
                                          help="The template: an example job, as `flctl job templates` lists "
                                               "them (hello-numpy, hello-pt, noniid/fedavg.yml...).")],
    name: Annotated[str | None, typer.Option("--name", metavar="JOB", show_default=False,
                                             help="The job's name in job.yml [default: the template's].")] = None,
    json_out: JsonOption = False,
) -> None:
    """Write a ready job folder (job.yml and app/) from a template; run it with `flctl simulate DIR` or
    `flctl job submit DIR`. A template that shares its app/ with others (noniid/fedavg.yml) becomes a folder of
    its own. Exit code 2 for an unknown template, a folder that is not empty or a bad --name."""
    import re
    import shutil
    import tempfile

    from flctl.console.cli.job.templates import templates
    from flctl.node.jobs.job_spec import check_job_name, load_job

    known = templates()
    source = known.get(template) or known.get(f"{template}.yml")
    if source is None:
        terminal.abort(f"no template '{template}'; `flctl job templates` lists them: {', '.join(known)}",
                       exit_codes.BAD_INPUT)
    target = folder.expanduser().absolute()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        terminal.abort(f"{target} exists and is not an empty folder; pass a new one", exit_codes.BAD_INPUT)
    if name is not None:
        try:
            check_job_name(name)
        except ValueError as exc:
            terminal.abort(f"--name: {exc}", exit_codes.BAD_INPUT)
    spec = source / "job.yml" if source.is_dir() else source
    text = spec.read_text()
    if name is not None:
        text = re.sub(r"(?m)^name:.*$", f"name: {name}", text, count=1)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        if (spec.parent / "app").is_dir():  # an external-trainer job has none
            shutil.copytree(spec.parent / "app", tmp / "app", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        if source.is_dir():  # anything else the example holds (a model file, data notes)
            for entry in source.iterdir():
                if entry.name not in ("app", "job.yml", "__pycache__"):
                    (shutil.copytree if entry.is_dir() else shutil.copy2)(entry, tmp / entry.name)
        (tmp / "job.yml").write_text(text)
        loaded = load_job(tmp, shown=str(target))  # what flctl job submit checks
        if target.exists():
            target.rmdir()
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if json_out:
        terminal.print_json({"template": template, "path": str(target), "name": loaded.spec.name,
                             "workflow": loaded.spec.workflow.type})
    else:
        terminal.success(f"wrote job {loaded.spec.name} ({loaded.spec.workflow.type}) to {target}; run it with "
                         f"`flctl simulate {folder}` or `flctl job submit {folder}`")
