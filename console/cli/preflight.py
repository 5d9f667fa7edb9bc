"""`flctl preflight KIT|PLAYBOOK|INVENTORY [--json]`: will a kit's node (or every host's) reach its server?"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Annotated

import typer

from flctl.console.cli import exit_codes, terminal
from flctl.console.cli.options import JsonOption

TargetArg = Annotated[Path, typer.Argument(metavar="KIT|PLAYBOOK|INVENTORY",
                                           help="A startup kit folder (a site's, the server's or an admin's), a "
                                                "playbook of `flctl play`, or an inventory YAML (see "
                                                "playbooks/rollouts/).")]
ParallelOption = Annotated[int, typer.Option("--parallel", "-p", min=1, max=64,
                                             help="Inventory hosts checked at once.")]
AcceptNewOption = Annotated[bool, typer.Option("--accept-new-host-keys",
                                               help="Trust and record host keys not yet in known_hosts "
                                                    "(check their fingerprints first).")]
TimeoutOption = Annotated[float, typer.Option("--timeout", min=0.1, max=120, metavar="SECONDS",
                                              help="How long each connection may take.")]


def command(target: TargetArg, accept_new: AcceptNewOption = False, parallel: ParallelOption = 4,
            timeout_s: TimeoutOption = 5.0, json_out: JsonOption = False) -> None:
    """Check that a kit's node (or every host of a playbook or inventory) can join its federation: a row a check.

    Each row is ok, warn or fail with one sentence: the kit's signature and every certificate's days to expiry;
    the server's name resolves; its port answers; a TLS handshake with the kit's certificate (TLS 1.3, ALPN h2,
    the server's certificate issued by the kit's CA and covering the name dialled); the server's clock against
    this machine's; Python and flctl against the server's; free disk; for the server, its port free. With an
    inventory or a playbook (once `flctl play` provisioned its kits): every host, its side over SSH. Exit 1 when
    a check fails, 3 when only connecting or authenticating failed (name, port, SSH, the server refusing the kit).
    """
    from flctl.cloud import preflight

    if not target.exists():
        terminal.abort(f"{target} does not exist; give a startup kit folder, a playbook or an inventory file",
                       exit_codes.BAD_INPUT)
    if target.is_dir():
        reports = [preflight.check_kit(target, timeout_s)]
    elif target.name.endswith((".zip", ".zip.enc")) or zipfile.is_zipfile(target):
        terminal.abort(f"{target} is a kit archive, not a kit folder; unpack it first (`flctl kit unpack {target}`) "
                       "and check the folder", exit_codes.BAD_INPUT)
    else:
        check = preflight.check_playbook if preflight.is_playbook(target) else preflight.check_inventory
        reports = check(target, accept_new_host_keys=accept_new, parallel=parallel, timeout_s=timeout_s)
    rows = [row for report in reports for row in report.to_json()]
    if json_out:
        terminal.print_json(rows)
    else:
        terminal.table(["participant", "where", "check", "status", "sentence"],
                       [[r["participant"], r["where"], r["check"], r["status"], r["sentence"]] for r in rows],
                       title=f"preflight {target}")
        failed = [r for r in rows if r["status"] == "fail"]
        warned = sum(r["status"] == "warn" for r in rows)
        if failed:
            terminal.error(f"{len(failed)} of {len(rows)} checks failed ({warned} warnings)")
        else:
            terminal.success(f"{len(rows)} checks passed ({warned} warnings)")
    code = preflight.outcome(reports)
    if code:
        raise typer.Exit(code)
