"""`flctl audit verify FILE [--cert CERT | --kit KIT]`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flctl.console.cli import exit_codes, terminal
from flctl.console.cli.options import JsonOption


def node_certificate(file: Path, cert: Path | None, kit: Path | None) -> Path | None:
    """The certificate to check signatures with: --cert, the --kit's own, or the kit the log sits in
    (KIT/workspace/audit.jsonl); None when there is none."""
    from flctl.provisioner.kit_layout import KitPaths

    if cert is not None:
        return cert
    roots = [kit] if kit is not None else [file.resolve().parent.parent]
    for root in roots:
        paths = KitPaths.find(root)
        kind = paths.kind()
        if kind in ("server", "site"):
            return paths.cert(kind)
        if kit is not None:
            terminal.abort(f"{kit} is not a server's or a site's kit (its audit log is signed with that node's key);"
                           " give the node's kit or its certificate with --cert", exit_codes.BAD_INPUT)
    return None


def command(
    file: Annotated[Path, typer.Argument(metavar="FILE",
                                         help="An audit log: WORKSPACE/audit.jsonl of the server or a site.",
                                         exists=True, dir_okay=False)],
    cert: Annotated[Path | None, typer.Option("--cert", help="The node's certificate (PEM), to check each "
                                              "record's signature with.", exists=True, dir_okay=False)] = None,
    kit: Annotated[Path | None, typer.Option("--kit", help="The node's kit: its certificate checks the "
                                             "signatures [default: the kit the log is in, if any].",
                                             exists=True, file_okay=False)] = None,
    json_out: JsonOption = False,
) -> None:
    """Prove an audit log intact, or name the first record that was changed, removed or inserted (exit 1).

    With the node's certificate (--cert, --kit, or the kit the log sits in), every record's signature is
    checked too, so an edit whose hashes were recomputed is caught. Damaged tails the node set aside are
    followed into the files that keep them, and reported as gaps.
    """
    from flctl.node.security.audit import verify

    cert_path = node_certificate(file, cert, kit)
    try:
        cert_pem = cert_path.read_bytes() if cert_path is not None else None
        verdict = verify(file, cert_pem)
    except ValueError as exc:
        terminal.abort(f"{cert_path} is not a PEM certificate ({exc})", exit_codes.BAD_INPUT)
    if json_out:
        terminal.print_json({"file": str(file), "ok": verdict.ok, "records": verdict.records,
                             "problem": verdict.problem, "line": verdict.line, "signatures": verdict.signatures,
                             "certificate": str(cert_path) if cert_path else None,
                             "gaps": [{"seq": g.seq, "set_aside": g.set_aside, "after_seq": g.after_seq,
                                       "damaged_bytes": g.damaged_bytes, "damaged_lines": g.damaged_lines,
                                       "detected": g.detected, "reason": g.reason} for g in verdict.gaps]})
    else:
        for gap in verdict.gaps:
            terminal.warning(f"{file}: {gap.describe()}")
        if verdict.ok:
            signed = (f"every signature checked with {cert_path}" if cert_path else
                      "signatures not checked (give --cert or --kit to check them)")
            gaps = f", {len(verdict.gaps)} recorded gap(s)" if verdict.gaps else ""
            terminal.success(f"{file}: {verdict.records} records, intact{gaps}; {signed}")
        else:
            terminal.error(f"{file}: {verdict.problem}")
    if not verdict.ok:
        raise typer.Exit(exit_codes.FAILED)
