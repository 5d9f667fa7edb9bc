"""`flctl job templates [--json]`: the example jobs `flctl job create --template NAME DIR` starts from."""

from __future__ import annotations

from pathlib import Path

from flctl.console.cli import exit_codes, terminal
from flctl.console.cli.options import JsonOption


def command(json_out: JsonOption = False) -> None:
    """List the job templates (every example job): name, workflow, what it does."""
    rows = [(name, *describe(path)) for name, path in templates().items()]
    if json_out:
        terminal.print_json([{"name": name, "workflow": workflow, "about": about} for name, workflow, about in rows])
        return
    terminal.table(["template", "workflow", "about"], rows)


def templates() -> dict[str, Path]:
    """The example jobs by name (as `flctl quickstart --job` names them); exit 1 when they are not installed."""
    from flctl.console.cli.quickstart import EXAMPLES, examples

    if not EXAMPLES.is_dir():
        terminal.abort(f"the example jobs are not installed here ({EXAMPLES} is missing); they come with flctl's "
                       "source, in playbooks/jobs/", exit_codes.FAILED)
    return examples()


def describe(job: Path) -> tuple[str, str]:
    """(workflow type, the job file's first comment line) of a template, read without validating it."""
    import yaml

    path = job / "job.yml" if job.is_dir() else job
    text = path.read_text()
    about = next((line.lstrip("# ").strip() for line in text.splitlines() if line.startswith("#")), "")
    try:
        workflow = yaml.safe_load(text)["workflow"]["type"]
    except (yaml.YAMLError, KeyError, TypeError):
        workflow = "?"
    return str(workflow), about
