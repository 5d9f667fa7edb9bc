"""`flctl job metrics ID`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from flctl.console.cli import exit_codes, terminal
from flctl.console.cli.admin_kit import ContextOption, KitOption, connect
from flctl.console.cli.options import JsonOption

if TYPE_CHECKING:
    from flctl.node.admin.admin_types import MetricValue


def command(job_id: Annotated[str, typer.Argument(metavar="ID")],
            site: Annotated[str, typer.Option("--site", help="Only this site's metrics.")] = "",
            csv_out: Annotated[bool, typer.Option("--csv", help="Every value as CSV on stdout: round, site, name, "
                                                                "step, value (one line a value).")] = False,
            kit: KitOption = None, _context: ContextOption = None, json_out: JsonOption = False) -> None:
    """Print a job's metrics: a row per round and site, a column per metric (the last value of the round).

    The table counts rounds from 1, as job show does; --json and --csv give every value with the round index
    (from 0) and the script's step, as metrics.json does."""
    if csv_out and json_out:
        terminal.abort("--csv and --json each print every value; choose one", exit_codes.BAD_INPUT)
    with connect(kit) as admin:
        values = [v for v in admin.job_metrics(job_id) if not site or v.site == site]
    if json_out:
        terminal.print_json([v.to_json() for v in values])
    elif csv_out:
        _print_csv(values)
    else:
        names, rows = per_round(values)
        terminal.table(["round", "site", *names], rows, title=f"metrics of job {job_id}")


def per_round(values: list[MetricValue]) -> tuple[list[str], list[list[object]]]:
    """The metric names in the order first seen, and a row per (round, site), the round counted from 1: the last
    value of each name in that round ('' where the site reported none)."""
    names: dict[str, None] = {}
    last: dict[tuple[int, str], dict[str, float]] = {}
    for v in values:
        names.setdefault(v.name, None)
        last.setdefault((v.round, v.site), {})[v.name] = v.value
    rows = [[rnd + 1, site, *(_number(last[(rnd, site)].get(name)) for name in names)] for rnd, site in sorted(last)]
    return list(names), rows


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def _print_csv(values: list[MetricValue]) -> None:
    import csv
    import sys

    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(["round", "site", "name", "step", "value"])
    for v in values:
        writer.writerow([v.round, v.site, v.name, "" if v.step is None else v.step, repr(v.value)])
    sys.stdout.flush()
