"""What a cloud provider does for a rollout: make a planned machine exist (reusing what it already made)
and delete recorded resources. One subclass per cloud (flctl.cloud.aws_machines, flctl.cloud.azure_machines).

The contract every provider keeps:
- a resource is recorded in the deployment state the moment the cloud returns its id, before anything else;
- `ensure` first reuses what the state records, then adopts a resource carrying this deployment's tags
  (one made by a run that crashed before recording it), and only then creates;
- `delete` treats "already gone" as done, so destroy can always run again.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from flctl.cloud.deploy_state import DeploymentState, Machine, Record
from flctl.cloud.machine_plan import MachinePlan


class CloudProgress:
    """Callbacks the console renders; the defaults do nothing."""

    def resource_ready(self, participant: str, kind: str, name: str, how: str) -> None:
        """`how` is created, reused or adopted."""

    def resource_deleted(self, record: Record, how: str) -> None:
        """`how` is deleted or already gone."""


class MachineProvider(ABC):
    """One cloud's way of making and removing machines."""

    name: str

    def __init__(self, state: DeploymentState, progress: CloudProgress | None = None) -> None:
        self.state = state
        self.progress = progress or CloudProgress()

    @abstractmethod
    def ensure(self, plan: MachinePlan) -> Machine:
        """Make every resource of `plan` exist and the machine run; its address for SSH."""

    @abstractmethod
    def delete(self, record: Record) -> bool:
        """Delete one recorded resource; False when it was already gone."""

    def destroy_order(self, records: list[Record]) -> list[Record]:
        """Records in the order they can be deleted (dependents first): reverse creation order by default."""
        return list(reversed(records))

    def _record(self, plan: MachinePlan, kind: str, rid: str, name: str, location: str, how: str,
                **extra: str) -> Record:
        record = self.state.add(Record(self.name, kind, rid, name, plan.participant, location, dict(extra)))
        self.progress.resource_ready(plan.participant, kind, name, how)
        return record
