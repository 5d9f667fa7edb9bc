"""`flctl deploy ssh INVENTORY [--dry-run] [--parallel N] [--json]`."""

from __future__ import annotations

from typing import Annotated

import typer

from flctl.console.cli import terminal
from flctl.console.cli.deploy.run import AcceptNewOption, InventoryArg, ParallelOption, make_rollout, report
from flctl.console.cli.options import JsonOption


def command(
    inventory: InventoryArg,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Connect and print what would change on each host; "
                                                            "change nothing.")] = False,
    parallel: ParallelOption = 4,
    accept_new_host_keys: AcceptNewOption = False,
    json_out: JsonOption = False,
) -> None:
    """Roll the federation out to the inventory's hosts over SSH, and wait until every node is healthy.

    Per host: check the host key, Python and disk; upload the participant's kit and the wheels of
    this flctl and its dependencies (hosts need no internet); install them offline into a venv;
    verify the kit's signature there; install a systemd service (or a supervised process); start;
    wait until healthy. Running it again changes nothing when nothing changed. One host failing
    does not stop the others; the exit code is then 1 (3 when every failure is a connection failure).
    """
    rollout = make_rollout(inventory, accept_new_host_keys, quiet=json_out)
    results = rollout.deploy(dry_run=dry_run, parallel=parallel)
    if not json_out and not dry_run and all(r.status == "unchanged" for r in results):
        terminal.success("no changes: every host already runs its release")
    report(results, json_out, "rollout plan" if dry_run else "rollout")
