"""Cloud machines: create those of an inventory's hosts whose target makes machines (`provider: aws|azure`;
flctl.cloud.targets.machine_target), one after another; destroy exactly what the deployment state records.

Machines are made one after another, the server first; one failing does not stop the others. The
deployment state (flctl.cloud.deploy_state) is locked for the whole command.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from flctl.cloud.deploy_errors import DeployError, NotInInventory
from flctl.cloud.deploy_state import DeploymentState, Record, locked
from flctl.cloud.inventory import HostSpec, Inventory
from flctl.cloud.machine_plan import MachinePlan, plan_machine
from flctl.cloud.machine_provider import CloudProgress, MachineProvider
from flctl.provisioner.errors import ProvisionError
from flctl.provisioner.kit_info import read_kit

ProviderFactory = Callable[[str, DeploymentState, CloudProgress], MachineProvider]
DestroyOne = Callable[[str, DeploymentState, list[Record]], list[tuple[Record, str]]]


@dataclass
class MachineResult:
    """What happened to one cloud machine."""

    participant: str
    provider: str
    status: str  # planned, ready, failed
    address: str | None = None
    resources: list[str] = field(default_factory=list)
    ok: bool = True
    reason: str = ""
    message: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def select_hosts(inventory: Inventory, provider: str, participants: list[str],
                 through: bool = False) -> list[HostSpec]:
    """The inventory's hosts of target `provider` (all of them, or the named ones); NotInInventory naming a wrong
    name. `through`: also the hosts of targets reached through `provider` (the machines clouds made, for ssh)."""
    from flctl.cloud import targets

    def mine(host: HostSpec) -> bool:
        return host.provider == provider or (through and targets.get(host.provider).reached_through == provider)

    if not participants:
        hosts = [h for h in inventory.hosts if mine(h)]
        if not hosts:
            block = f", with an '{provider}:' block" if targets.get(provider).spec is not None else ""
            raise NotInInventory(f"{inventory.source} has no host with provider: {provider}; add one{block} "
                                 "(see playbooks/rollouts/)")
        return hosts
    chosen = []
    for name in participants:
        try:
            host = inventory.host(name)
        except KeyError:
            names = ", ".join(h.participant for h in inventory.hosts)
            raise NotInInventory(f"no participant '{name}' in {inventory.source}; hosts: {names}") from None
        if not mine(host):
            raise NotInInventory(f"{name} has provider: {host.provider} in {inventory.source}, not {provider}")
        chosen.append(host)
    return chosen


def plan_machines(inventory: Inventory, hosts: list[HostSpec], deployment: str) -> list[MachinePlan]:
    """The machine plans of `hosts`, the server first (its kit gives the project and the federation port)."""
    plans = []
    for host in hosts:
        try:
            kit = read_kit(inventory.kit(host.participant))
        except ProvisionError as exc:
            raise DeployError(f"{host.participant}: {exc}") from None
        plans.append(plan_machine(host, kit.project, deployment, kit.kind == "server", kit.server_port))
    return sorted(plans, key=lambda p: not p.server)


def project_of(inventory: Inventory) -> str:
    try:
        return read_kit(inventory.kit(inventory.hosts[0].participant)).project
    except ProvisionError as exc:
        raise DeployError(str(exc)) from None


@dataclass
class CloudRollout:
    """Create and destroy the cloud machines of one inventory."""

    inventory: Inventory
    make_provider: ProviderFactory
    progress: CloudProgress = field(default_factory=CloudProgress)

    def plan(self, provider: str, participants: list[str]) -> tuple[DeploymentState, list[MachinePlan]]:
        """The deployment (existing or new, not written) and the plans of the chosen hosts."""
        hosts = select_hosts(self.inventory, provider, participants)
        state = DeploymentState.open(self.inventory.state_dir, project_of(self.inventory))
        return state, plan_machines(self.inventory, hosts, state.deployment)

    def create(self, provider: str, participants: list[str]) -> list[MachineResult]:
        """Make every chosen machine exist and run; its address lands in the deployment state."""
        with locked(self.inventory.state_dir):
            state, plans = self.plan(provider, participants)
            cloud = self.make_provider(provider, state, self.progress)
            results = []
            for plan in plans:
                try:
                    machine = cloud.ensure(plan)
                except DeployError as exc:
                    results.append(MachineResult(plan.participant, provider, "failed", ok=False, reason=exc.reason,
                                                 message=f"{plan.participant}: {exc}"))
                    continue
                state.set_machine(machine)
                results.append(MachineResult(plan.participant, provider, "ready", machine.address,
                                             [f"{r.kind} {r.id}" for r in state.records
                                              if r.participant == plan.participant]))
            return results

    def destroy(self) -> list[tuple[Record, str]]:
        """Delete every recorded resource (dependents first); each is forgotten the moment it is gone.

        Returns (record, deleted|already gone). A failure stops there with the rest still recorded, so
        running destroy again continues where it stopped.
        """
        def one(provider: str, state: DeploymentState, records: list[Record]) -> list[tuple[Record, str]]:
            return destroy_records(self.make_provider(provider, state, self.progress), state, records, self.progress)

        return destroy_deployment(self.inventory, one)


def destroy_deployment(inventory: Inventory, destroy_one: DestroyOne) -> list[tuple[Record, str]]:
    """With the deployment's state locked, `destroy_one(provider, state, its records)` for each provider that
    recorded resources; then forget the machines, their keys and host keys."""
    with locked(inventory.state_dir):
        state = DeploymentState.load(inventory.state_dir)
        if state is None or not state.records:
            if state is not None:
                _forget_machines(state)
            return []
        done: list[tuple[Record, str]] = []
        for provider in sorted({r.provider for r in state.records}):
            done += destroy_one(provider, state, [r for r in state.records if r.provider == provider])
        _forget_machines(state)
        return done


def destroy_records(cloud: MachineProvider, state: DeploymentState, records: list[Record],
                    progress: CloudProgress) -> list[tuple[Record, str]]:
    """Delete `records` through `cloud` in its destroy order, forgetting each in `state` the moment it is gone."""
    done = []
    for record in cloud.destroy_order(records):
        how = "deleted" if cloud.delete(record) else "already gone"
        state.forget(record)
        progress.resource_deleted(record, how)
        done.append((record, how))
    return done


def _forget_machines(state: DeploymentState) -> None:
    """Drop the machines and the keys and host keys made for them, once nothing of them is left."""
    for participant in list(state.machines):
        state.drop_machine(participant)
    for path in [*state.keys.glob("*"), state.known_hosts]:
        path.unlink(missing_ok=True)


def machine_provider(name: str, state: DeploymentState, progress: CloudProgress) -> MachineProvider:
    """The MachineProvider of target `name` with its SDK's usual credentials (imported only when used)."""
    from flctl.cloud import targets
    from flctl.cloud.targets.machine_target import MachineTarget

    target = targets.get(name)
    if not isinstance(target, MachineTarget):
        raise DeployError(f"the deploy target '{name}' makes no machines, so it recorded none; remove its records "
                          "from the deployment's state.json")
    return target.machines(state, progress)
