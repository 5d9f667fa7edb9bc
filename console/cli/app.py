"""The `flctl` command: every command is registered here, in one place.

Each group (`job`, `kit`, `poc`…) is built when a command line names it, so `flctl job submit`
imports the `job` commands alone. Command modules import only typer at the top and their heavy
dependencies inside the command body, so `flctl --help` starts instantly.
"""

from __future__ import annotations

import atexit
import gc
import sys
from collections.abc import Callable
from typing import Any, ClassVar

import typer

from flctl.console.cli import (
    completion,
    console_cmd,
    exit_codes,
    global_options,
    play,
    preflight,
    quickstart,
    simulate,
    terminal,
)
from flctl.console.cli.lazy_group import LazyGroup

HELP = "flctl: provision, deploy, run and watch a federated-learning federation from the terminal."


SUMMARIES = {
    "provision": "Make signed PKI startup kits from a project.yml: `flctl provision PROJECT.yml`.",
    "kit": "Inspect, verify, request, complete and unpack startup kits.",
    "node": "Run the server or a site from its startup kit.",
    "job": "Create, submit, list, show, abort, download, follow and remove jobs; print their metrics.",
    "audit": "Check and read tamper-evident audit logs.",
    "site": "The sites the server knows.",
    "certs": "Every participant's certificate with its days to expiry (`flctl certs`), and `flctl certs renew "
             "--expiring DAYS`.",
    "poc": "A local federation on this machine: prepare, start, status, stop, clean.",
    "context": "Name the federations you act on (admin kits) and pick the current one: add, ls, use, rm.",
    "deploy": "Roll a federation out: one command per deploy target (over SSH, on this machine, or to "
              "machines flctl creates in a cloud), then the whole inventory's.",
}
"""Each group's help text: `flctl --help` lists the groups from these without building them."""


def _group(help_text: str, commands: dict[str, Callable[..., object]], **options: object) -> typer.Typer:
    """A command group: `commands` maps each command's name to its function, in the order help lists them."""
    group = typer.Typer(no_args_is_help=True, help=help_text, **options)  # type: ignore[arg-type]
    for name, command in commands.items():
        group.command(name)(command)
    return group


def _provision() -> typer.Typer:
    from flctl.console.cli.default_group import DefaultGroup
    from flctl.console.cli.provision import build, renew, revoke, sign

    return _group(SUMMARIES["provision"],
                  {"build": build.command, "sign": sign.command, "revoke": revoke.command, "renew": renew.command,
                   "crl": revoke.crl_command},
                  cls=DefaultGroup)


def _kit() -> typer.Typer:
    from flctl.console.cli.kit import complete, request, show, unpack, verify

    return _group(SUMMARIES["kit"],
                  {"show": show.command, "verify": verify.command, "request": request.command,
                   "complete": complete.command, "unpack": unpack.command})


def _node() -> typer.Typer:
    from flctl.console.cli.node import health, recover, start, stop

    return _group(SUMMARIES["node"], {"start": start.command, "stop": stop.command,
                                                                      "recover": recover.command,
                                      "health": health.command})


def _job() -> typer.Typer:
    from flctl.console.cli.job import (
        abort,
        create,
        download,
        import_nvflare,
        logs,
        ls,
        metrics,
        rm,
        show,
        submit,
        templates,
    )

    return _group(SUMMARIES["job"],
                  {"create": create.command, "templates": templates.command, "import": import_nvflare.command,
                   "submit": submit.command,
                   "ls": ls.command, "show": show.command, "abort": abort.command,
                   "download": download.command, "logs": logs.command, "metrics": metrics.command,
                   "rm": rm.command})


def _audit() -> typer.Typer:
    from flctl.console.cli.audit import tail, verify

    return _group(SUMMARIES["audit"], {"verify": verify.command, "tail": tail.command})


def _site() -> typer.Typer:
    from flctl.console.cli.site import ls

    return _group(SUMMARIES["site"], {"ls": ls.command})


def _certs() -> typer.Typer:
    from flctl.console.cli.certs import ls, renew
    from flctl.console.cli.default_group import DefaultGroup

    class CertsGroup(DefaultGroup):
        default = "ls"
        bare = True

    return _group(SUMMARIES["certs"], {"ls": ls.command, "renew": renew.command}, cls=CertsGroup)


def _poc() -> typer.Typer:
    from flctl.console.cli.poc import clean, prepare, start, status, stop

    return _group(SUMMARIES["poc"],
                  {"prepare": prepare.command, "start": start.command, "status": status.command,
                   "stop": stop.command, "clean": clean.command})


def _context() -> typer.Typer:
    from flctl.console.cli.context import commands

    return _group(SUMMARIES["context"], {"add": commands.add, "ls": commands.ls, "use": commands.use,
                                         "rm": commands.rm})


def _deploy() -> typer.Typer:
    from flctl.cloud.targets import TARGETS
    from flctl.console.cli.default_group import DefaultGroup
    from flctl.console.cli.deploy import destroy, docker, image, k8s, logs, slurm, status, stop, target, upgrade

    # slurm's target command is the slurm group's default for an inventory (`flctl deploy slurm INVENTORY`)
    commands: dict[str, Callable[..., object]] = {name: target.command(each) for name, each in TARGETS.items()
                                                  if name != "slurm"}
    commands |= {"status": status.command, "stop": stop.command, "logs": logs.command, "upgrade": upgrade.command,
                 "destroy": destroy.command, "k8s": k8s.command, "docker": docker.command}
    group = _group(f"{SUMMARIES['deploy'][:-1]}: {', '.join(commands)}, slurm, image.", commands)
    group.add_typer(_group(image.SUMMARY, {"build": image.build}), name="image")

    class SlurmGroup(DefaultGroup):
        """`flctl deploy slurm INVENTORY.yml` runs `apply` (the slurm deploy target), else `scripts`."""

        default = "scripts"

        def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
            if args and args[0] not in self.commands and args[0].endswith((".yml", ".yaml")):
                args = ["apply", *args]
            return super().parse_args(ctx, args)

    group.add_typer(_group(slurm.SUMMARY, {"apply": target.command(TARGETS["slurm"]), "scripts": slurm.command,
                                           "rollout": slurm.rollout, "submit": slurm.submit, "status": slurm.status,
                                           "stop": slurm.stop}, cls=SlurmGroup), name="slurm")
    return group


class FlctlGroup(LazyGroup):
    """The top level: four commands, then the groups in the order `flctl --help` lists them."""

    groups: ClassVar[dict[str, Callable[[], typer.Typer]]] = {
        "provision": _provision, "kit": _kit, "node": _node, "job": _job, "audit": _audit,
        "site": _site, "certs": _certs, "poc": _poc, "context": _context, "deploy": _deploy,
    }
    summaries: ClassVar[dict[str, str]] = SUMMARIES

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self.params.extend(global_options.params())  # --version, --quiet, --install/--show-completion

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, completion.with_default_shell(args))

    def _main_shell_completion(self, ctx_args: Any, prog_name: str, complete_var: str | None = None) -> None:
        completion.prepare_if_completing(prog_name)
        super()._main_shell_completion(ctx_args, prog_name, complete_var)


app = typer.Typer(cls=FlctlGroup, help=HELP, no_args_is_help=True, add_completion=False,
                  pretty_exceptions_show_locals=False, rich_markup_mode=None,
                  context_settings={"help_option_names": ["-h", "--help"]})
app.command("quickstart")(quickstart.command)
app.command("simulate")(simulate.command)
app.command("console")(console_cmd.command)
app.command("preflight")(preflight.command)
app.command("play")(play.command)


def main() -> None:
    """Entry point: the one place where expected failures become an exit code and one sentence."""
    from flctl.console.cli.failures import exit_code_for

    # At exit, skip the collector's passes over every object the command left (0.1-0.3 s of CPU after a
    # job submit): objects still go away by reference counting, and atexit handlers registered later run first.
    atexit.unregister(gc.freeze)
    atexit.register(gc.freeze)
    terminal.set_quiet(False)  # --quiet sets it again for this command (matters when called twice in one process)
    try:
        app()
    except KeyboardInterrupt:
        terminal.error("interrupted")
        sys.exit(exit_codes.INTERRUPTED)
    except Exception as exc:
        known = exit_code_for(exc)
        if known is None:
            raise
        code, message = known
        for line in message.splitlines():
            terminal.error(line)
        sys.exit(code)


if __name__ == "__main__":
    main()
