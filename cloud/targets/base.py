"""The deploy target interface: one way to run a node (a local process, a host over SSH, a cloud machine…).

A target plans, applies, reports the status of, stops, shows the logs of and destroys the nodes of
its hosts, and owns the schema of its block in the inventory (`aws:`, `azure:`…). Targets are listed
in one table, flctl.cloud.targets.TARGETS; flctl.cloud.fleet runs an operation over a whole
inventory by handing each target its own hosts. Failures are DeployErrors; core code never prints.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from pydantic import BaseModel

if TYPE_CHECKING:
    from flctl.cloud.cloud_rollout import MachineResult
    from flctl.cloud.deploy_executor import HostResult, Progress
    from flctl.cloud.deploy_state import DeploymentState, Record
    from flctl.cloud.inventory import HostSpec, Inventory
    from flctl.cloud.machine_plan import MachinePlan
    from flctl.cloud.machine_provider import CloudProgress


@dataclass
class Deployment:
    """What every operation of a target is given: the inventory, the command's options, where to report."""

    inventory: Inventory
    progress: Progress | None = None  # per host: connected, step done, failed (None: report nothing)
    machine_progress: CloudProgress | None = None  # per cloud resource: ready, deleted
    parallel: int = 4  # hosts worked on at once
    accept_new_host_keys: bool = False
    wheel_cache: Path | None = None  # None: flctl.cloud.wheelhouse.default_cache()
    make_machines: bool = True  # apply: make the machines of targets that make them (False: use the made ones)
    roll_out: bool = True  # apply: roll the kits out (False: only make the machines)
    upgrade: bool = False  # apply: only hosts already running a release; roll back one left unhealthy


@dataclass
class Planned:
    """What `apply` would do, nothing changed: machines to make (targets that make them), per-host steps."""

    machines: list[MachinePlan] = field(default_factory=list)
    recorded: set[tuple[str, str]] = field(default_factory=set)  # (participant, resource kind) already made
    hosts: list[HostResult] = field(default_factory=list)


@dataclass
class Applied:
    """What `apply` did: the machines made (None for a target that makes none) and each host's rollout."""

    machines: list[MachineResult] | None = None
    hosts: list[HostResult] = field(default_factory=list)


class DeployTarget(ABC):
    """One way to run a node. Register an instance in flctl.cloud.targets.TARGETS under its `name`."""

    name: ClassVar[str]
    """The inventory's `provider:` value and the `flctl deploy NAME` command."""
    spec: ClassVar[type[BaseModel] | None] = None
    """The schema of the host's `NAME:` block in the inventory (fields with descriptions); None: no block."""
    summary: ClassVar[str]
    """The `flctl deploy NAME` help: its first line, then what it does."""
    required: ClassVar[dict[str, str]] = {}
    """Host fields this target needs although the schema makes them optional, with the message when missing."""
    reached_through: ClassVar[str | None] = None
    """Another target whose command also rolls kits out to this target's made machines (`ssh` for clouds)."""

    def check(self, host: HostSpec) -> None:
        """Refuse a host entry this target cannot run: ValueError('[field] what is wrong; what to do')."""
        for name, message in self.required.items():
            if getattr(host, name) is None:
                raise ValueError(f"[{name}] {message}")

    def where(self, host: HostSpec) -> str:
        """Where the host's node runs, for tables and messages."""
        return host.address or self.name

    @property
    def where_unaddressed(self) -> str:
        """What a table calls one of this target's hosts that has no address (yet): the target's name."""
        return self.name

    def machine_of(self, host: HostSpec) -> str:
        """Which machine the node runs on: two nodes there may not share an install folder."""
        return host.address or self.name

    def locate(self, host: HostSpec, state: DeploymentState | None) -> HostSpec | None:
        """The host as its node is reached (a made machine: at the address `state` recorded); None when its
        machine does not exist yet."""
        return host

    @abstractmethod
    def plan(self, deployment: Deployment, hosts: list[HostSpec]) -> Planned:
        """What `apply` would do to `hosts`; changes nothing."""

    @abstractmethod
    def apply(self, deployment: Deployment, hosts: list[HostSpec]) -> Applied:
        """Make each host run its participant's kit (and its machine exist, for a target that makes machines)."""

    @abstractmethod
    def status(self, deployment: Deployment, hosts: list[HostSpec]) -> list[HostResult]:
        """Per host: the release deployed, whether its node runs and is healthy."""

    @abstractmethod
    def stop(self, deployment: Deployment, hosts: list[HostSpec]) -> list[HostResult]:
        """Stop each host's node and what it started; the install stays."""

    @abstractmethod
    def logs(self, deployment: Deployment, host: HostSpec, lines: int) -> str:
        """The last `lines` of the host's node log (and its supervisor's or journal's)."""

    @abstractmethod
    def destroy(self, deployment: Deployment, state: DeploymentState, records: list[Record]) -> list[
            tuple[Record, str]]:
        """Delete the resources this target recorded (dependents first), forgetting each in `state` the moment
        it is gone; (record, 'deleted' | 'already gone') for each. The caller holds the state's lock."""
