"""What every `flctl deploy` command shares: its options, loading the inventory, rendering progress and results."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from flctl.console.cli import exit_codes, terminal

if TYPE_CHECKING:
    from flctl.cloud.deploy_errors import DeployError
    from flctl.cloud.deploy_executor import HostResult
    from flctl.cloud.deploy_plan import Step
    from flctl.cloud.deploy_state import Record
    from flctl.cloud.inventory import HostSpec
    from flctl.cloud.targets.base import Deployment

InventoryArg = Annotated[Path, typer.Argument(metavar="INVENTORY", help="The inventory YAML (see playbooks/rollouts/).",
                                              dir_okay=False)]
ParallelOption = Annotated[int, typer.Option("--parallel", "-p", min=1, max=64, help="Hosts worked on at once.")]
AcceptNewOption = Annotated[bool, typer.Option("--accept-new-host-keys",
                                               help="Trust and record host keys not yet in known_hosts "
                                                    "(check their fingerprints first).")]
CONNECTION_REASONS = {"unreachable", "authentication failed", "unknown host key", "host key changed",
                      "no cloud credentials", "cloud unreachable"}


def failure_code(reasons: list[str]) -> int:
    """3 when every failure is a failure to connect or authenticate, else 1."""
    return exit_codes.NO_CONNECTION if all(r in CONNECTION_REASONS for r in reasons) else exit_codes.FAILED


def deployment(inventory: Path, accept_new: bool = False, quiet: bool = False, parallel: int = 4,
               machines_only: bool = False) -> Deployment:
    """Load the inventory (exit 2 naming file, line and field) and what its targets report progress through:
    one line per host event and per cloud resource on stderr, none when `quiet`."""
    from flctl.cloud.deploy_executor import Progress
    from flctl.cloud.inventory import load_inventory
    from flctl.cloud.machine_provider import CloudProgress
    from flctl.cloud.targets.base import Deployment

    lock = threading.Lock()

    def say(line: str) -> None:
        if not quiet:
            with lock:
                terminal.info(line)

    class Hosts(Progress):
        def host_connected(self, host: HostSpec) -> None:
            say(f"{host.participant}: connected to {host.user}@{host.where}:{host.port}")

        def step_done(self, host: HostSpec, step: Step) -> None:
            say(f"{host.participant}: {step.detail}: done")

        def host_failed(self, host: HostSpec, error: DeployError) -> None:
            say(f"{host.participant}: failed ({error.reason})")

    class Resources(CloudProgress):
        def resource_ready(self, participant: str, kind: str, name: str, how: str) -> None:
            say(f"{participant}: {kind.replace('_', ' ')} {name}: {how}")

        def resource_deleted(self, record: Record, how: str) -> None:
            say(f"{record.participant}: {record.kind.replace('_', ' ')} {record.name}: {how}")

    return Deployment(load_inventory(inventory), Hosts(), Resources(), parallel=parallel,
                      accept_new_host_keys=accept_new, roll_out=not machines_only)


def report(results: list[HostResult], json_out: bool, title: str) -> None:
    """The per-host table (or JSON), one sentence per failure, and the exit code."""
    if json_out:
        terminal.print_json([r.to_json() for r in results])
    else:
        terminal.table(["participant", "host", "status", "release", "changes", "seconds"],
                       [[r.participant, f"{r.address}:{r.port}", r.status, r.release or "-",
                         "; ".join(r.changes) if r.status in ("planned", "deployed") else "-", r.seconds]
                        for r in results], title=title)
    failed = [r for r in results if not r.ok]
    for r in failed:
        terminal.error(r.message)
    if failed:
        code = failure_code([r.reason for r in failed])
        if not json_out:
            terminal.error(f"{len(failed)} of {len(results)} hosts failed")
        raise typer.Exit(code)
