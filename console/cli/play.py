"""`flctl play PLAYBOOK.yml [--check] [--json]`: provision, check, deploy, wait healthy and run the smoke job, resumably
(flctl.cloud.play)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from flctl.console.cli import exit_codes, terminal
from flctl.console.cli.options import JsonOption, passphrase_from

if TYPE_CHECKING:
    from flctl.cloud.play import Observer, PlanRow, PlayResult
    from flctl.cloud.play_state import Event

PlaybookArg = Annotated[Path, typer.Argument(metavar="PLAYBOOK.yml", dir_okay=False,
                                             help="The playbook (see playbooks/play.yml).")]
CheckOption = Annotated[bool, typer.Option("--check", help="Print the plan (certificates to issue, hosts to create, "
                                                           "upload to and restart, jobs to run) and change nothing.")]
AcceptNewOption = Annotated[bool, typer.Option("--accept-new-host-keys",
                                               help="Trust and record host keys not yet in known_hosts "
                                                    "(check their fingerprints first).")]


def command(playbook: PlaybookArg, check: CheckOption = False, accept_new_host_keys: AcceptNewOption = False,
            json_out: JsonOption = False) -> None:
    """Bring a playbook's federation up and prove it works: provision, check, deploy, wait healthy, run a smoke job.

    Provisions when the project changed (the CA and unchanged certificates are kept), runs the pre-flight
    checks, rolls every host out (ssh, local, aws, azure), waits until each participant is healthy, runs the
    playbook's jobs (hello-numpy, 1 round, by default) and prints one row per participant: planned ->
    provisioned -> delivered -> started -> healthy -> verified. Every state is recorded in the playbook's state
    folder as it is reached: an interrupted run (Ctrl-C: exit 130) goes on from there when run again, and a run
    with nothing changed does nothing and says so. A participant taken out of the playbook has its node stopped
    and is reported. Exit 1 when a participant is not verified, 3 when only connections failed.
    """
    from flctl.cloud import play
    from flctl.cloud.playbook import load_playbook

    loaded = load_playbook(playbook)
    passphrase = passphrase_from(loaded.spec.passphrase_env)
    if check:
        provision, rows, jobs = play.check(loaded, passphrase, accept_new_host_keys)
        _show_plan(provision, rows, jobs, json_out)
        return
    try:
        result = play.run(loaded, _printer(json_out), accept_new_host_keys, passphrase)
    except KeyboardInterrupt:  # main() then says `interrupted` and exits 130
        terminal.error(f"every state reached is recorded in {loaded.journal}; run `flctl play {playbook}` again to "
                       "go on from there")
        raise
    _show_result(result, json_out)


def _printer(quiet: bool) -> Observer:
    """One line per recorded state on stderr (none with --json)."""
    from flctl.cloud import play_state as ps
    from flctl.cloud.play import Observer

    lock = threading.Lock()

    def say(text: str) -> None:
        if not quiet:
            with lock:
                terminal.info(text)

    class Printer(Observer):
        def phase(self, text: str) -> None:
            say(f"== {text}")

        def event(self, event: Event) -> None:
            if event.kind in ("project", "job_submitted", "job_ended"):
                say(f"{event.kind.replace('_', ' ')}: " + ", ".join(f"{k} {v}" for k, v in event.data.items()
                                                                   if k != "participants"))
            elif event.kind == ps.FAILED:
                say(f"{event.participant}: failed: {event.data.get('reason', '')}")
            elif event.kind == "removed":
                say(f"{event.participant}: removed (no longer in the playbook; its node: {event.data.get('node')})")
            elif event.kind == "interrupted":
                say(f"interrupted during {event.data.get('phase')}")
            elif event.kind != "planned":
                say(f"{event.participant}: {event.kind}")

        def check_row(self, participant: str, name: str, status: str, sentence: str) -> None:
            if status != "ok":
                say(f"{participant}: pre-flight {name}: {status}: {sentence}")

    return Printer()


def _show_plan(provision: bool, rows: list[PlanRow], jobs: list[str], json_out: bool) -> None:
    """The plan; exit 3 when only connections kept hosts from being planned, 1 for any other such failure."""
    if json_out:
        terminal.print_json({"provision": provision, "hosts": [r.to_json() for r in rows], "jobs": jobs})
    else:
        terminal.table(["participant", "host", "certificate", "would"],
                       [[r.participant, r.host, r.certificate or "-",
                         f"(not planned: {r.reason})" if r.reason else "; ".join(r.actions) or "nothing"]
                        for r in rows], title="play plan (nothing was changed)")
        if provision:
            terminal.info("would provision the project (the CA and unchanged certificates kept)")
        if jobs:
            terminal.info(f"would run: {', '.join(jobs)}")
        if not provision and not jobs and not any(r.actions or r.reason for r in rows):
            terminal.success("no changes: every participant is verified and healthy")
    failed = [r for r in rows if r.reason]
    if failed:
        if not json_out:
            terminal.error(f"{len(failed)} of {len(rows)} hosts could not be planned")
        raise typer.Exit(exit_codes.NO_CONNECTION if all(r.connection for r in failed) else exit_codes.FAILED)


def _show_result(result: PlayResult, json_out: bool) -> None:
    rows = result.rows()
    if json_out:
        out: dict[str, Any] = {"nothing_to_do": result.nothing_to_do, "provisioned": result.provisioned,
                               "participants": rows, "removed": result.removed, "jobs": result.jobs}
        terminal.print_json(out)
    else:
        terminal.table(["participant", "host", "state", "seconds", "reason"],
                       [[r["participant"], r["host"].split(" (")[0], r["state"],
                         "-" if r["seconds"] is None else r["seconds"], r["reason"] or "-"] for r in rows],
                       title="play")
        for gone in result.removed:
            terminal.info(f"{gone['participant']} is no longer in the playbook: its node on {gone['host'] or '-'} "
                          f"{'was stopped' if gone['node'] == 'stopped' else 'was ' + gone['node']}; forgotten")
        if result.nothing_to_do:
            terminal.success("nothing to do: every participant is verified and healthy, and nothing changed")
    if result.ok:
        return
    failed = [r for r in rows if r["reason"] or r["state"] != "verified"]
    if not json_out:
        terminal.error(f"{len(failed)} of {len(rows)} participants are not verified")
    raise typer.Exit(exit_codes.NO_CONNECTION if result.only_connections_failed else exit_codes.FAILED)
