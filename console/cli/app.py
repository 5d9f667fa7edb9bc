"""The `flctl` command: every command is registered here, in one place.

Command modules import only typer at the top and their heavy dependencies inside
the command body, so `flctl --help` starts instantly.
"""

from __future__ import annotations

import sys

import typer

from console.cli import console_cmd, exit_codes, terminal
from console.cli.audit import tail as audit_tail
from console.cli.audit import verify as audit_verify
from console.cli.default_group import DefaultGroup
from console.cli.deploy import cloud as deploy_cloud
from console.cli.deploy import destroy as deploy_destroy
from console.cli.deploy import logs as deploy_logs
from console.cli.deploy import ssh as deploy_ssh
from console.cli.deploy import status as deploy_status
from console.cli.deploy import stop as deploy_stop
from console.cli.deploy import upgrade as deploy_upgrade
from console.cli.job import abort as job_abort
from console.cli.job import download as job_download
from console.cli.job import logs as job_logs
from console.cli.job import ls as job_ls
from console.cli.job import show as job_show
from console.cli.job import submit as job_submit
from console.cli.kit import complete as kit_complete
from console.cli.kit import request as kit_request
from console.cli.kit import show as kit_show
from console.cli.kit import verify as kit_verify
from console.cli.node import start as node_start
from console.cli.node import stop as node_stop
from console.cli.poc import clean as poc_clean
from console.cli.poc import prepare as poc_prepare
from console.cli.poc import start as poc_start
from console.cli.poc import status as poc_status
from console.cli.poc import stop as poc_stop
from console.cli.provision import build as provision_build
from console.cli.provision import renew as provision_renew
from console.cli.provision import revoke as provision_revoke
from console.cli.provision import sign as provision_sign
from console.cli.quickstart import command as quickstart_command
from console.cli.simulate import command as simulate_command
from console.cli.site import ls as site_ls

HELP = "flctl: provision, deploy, run and watch a federated-learning federation from the terminal."

app = typer.Typer(help=HELP, no_args_is_help=True, add_completion=False, pretty_exceptions_show_locals=False,
                  rich_markup_mode=None, context_settings={"help_option_names": ["-h", "--help"]})

provision_app = typer.Typer(
    cls=DefaultGroup, no_args_is_help=True,
    help="Make signed PKI startup kits from a project.yml: `flctl provision PROJECT.yml`.",
)
provision_app.command("build")(provision_build.command)
provision_app.command("sign")(provision_sign.command)
provision_app.command("revoke")(provision_revoke.command)
provision_app.command("renew")(provision_renew.command)
app.add_typer(provision_app, name="provision")

kit_app = typer.Typer(no_args_is_help=True, help="Inspect, verify, request and complete startup kits.")
kit_app.command("show")(kit_show.command)
kit_app.command("verify")(kit_verify.command)
kit_app.command("request")(kit_request.command)
kit_app.command("complete")(kit_complete.command)
app.add_typer(kit_app, name="kit")

node_app = typer.Typer(no_args_is_help=True, help="Run the server or a site from its startup kit.")
node_app.command("start")(node_start.command)
node_app.command("stop")(node_stop.command)
app.add_typer(node_app, name="node")

job_app = typer.Typer(no_args_is_help=True, help="Submit, list, show, abort, download and follow jobs.")
job_app.command("submit")(job_submit.command)
job_app.command("ls")(job_ls.command)
job_app.command("show")(job_show.command)
job_app.command("abort")(job_abort.command)
job_app.command("download")(job_download.command)
job_app.command("logs")(job_logs.command)
app.add_typer(job_app, name="job")

audit_app = typer.Typer(no_args_is_help=True, help="Check and read tamper-evident audit logs.")
audit_app.command("verify")(audit_verify.command)
audit_app.command("tail")(audit_tail.command)
app.add_typer(audit_app, name="audit")

site_app = typer.Typer(no_args_is_help=True, help="The sites the server knows.")
site_app.command("ls")(site_ls.command)
app.add_typer(site_app, name="site")

app.command("quickstart")(quickstart_command)
app.command("simulate")(simulate_command)

poc_app = typer.Typer(no_args_is_help=True, help="A local federation on this machine: prepare, start, status, "
                      "stop, clean.")
poc_app.command("prepare")(poc_prepare.command)
poc_app.command("start")(poc_start.command)
poc_app.command("status")(poc_status.command)
poc_app.command("stop")(poc_stop.command)
poc_app.command("clean")(poc_clean.command)
app.add_typer(poc_app, name="poc")

app.command("console")(console_cmd.command)

deploy_app = typer.Typer(no_args_is_help=True, help="Roll a federation out to machines over SSH, or to machines "
                         "flctl creates in AWS or Azure: ssh, aws, azure, status, stop, logs, upgrade, destroy.")
deploy_app.command("ssh")(deploy_ssh.command)
deploy_app.command("status")(deploy_status.command)
deploy_app.command("stop")(deploy_stop.command)
deploy_app.command("logs")(deploy_logs.command)
deploy_app.command("upgrade")(deploy_upgrade.command)
deploy_app.command("aws")(deploy_cloud.aws)
deploy_app.command("azure")(deploy_cloud.azure)
deploy_app.command("destroy")(deploy_destroy.command)
app.add_typer(deploy_app, name="deploy")


def main() -> None:
    """Entry point: the one place where expected failures become an exit code and one sentence."""
    from console.cli.failures import exit_code_for

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
