"""`flctl play PLAYBOOK.yml`: from a playbook to a verified federation, resumable at any point.

One run: provision when the project changed (flctl.provisioner.build: the CA and unchanged certificates are
kept), link each participant's kit into the state folder only when its content changed (so an unchanged
participant keeps the very bytes its host runs, and its rollout changes nothing), run the pre-flight checks,
roll every host out through its deploy target (flctl.cloud.fleet: the rollout is idempotent), wait until each
node is healthy (the rollout's own health check), then run the smoke jobs through the admin client. Every state
a participant reaches is appended to the journal (STATE/events.jsonl) the moment it is reached; the pure state
machine (flctl.cloud.play_state) folds the journal into where the play stands and says what is left to do.

```
STATE/                       (the playbook's `state`, default PLAYBOOK_STEM.play/)
  events.jsonl               the journal: one event a line, appended and flushed as it happens
  inventory.yml              the inventory rolled out (for `flctl deploy status|logs|stop` and preflight)
  kits/<participant>         a link to the prod_NN/<participant> where that kit last changed
  workspace/                 the provisioning workspace (CA state, prod_NN), unless the playbook names one
  deploy/                    the cloud deployment's state (machines flctl made)
  .lock                      one play at a time
```
Core code never prints: the console renders what the `Observer` is told and the `PlayResult`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from flctl.cloud import play_state as ps
from flctl.cloud.deploy_errors import (
    AuthenticationFailed,
    CloudCredentialsMissing,
    CloudUnreachable,
    DeployError,
    HostKeyChanged,
    HostKeyUnknown,
    HostUnreachable,
)
from flctl.cloud.playbook import JobSpec, Playbook
from flctl.node.jobs.job_status import JobStatus
from flctl.provisioner.state import write_atomic

if TYPE_CHECKING:  # the rollout's modules are imported when a run rolls out: a no-change run never does
    from flctl.cloud.deploy_executor import HostResult, Progress
    from flctl.cloud.deploy_plan import Step
    from flctl.cloud.inventory import HostSpec, Inventory

CONNECTION_REASONS = frozenset(e.reason for e in (HostUnreachable, AuthenticationFailed, HostKeyUnknown,
                                                  HostKeyChanged, CloudCredentialsMissing, CloudUnreachable))
"""Failures to connect: a run where only these failed exits 3."""
SIGNATURE = "startup/signature.json"
"""Signed anew at every provisioning: left out of a kit's content digest."""
PREFLIGHT_BLOCKING = frozenset({"ssh", "host", "python", "disk", "kit", "signature"})
"""Pre-flight rows that, failing, keep a host from being deployed: its own side. The rows about the server (port,
TLS, clock) fail before the server first runs, so they are shown, not acted on."""


class PlayError(DeployError):
    """The play cannot go on (another play holds the state folder, a damaged journal)."""


# ---- the journal ---------------------------------------------------------------------------------------------------
class Journal:
    """The state folder's events.jsonl: appended one line at a time, flushed and synced, read back in order."""

    def __init__(self, path: Path, mend: bool = True) -> None:
        """Read the journal; `mend`: cut a line a killed run left half-written (False: change nothing)."""
        self.path = path
        self.mend = mend
        self._lock = threading.Lock()
        self.events: list[ps.Event] = self._read()
        self.state = ps.fold(self.events)
        self.added: list[ps.Event] = []

    def _read(self) -> list[ps.Event]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return []
        lines = raw.split(b"\n")
        complete, torn = lines[:-1], lines[-1]  # a line is written whole with its newline, or was torn by a kill
        events = []
        good = 0
        for i, line in enumerate(complete, 1):
            try:
                events.append(ps.Event.from_json(json.loads(line)))
            except (ValueError, KeyError, TypeError) as exc:
                if i == len(complete) and not torn:  # the last line of a run killed while writing it
                    break
                raise PlayError(f"{self.path}:{i} is not a play event ({exc}); move the file away to start the "
                                "play over (the hosts' installs are kept and reused)") from None
            good += len(line) + 1
        if good != len(raw) and self.mend:  # drop what a killed run left half-written, so the next event starts a line
            with open(self.path, "r+b") as out:
                out.truncate(good)
        return events

    def record(self, kind: str, participant: str | None = None, **data: Any) -> ps.Event:
        event = ps.Event(kind, round(time.time(), 3), participant, data)
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as out:
                out.write(json.dumps(event.to_json(), sort_keys=True) + "\n")
                out.flush()
                os.fsync(out.fileno())
            self.events.append(event)
            self.added.append(event)
            self.state = ps.step(self.state, event)
        return event


@contextlib.contextmanager
def locked(folder: Path) -> Iterator[None]:
    """The playbook's state folder, held by this run alone (the deployments' lock, with play's words)."""
    from flctl.cloud.deploy_state import locked as folder_locked

    with folder_locked(folder, "another flctl play", PlayError):
        yield


# ---- what the console is told ------------------------------------------------------------------------------------
class Observer:
    """Callbacks of a run; the defaults do nothing."""

    def phase(self, text: str) -> None:
        """A phase of the run begins (provisioning, checks, rollout, jobs)."""

    def event(self, event: ps.Event) -> None:
        """A state was recorded."""

    def check_row(self, participant: str, name: str, status: str, sentence: str) -> None:
        """A pre-flight check's outcome."""


@dataclass
class PlayResult:
    """What a run did and where every participant stands."""

    state: ps.PlayState
    started_at: float
    nothing_to_do: bool = False
    provisioned: bool = False
    jobs: list[dict[str, Any]] = field(default_factory=list)
    events: list[ps.Event] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(p.state == "verified" and not p.reason for p in self.state.participants.values()) and \
            all(j["status"] == JobStatus.FINISHED for j in self.jobs)

    @property
    def removed(self) -> list[dict[str, Any]]:
        """The participants this run stopped and forgot (no longer in the playbook): where, and how its node was."""
        return [{"participant": e.participant, "host": e.data.get("host", ""), "node": e.data.get("node", "")}
                for e in self.events if e.kind == "removed"]

    @property
    def only_connections_failed(self) -> bool:
        failed = [p for p in self.state.participants.values() if p.reason]
        return bool(failed) and all(p.connection for p in failed)

    def rows(self) -> list[dict[str, Any]]:
        """One per participant: its state, the seconds this run took to bring it there (None: untouched), why not
        further."""
        out = []
        for p in self.state.participants.values():
            reached = p.times.get(p.state)
            took = round(reached - self.started_at, 2) if reached is not None and reached >= self.started_at else None
            out.append({"participant": p.name, "host": p.host, "state": p.state, "seconds": took,
                        "reason": p.reason, "certificate": p.certificate, "times": p.times})
        return out


# ---- one run -------------------------------------------------------------------------------------------------------
def project_digest(playbook: Playbook) -> str:
    """What provisioning depends on: the project file's bytes."""
    return hashlib.sha256(playbook.project_file.read_bytes()).hexdigest()[:16]


def kit_digest(kit: Path) -> str:
    """A kit's content, its signature (made anew at every provisioning) left out."""
    from flctl.cloud.deploy_plan import kit_checksums

    sums = {k: v for k, v in kit_checksums(kit).items() if k != SIGNATURE}
    return hashlib.sha256(json.dumps(sums, sort_keys=True).encode()).hexdigest()[:16]


def placement(host: dict[str, Any]) -> str:
    """Where and how a participant runs (its inventory entry): a change there rolls it out again."""
    return hashlib.sha256(json.dumps(host, sort_keys=True, default=str).encode()).hexdigest()[:12]


def run(playbook: Playbook, observer: Observer | None = None, accept_new_host_keys: bool = False,
        passphrase: bytes | None = None) -> PlayResult:
    """Bring the playbook's federation to verified, from wherever its journal says it stopped."""
    tracked = _Phases(observer or Observer())
    started = time.time()
    with locked(playbook.state_dir):
        journal = Journal(playbook.journal)
        try:
            return _run(playbook, journal, tracked, started, accept_new_host_keys, passphrase)
        except KeyboardInterrupt:  # Ctrl-C: where it stopped is recorded; every state reached before is already
            _emit(journal, tracked, "interrupted", None, phase=tracked.current)
            raise


class _Phases(Observer):
    """The run's observer, remembering the phase it is in (recorded when Ctrl-C interrupts the run)."""

    def __init__(self, inner: Observer) -> None:
        self.inner = inner
        self.current = "planning"

    def phase(self, text: str) -> None:
        self.current = text
        self.inner.phase(text)

    def event(self, event: ps.Event) -> None:
        self.inner.event(event)

    def check_row(self, participant: str, name: str, status: str, sentence: str) -> None:
        self.inner.check_row(participant, name, status, sentence)


def _run(playbook: Playbook, journal: Journal, observer: Observer, started: float, accept_new_host_keys: bool,
         passphrase: bytes | None) -> PlayResult:
    """One run, the state folder held."""
    _plan_participants(playbook, journal, observer)
    digest = project_digest(playbook)
    names = tuple(playbook.participants)
    state = journal.state
    healthy: frozenset[str] | None = None  # None: never provisioned, nothing to ask
    if state.prod_dir:  # the admin kit asks the server; without it (removed by hand) no one counts as healthy
        healthy = _healthy_now(playbook, state) if (playbook.kits / playbook.admin()).exists() else frozenset()
    actions = ps.next_actions(state, ps.Facts(digest, names, healthy=healthy))
    retiring = actions.remove
    answering = healthy if healthy is not None else frozenset(names)  # None: nothing was asked
    for name in names:
        p = state.participants.get(name)
        if p is not None and p.at_least("started") and name not in answering:
            _emit(journal, observer, "lost", name, reason="its node did not answer (the server: TLS; a site: "
                                                          "listed online by the server)")
    if actions.nothing:
        return PlayResult(journal.state, started, nothing_to_do=True)
    result = PlayResult(journal.state, started)
    kits_gone = any(not (playbook.kits / n).exists() for n in [*names, playbook.admin()])
    if actions.provision or kits_gone:  # the state folder's kits removed by hand: made again, certificates kept
        observer.phase("provisioning")
        _provision(playbook, journal, observer, digest, passphrase)
        result.provisioned = True
    inventory = _write_inventory(playbook, keep=retiring)
    if retiring:
        _retire(playbook, journal, observer, inventory, list(retiring), accept_new_host_keys)
        _write_inventory(playbook, keep=tuple(n for n in retiring if n in journal.state.participants))  # the
        # hosts of those stopped and forgotten leave it; those whose node could not be stopped stay for the next run
    kits = {n: kit_digest(playbook.kits / n) for n in names}
    actions = ps.next_actions(journal.state, ps.Facts(digest, names, kits, healthy))
    blocked: set[str] = set()
    if actions.deliver and playbook.spec.checks.preflight:
        observer.phase("pre-flight checks")
        blocked = preflight(playbook, inventory, journal, observer, accept_new_host_keys, set(actions.deliver))
    deliver = [n for n in actions.deliver if n not in blocked]
    if deliver:
        observer.phase(f"rolling out {len(deliver)} of {len(names)} hosts")
        _deliver(playbook, journal, observer, deliver, kits, accept_new_host_keys)
    state = journal.state
    ready = [n for n in names if state.participants[n].at_least("healthy") and not state.participants[n].reason]
    if playbook.jobs and ready and (len(ready) == len(names)) and \
            any(not state.participants[n].at_least("verified") for n in names):
        observer.phase("smoke jobs")
        result.jobs = _smoke(playbook, journal, observer, ready)
    elif not playbook.jobs:
        for n in ready:
            if not journal.state.participants[n].at_least("verified"):
                _emit(journal, observer, "verified", n, job="")
    result.state = journal.state
    result.events = list(journal.added)
    return result


def _retire(playbook: Playbook, journal: Journal, observer: Observer, inventory_file: Path, names: list[str],
            accept_new_host_keys: bool) -> None:
    """Stop the node of each participant no longer in the playbook, on the host the last rollout put it (kept in
    STATE/inventory.yml until then), and forget it: a `removed` event saying how its node was found. One whose node
    cannot be stopped (its host out of reach) stays in the state, failed with why, and the next run tries again."""
    from flctl.cloud import fleet
    from flctl.cloud.inventory import load_inventory
    from flctl.cloud.targets.base import Deployment

    observer.phase(f"stopping {len(names)} participant{'s' if len(names) != 1 else ''} no longer in the playbook")
    inv = load_inventory(inventory_file)
    state = journal.state.participants
    hosts = [h for h in inv.hosts if h.participant in names and state[h.participant].at_least("delivered")]
    for name in names:
        if name not in {h.participant for h in hosts}:
            _emit(journal, observer, "removed", name, node="never started", host=state[name].host.split(" (")[0])
    if not hosts:
        return
    only = dataclasses.replace(inv, spec=inv.spec.model_copy(update={"hosts": hosts}))
    try:
        results = fleet.stop(Deployment(only, parallel=playbook.spec.parallel,
                                        accept_new_host_keys=accept_new_host_keys))
    except DeployError as exc:
        for host in hosts:
            _emit(journal, observer, "failed", host.participant, reason=f"no longer in the playbook, but its node "
                  f"could not be stopped: {exc}", connection=exc.reason in CONNECTION_REASONS)
        return
    for res in results:
        if res.ok:
            _emit(journal, observer, "removed", res.participant, node=res.status, host=res.address)
        else:
            _emit(journal, observer, "failed", res.participant, reason=f"no longer in the playbook, but its node "
                  f"could not be stopped: {res.message}", connection=res.reason in CONNECTION_REASONS)


def _emit(journal: Journal, observer: Observer, kind: str, participant: str | None = None, **data: Any) -> None:
    observer.event(journal.record(kind, participant, **data))


def _plan_participants(playbook: Playbook, journal: Journal, observer: Observer) -> None:
    """A `planned` event for each participant new to the journal or whose inventory entry changed."""
    for name, host in placements(playbook, journal.state).items():
        _emit(journal, observer, "planned", name, host=host)


def placements(playbook: Playbook, state: ps.PlayState) -> dict[str, str]:
    """The participants new to `state` or whose inventory entry changed: where each runs now."""
    out = {}
    for host in playbook.inventory_doc.data["hosts"]:
        name = str(host["participant"])
        where = f"{playbook.where(name)} ({placement(host)})"
        known = state.participants.get(name)
        if known is None or known.host != where:
            out[name] = where
    return out


def _healthy_now(playbook: Playbook, state: ps.PlayState) -> frozenset[str]:
    """The participants whose node answers now: the server's port answers TLS, the sites the server lists online."""
    from flctl.cloud.health import server_answers, sites_online
    from flctl.provisioner.kit_info import read_kit

    found: set[str] = set()
    server_up = False
    for name in playbook.participants:
        kit = playbook.kits / name
        try:
            if read_kit(kit).kind == "server":
                server_up = server_answers(kit, timeout_s=2.0)
                if server_up:
                    found.add(name)
        except Exception:  # noqa: BLE001 - an unreadable kit is simply not healthy
            continue
    if server_up:
        online = sites_online(playbook.kits / playbook.admin()) or {}
        found |= set(online) & set(playbook.participants)
    return frozenset(found)


# ---- provisioning ------------------------------------------------------------------------------------------------
def _provision(playbook: Playbook, journal: Journal, observer: Observer, digest: str, passphrase: bytes | None
               ) -> None:
    from flctl.provisioner.build import provision

    result = provision(playbook.project, playbook.workspace, passphrase)
    certificates = {k.name: k.status for k in result.kits}
    wanted = [*playbook.participants, playbook.admin()]
    linked = {e.participant: Path(str(e.data["kit"])) for e in journal.events
              if e.kind == "provisioned" and e.participant and e.data.get("kit")}
    link_kits(playbook.kits, result.prod_dir, wanted, linked)
    for name in playbook.participants:
        _emit(journal, observer, "provisioned", name, digest=kit_digest(playbook.kits / name),
              certificate=certificates.get(name, ""), kit=str((playbook.kits / name).resolve()))
    _emit(journal, observer, "project", None, digest=digest, prod_dir=str(result.prod_dir))


def link_kits(kits: Path, prod_dir: Path, names: list[str], linked: dict[str, Path] | None = None) -> list[str]:
    """Point kits/<name> at prod_dir/<name> for each kit whose content changed (atomically: a new link renamed
    over the old); the names relinked. `linked`: where each link pointed when last recorded, used when a link is
    gone (removed by hand) and that kit's content is still the same, so its host's release stays the same."""
    kits.mkdir(parents=True, exist_ok=True, mode=0o700)
    changed = []
    for name in names:
        link, new = kits / name, prod_dir / name
        if link.exists() and kit_digest(link) == kit_digest(new):
            continue
        before = (linked or {}).get(name)
        if not link.exists() and before is not None and before.is_dir() and kit_digest(before) == kit_digest(new):
            new = before
        tmp = kits / f".{name}.new"
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        tmp.symlink_to(new.resolve(), target_is_directory=True)
        os.replace(tmp, link)
        changed.append(name)
    return changed


def _write_inventory(playbook: Playbook, path: Path | None = None, kits: Path | None = None,
                     keep: tuple[str, ...] = ()) -> Path:
    """The inventory rolled out, as a file of its own with absolute paths (STATE/inventory.yml). `keep`: participants
    no longer in the playbook whose nodes are still to be stopped: their hosts are kept from the file as it was."""
    data = dict(playbook.inventory_doc.data)
    target = path or playbook.state_dir / "inventory.yml"
    kept = [h for h in _previous_hosts(target) if h.get("participant") in keep
            and ((kits or playbook.kits) / str(h["participant"]) / "startup").is_dir()]
    if kits is not None:
        data["kits"] = str(kits)
    data.setdefault("admin_kit", playbook.admin())
    base = playbook.inventory_source.parent
    for key in ("known_hosts", "ssh_config", "deployment"):
        if data.get(key):
            data[key] = str(_absolute(base, str(data[key])))
    if "deployment" not in data:
        data["deployment"] = str(_absolute(base, f"{playbook.inventory_source.stem}.deploy"))
    data["hosts"] = [{**h, **({"key_file": str(_absolute(base, str(h["key_file"])))} if h.get("key_file") else {})}
                     for h in data["hosts"]] + kept
    text = "# Written by flctl play from " + str(playbook.source) + "; edit the playbook, not this file.\n"
    write_atomic(target, (text + yaml.safe_dump(data, sort_keys=False)).encode(), 0o600)
    return target


def _previous_hosts(path: Path) -> list[dict[str, Any]]:
    """The hosts of the inventory play last wrote at `path` (none when there is none or it cannot be read)."""
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return []
    hosts = data.get("hosts") if isinstance(data, dict) else None
    return [h for h in hosts if isinstance(h, dict)] if isinstance(hosts, list) else []


def _absolute(base: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else (base / path).resolve()


def inventory(playbook: Playbook) -> Inventory:
    from flctl.cloud.inventory import load_inventory

    return load_inventory(playbook.state_dir / "inventory.yml")


# ---- pre-flight ----------------------------------------------------------------------------------------------------
def preflight(playbook: Playbook, inventory_file: Path, journal: Journal, observer: Observer,
              accept_new_host_keys: bool, deliver: set[str]) -> set[str]:
    """Run `flctl preflight` over the inventory (flctl.cloud.preflight); the participants to `deliver` whose own side
    failed (recorded as failed, with the check's sentence) are not deployed. The others are not checked: a healthy
    node whose host is out of reach now needs nothing from this run."""
    try:
        from flctl.cloud import preflight as checks  # the pre-flight module of issue 27
    except ImportError:
        observer.check_row("-", "preflight", "warn", "flctl preflight is not available in this flctl; skipped")
        return set()
    blocked: set[str] = set()
    waived = 0
    from flctl.cloud.inventory import load_inventory

    inv = load_inventory(inventory_file)
    inv = dataclasses.replace(inv, spec=inv.spec.model_copy(update={"hosts": [h for h in inv.hosts
                                                                              if h.participant in deliver]}))
    for report in checks.check_hosts(inv, accept_new_host_keys, playbook.spec.parallel):
        failing = [row for row in report.rows if str(row.status) == "fail" and row.name in PREFLIGHT_BLOCKING]
        waived += sum(str(row.status) == "fail" and row.name not in PREFLIGHT_BLOCKING for row in report.rows)
        for row in failing:
            observer.check_row(report.participant, row.name, str(row.status), row.sentence)
        if failing:
            blocked.add(report.participant)
            _emit(journal, observer, "failed", report.participant, reason=f"pre-flight: {failing[0].sentence}",
                  connection=all(r.connection for r in failing))
    if waived:
        observer.phase(f"pre-flight: {waived} checks of the server's side did not pass (its port, TLS, clock: "
                       f"expected before it runs); `flctl preflight {inventory_file}` lists them")
    return blocked


# ---- the rollout ---------------------------------------------------------------------------------------------------
def _recorder(journal: Journal, observer: Observer, kits: dict[str, str]) -> Progress:
    """A rollout Progress that turns the rollout's callbacks into journal events, as they happen."""
    from flctl.cloud.deploy_executor import Progress

    class Recorder(Progress):
        def _reach(self, name: str, kind: str, **data: Any) -> None:
            p = journal.state.participants.get(name)
            if kind == "delivered" or p is None or not p.at_least(kind) or p.reason:
                _emit(journal, observer, kind, name, **data)

        def step_done(self, host: HostSpec, step: Step) -> None:
            name = host.participant
            if step.kind == "verify_kit":
                self._reach(name, "delivered", digest=kits[name])
            elif step.kind == "start":
                if journal.state.participants[name].state == "provisioned":  # the same release, its node restarted
                    self._reach(name, "delivered", digest=kits[name])
                self._reach(name, "started")
            elif step.kind == "wait_healthy":
                self._reach(name, "healthy")

        def host_done(self, result: HostResult) -> None:
            name = result.participant
            if not result.ok:
                _emit(journal, observer, "failed", name, reason=result.message or result.status,
                      connection=result.reason in CONNECTION_REASONS)
                return
            p = journal.state.participants[name]
            if p.state == "provisioned" or p.delivered != kits[name]:  # the host already ran this very kit
                self._reach(name, "delivered", digest=kits[name])
            self._reach(name, "started")
            self._reach(name, "healthy")

    return Recorder()


def _deliver(playbook: Playbook, journal: Journal, observer: Observer, names: list[str], kits: dict[str, str],
             accept_new_host_keys: bool) -> None:
    """Roll the named participants' hosts out, target by target, the server's group first (flctl.cloud.fleet)."""
    from flctl.cloud import fleet
    from flctl.cloud.targets.base import Deployment

    inv = inventory(playbook)
    deployment = Deployment(inv, _recorder(journal, observer, kits), parallel=playbook.spec.parallel,
                            accept_new_host_keys=accept_new_host_keys)
    server = _server(inv)
    groups: dict[str, list[str]] = {}
    for host in sorted(inv.hosts, key=lambda h: h.participant != server):
        if host.participant in names:
            groups.setdefault(host.provider, []).append(host.participant)
    for provider, group in groups.items():
        try:
            applied = fleet.apply(deployment, provider, group)
        except DeployError as exc:
            for name in group:
                _emit(journal, observer, "failed", name, reason=str(exc), connection=exc.reason in CONNECTION_REASONS)
            continue
        for machine in applied.machines or []:
            if not machine.ok:
                p = journal.state.participants.get(machine.participant)
                if p is not None and not p.reason:
                    _emit(journal, observer, "failed", machine.participant, reason=machine.message,
                          connection=machine.reason in CONNECTION_REASONS)


def _server(inv: Inventory) -> str | None:
    from flctl.provisioner.kit_info import read_kit

    for host in inv.hosts:
        with contextlib.suppress(Exception):
            if read_kit(inv.kit(host.participant)).kind == "server":
                return host.participant
    return None


# ---- smoke jobs --------------------------------------------------------------------------------------------------
def _smoke(playbook: Playbook, journal: Journal, observer: Observer, ready: list[str]) -> list[dict[str, Any]]:
    """Run each job to its end (a job a killed run submitted is waited for, not submitted again); when every job
    finished, each participant is verified; else each is failed with the job's outcome."""
    from flctl.node.admin.admin_client import AdminClient
    from flctl.node.errors import NodeError

    outcomes: list[dict[str, Any]] = []
    admin_kit = playbook.kits / playbook.admin()
    pending = journal.state.pending_job
    try:
        with AdminClient.from_kit(admin_kit, timeout_s=30.0) as admin:
            for path, spec in playbook.jobs:
                name = str(path)
                if pending is not None and pending.name == name:
                    job_id, pending = pending.id, None
                else:
                    job_id = _submit(admin, path, spec)
                    _emit(journal, observer, "job_submitted", None, job=job_id, name=name, participants=ready)
                status, error = _wait(admin, job_id, spec.timeout_s)
                _emit(journal, observer, "job_ended", None, job=job_id, status=status)
                outcomes.append({"job": name, "id": job_id, "status": status, "error": error})
                if status != JobStatus.FINISHED:
                    break
    except NodeError as exc:
        outcomes.append({"job": "-", "id": "", "status": JobStatus.FAILED.value, "error": str(exc)})
    if outcomes and all(o["status"] == JobStatus.FINISHED for o in outcomes) and len(outcomes) == len(playbook.jobs):
        for name in ready:
            _emit(journal, observer, "verified", name, job=outcomes[-1]["id"])
    else:
        last = outcomes[-1]
        why = f"smoke job {Path(last['job']).name} {last['id']} ended {last['status']}" + \
            (f": {last['error']}" if last["error"] else "")
        for name in ready:
            _emit(journal, observer, "failed", name, reason=why, connection=False)
    return outcomes


def _submit(admin: Any, path: Path, spec: JobSpec) -> str:
    """Submit the job, with its rounds set to the playbook's (a copy of the job is changed, never the job)."""
    if spec.rounds is None:
        return str(admin.submit_job(path))
    with tempfile.TemporaryDirectory(prefix="flctl-play-job-") as tmp:
        copy = Path(tmp) / "job"
        if path.is_dir():
            shutil.copytree(path, copy, ignore=shutil.ignore_patterns("__pycache__"))
            job_file = copy / "job.yml"
        else:
            shutil.copytree(path.parent, copy, ignore=shutil.ignore_patterns("__pycache__"))
            job_file = copy / path.name
        data = yaml.safe_load(job_file.read_text())
        data.setdefault("workflow", {}).setdefault("args", {})["rounds"] = spec.rounds
        job_file.write_text(yaml.safe_dump(data, sort_keys=False))
        return str(admin.submit_job(copy if path.is_dir() else job_file))


def _wait(admin: Any, job_id: str, timeout_s: float) -> tuple[str, str]:
    """(final status, error) of the job, or (TIMED OUT, why) after `timeout_s`."""
    from flctl.node.jobs.job_status import JobStatus

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        info = admin.get_job(job_id)
        status = JobStatus(info.status) if not isinstance(info.status, JobStatus) else info.status
        if not status.is_active():
            return str(status.value), str(info.error or "")
        time.sleep(0.5)
    return "TIMED OUT", f"not finished {timeout_s:g} s after submission"


# ---- the plan (--check) ---------------------------------------------------------------------------------------------
@dataclass
class PlanRow:
    participant: str
    host: str
    certificate: str  # new, kept, reissued (reason), or "" when nothing is provisioned
    actions: list[str]
    reason: str = ""  # why its steps could not be planned (its host cannot be reached...)
    connection: bool = False  # that was a failure to connect

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def check(playbook: Playbook, passphrase: bytes | None = None, accept_new_host_keys: bool = False,
          connect: bool = True) -> tuple[bool, list[PlanRow], list[str]]:
    """What `run` would do, nothing changed: (would provision, one row per participant, the jobs it would run).
    The project is provisioned into a temporary copy of the workspace to know exactly which kits change; the hosts
    to roll out are probed (read only) to list their steps, unless `connect` is False."""
    from flctl.provisioner.build import provision

    journal = Journal(playbook.journal, mend=False)
    state = ps.fold([ps.Event("planned", time.time(), name, {"host": host})  # as `run` would record them
                     for name, host in placements(playbook, journal.state).items()], journal.state)
    digest = project_digest(playbook)
    names = tuple(playbook.participants)
    healthy = _healthy_now(playbook, state) if state.prod_dir and (playbook.kits / playbook.admin()).exists() \
        else None
    actions = ps.next_actions(state, ps.Facts(digest, names, healthy=healthy))
    certificates: dict[str, str] = {}
    kits = {n: state.participants[n].digest for n in names if n in state.participants}
    with tempfile.TemporaryDirectory(prefix="flctl-play-check-") as tmp:
        kit_dir = playbook.kits
        if actions.provision:
            workspace = Path(tmp) / "workspace"
            project_state = playbook.workspace / playbook.project.name / "state"
            if project_state.is_dir():
                shutil.copytree(project_state, workspace / playbook.project.name / "state")
            result = provision(playbook.project, workspace, passphrase)
            certificates = {k.name: k.status + (f" ({k.reason})" if k.reason else "") for k in result.kits}
            kit_dir = Path(tmp) / "kits"
            for name in [*names, playbook.admin()]:
                current = playbook.kits / name
                source = current if current.exists() and kit_digest(current) == kit_digest(result.prod_dir / name) \
                    else result.prod_dir / name
                kit_dir.mkdir(exist_ok=True)
                (kit_dir / name).symlink_to(source.resolve(), target_is_directory=True)
            kits = {n: kit_digest(kit_dir / n) for n in names}
        pending = ps.next_actions(dataclasses.replace(state, project_digest=digest, prod_dir="-"),
                                  ps.Facts(digest, names, kits, healthy))
        steps, failures = _host_steps(playbook, Path(tmp), kit_dir, list(pending.deliver), accept_new_host_keys) \
            if connect else ({}, {})
    rows = []
    for name in names:
        p = state.participants.get(name)
        where = playbook.where(name)
        if name in pending.deliver:
            todo = steps.get(name) or [("deliver the new kit and restart its node" if p and p.delivered and
                                        p.delivered != kits.get(name) else "roll out and start its node")]
        else:
            todo = []
        why, connection = failures.get(name, ("", False))
        rows.append(PlanRow(name, where, certificates.get(name, ""), [] if why else todo, why, connection))
    for name in actions.remove:
        gone = state.participants[name]
        rows.append(PlanRow(name, gone.host.split(" (")[0], "", [
            "stop its node and forget it (no longer in the playbook)" if gone.at_least("delivered")
            else "forget it (no longer in the playbook; its node never started)"]))
    jobs = [f"{Path(path).name} ({_rounds(spec.rounds)})" for path, spec in playbook.jobs] \
        if pending.verify or pending.deliver else []
    return actions.provision, rows, jobs


def _host_steps(playbook: Playbook, tmp: Path, kit_dir: Path, names: list[str], accept_new_host_keys: bool
                ) -> tuple[dict[str, list[str]], dict[str, tuple[str, bool]]]:
    """Each host's rollout steps (`flctl deploy --dry-run`), against the kits in `kit_dir`; and the hosts whose steps
    could not be planned: (why, whether it was a failure to connect)."""
    from flctl.cloud import fleet
    from flctl.cloud.inventory import load_inventory
    from flctl.cloud.targets.base import Deployment

    if not names or not kit_dir.exists():
        return {}, {}
    inv = dataclasses.replace(load_inventory(_write_inventory(playbook, tmp / "inventory.yml", kit_dir)),
                              kits=kit_dir)
    deployment = Deployment(inv, parallel=playbook.spec.parallel, accept_new_host_keys=accept_new_host_keys)
    out: dict[str, list[str]] = {}
    failures: dict[str, tuple[str, bool]] = {}
    for provider in dict.fromkeys(h.provider for h in inv.hosts if h.participant in names):
        group = [h.participant for h in inv.hosts if h.provider == provider and h.participant in names]
        try:
            planned = fleet.plan(deployment, provider, group)
        except DeployError as exc:
            failures.update({n: (str(exc), exc.reason in CONNECTION_REASONS) for n in group})
            continue
        for res in planned.hosts:
            if res.ok:
                out[res.participant] = list(res.changes)
            elif res.status != "not created":  # a machine not made yet: its plan is the machine's
                failures[res.participant] = (res.message, res.reason in CONNECTION_REASONS)
        for machine in planned.machines:
            made = ", ".join(r.kind.replace("_", " ") for r in machine.resources)
            out.setdefault(machine.participant, []).insert(0, f"create in {provider}: {made}")
    return out, failures


def _rounds(rounds: int | None) -> str:
    return "its own rounds" if rounds is None else f"{rounds} round{'s' if rounds != 1 else ''}"
