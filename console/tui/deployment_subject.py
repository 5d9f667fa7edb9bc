"""What the deployment screen shows and may act on: a playbook (its journal: every participant's play state) or an
inventory (its hosts, their status asked over SSH), read by the same code as `flctl play` and `flctl deploy`.

Pure apart from reading the files: the screen renders these rows and runs the actions in its workers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from flctl.node.security.authz import DEFAULT as DEFAULT_POLICY
from flctl.node.security.authz import Actor, decide

if TYPE_CHECKING:
    from flctl.cloud.deploy_executor import HostResult
    from flctl.cloud.inventory import Inventory
    from flctl.cloud.play import PlanRow
    from flctl.cloud.play_state import PlayState
    from flctl.cloud.playbook import Playbook

UNKNOWN = "-"
"""An inventory host's state before its status was asked."""


@dataclass(frozen=True)
class HostRow:
    """One line of the screen's table: who, where, how far it got, why not further."""

    participant: str
    host: str
    state: str
    reason: str = ""

    def cells(self) -> tuple[str, str, str, str]:
        return self.participant, self.host, self.state, self.reason or "-"


@dataclass
class Subject:
    """An opened playbook or inventory. `inventory_file`: what upgrade, stop, status and logs work on (an inventory
    itself; a playbook's STATE/inventory.yml, None before a play wrote it)."""

    path: Path
    playbook: Playbook | None
    inventory_file: Path | None
    orgs: dict[str, str] = field(default_factory=dict)  # participant -> its organisation (for the rights check)

    @property
    def kind(self) -> str:
        return "playbook" if self.playbook is not None else "inventory"


def open_subject(path: Path) -> Subject:
    """Read `path` as a playbook (it names a `project`) or an inventory; InputError (with lines) or DeployError."""
    from flctl.provisioner.errors import InputError, Problem

    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise InputError([Problem(str(path), None, "", f"cannot be read as YAML ({exc})")]) from None
    if isinstance(data, dict) and "project" in data:
        from flctl.cloud.playbook import load_playbook

        playbook = load_playbook(path)
        rolled = playbook.state_dir / "inventory.yml"
        return Subject(path, playbook, rolled if rolled.is_file() else None,
                       {p.name: p.org for p in playbook.project.participants()})
    from flctl.cloud.inventory import load_inventory

    inventory = load_inventory(path)
    return Subject(path, None, path, _kit_orgs(inventory))


def _kit_orgs(inventory: Inventory) -> dict[str, str]:
    """Each host's participant's organisation, from its kit's certificate ("" when the kit cannot be read)."""
    from flctl.provisioner.errors import ProvisionError
    from flctl.provisioner.kit_info import read_kit

    out = {}
    for host in inventory.hosts:
        try:
            out[host.participant] = read_kit(inventory.kit(host.participant)).org
        except (ProvisionError, OSError):
            out[host.participant] = ""
    return out


def play_rows(playbook: Playbook, state: PlayState) -> list[HostRow]:
    """Every participant of the playbook in its order, then those the journal still holds that the playbook no
    longer names (their nodes are to be stopped); `planned` for one the journal does not know yet."""
    rows = []
    for name in playbook.participants:
        p = state.participants.get(name)
        rows.append(HostRow(name, playbook.where(name), p.state if p else "planned", p.reason if p else ""))
    for name, p in state.participants.items():
        if name not in playbook.participants:
            rows.append(HostRow(name, p.host.split(" (")[0], p.state, p.reason or "no longer in the playbook"))
    return rows


def inventory_rows(inventory: Inventory) -> list[HostRow]:
    """The inventory's hosts, their state not asked yet."""
    return [HostRow(h.participant, h.where, UNKNOWN) for h in inventory.hosts]


def result_rows(rows: list[HostRow], results: Iterable[HostResult]) -> list[HostRow]:
    """`rows` with each host's outcome of a deploy command (status, and the sentence of a failure)."""
    done = {r.participant: r for r in results}
    return [HostRow(r.participant, r.host, done[r.participant].status, done[r.participant].message)
            if r.participant in done else r for r in rows]


def plan_rows(rows: list[HostRow], plan: list[PlanRow]) -> list[HostRow]:
    """`rows` with what `flctl play --check` says each participant would get, in the reason column."""
    planned = {p.participant: p for p in plan}
    out = []
    for row in rows:
        p = planned.get(row.participant)
        if p is None:
            out.append(row)
            continue
        would = f"not planned: {p.reason}" if p.reason else "would " + ("; ".join(p.actions) or "do nothing")
        out.append(HostRow(row.participant, row.host, row.state, would))
    return out


def refusal(actor: Actor | None, orgs: dict[str, str], what: str) -> str | None:
    """None when `actor` may run `what` (play, upgrade, stop…) over these participants: the right `operate` at each
    one's organisation under the default policy (a project_admin anywhere; an org_admin or a lead only where every
    host is of its own organisation; a member nowhere); else the reason, one sentence."""
    if actor is None:
        return f"{what}: who you are is not known yet (no admin kit read and no answer from the server)"
    for participant, org in orgs.items():
        why = decide(DEFAULT_POLICY, actor, "operate", site_org=org)
        if why is not None:
            return f"{what} needs the right operate on every host ({participant}: {why})"
    return None
