"""Running rollouts: connect to each host, probe it, plan, do the steps, check health; report through callbacks.

Hosts run in threads (`parallel`); one host failing never stops the others. Core code never
prints: the console renders the `Progress` callbacks and the `HostResult`s.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from flctl.cloud import remote_scripts as rs
from flctl.cloud.connector import Connector
from flctl.cloud.deploy_errors import DeployError, HostUnsuitable, KitRejected, NotCreated, Unhealthy
from flctl.cloud.deploy_plan import (
    CreateVenv,
    Desired,
    HostPlan,
    InstallService,
    Observed,
    StartNode,
    Step,
    StopNode,
    SwitchRelease,
    UploadKit,
    UploadWheels,
    VerifyKit,
    WaitHealthy,
    check_host,
    kit_checksums,
    plan_host,
    service_mode,
)
from flctl.cloud.health import server_answers, sites_online
from flctl.cloud.inventory import HostSpec, Inventory
from flctl.cloud.wheelhouse import Platform, default_cache, flctl_wheel, wheelhouse
from flctl.provisioner.errors import ProvisionError
from flctl.provisioner.kit_info import read_kit

STOP_GRACE_S = 20.0


@dataclass
class HostResult:
    """What happened on one host; `ok` is False for a failure, which `message` says in one sentence."""

    participant: str
    address: str
    port: int
    status: str  # deployed, unchanged, planned, rolled back, running, stopped, not running, not installed, failed
    ok: bool = True
    changes: list[str] = field(default_factory=list)
    release: str | None = None
    reason: str = ""
    message: str = ""
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Progress:
    """Callbacks a rollout reports through; the defaults do nothing."""

    def host_connected(self, host: HostSpec) -> None:
        """An SSH session to `host` is open."""

    def step_done(self, host: HostSpec, step: Step) -> None:
        """`step` finished on `host`."""

    def host_failed(self, host: HostSpec, error: DeployError) -> None:
        """`host` failed; the others carry on."""

    def host_done(self, result: HostResult) -> None:
        """`host` finished, successfully or not."""


ConnectorFactory = Callable[[HostSpec], Connector]


def not_created(host: HostSpec, inventory: Path) -> NotCreated:
    """The error of a host whose machine its target has not made yet."""
    return NotCreated(f"{host.participant}: its {host.provider} machine does not exist yet; create it with "
                      f"`flctl deploy {host.provider} {inventory}`")


@dataclass
class Rollout:
    """Deploy, inspect and stop the nodes of one inventory."""

    inventory: Inventory
    connector_factory: ConnectorFactory
    progress: Progress = field(default_factory=Progress)
    wheel_cache: Path = field(default_factory=default_cache)
    absent: list[HostSpec] = field(default_factory=list)  # cloud hosts whose machine does not exist yet
    first_boot: bool = False  # the machines are new: wait for cloud-init before probing them
    _wheels: dict[str, list[Path]] = field(default_factory=dict, init=False)
    _wheel_lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _heartbeat_floor: dict[str, float] = field(default_factory=dict, init=False)

    # ---- entry points -------------------------------------------------------------------------
    def deploy(self, dry_run: bool = False, parallel: int = 4, rollback: bool = False,
               upgrade: bool = False) -> list[HostResult]:
        """Make every host run its kit; `upgrade` refuses hosts with nothing installed yet."""
        return self._each(lambda host, conn: self._deploy_host(host, conn, dry_run, rollback, upgrade), parallel)

    def status(self, parallel: int = 4) -> list[HostResult]:
        return self._each(self._status_host, parallel)

    def stop(self, parallel: int = 4) -> list[HostResult]:
        return self._each(self._stop_host, parallel)

    def logs(self, host: HostSpec, lines: int = 100) -> str:
        conn = self.connector_factory(host)
        with conn:
            observed = self._probe(host, conn)
            if observed.mode == "systemd":
                return conn.check(rs.journal_command(host.participant, lines, observed.uid), "reading the journal")
            result = conn.run_sh(rs.process_logs_command(host.install_dir, lines))
            if not result.stdout.strip():
                raise DeployError(f"{host.participant} has no logs in {host.install_dir}; deploy it first")
            return result.stdout

    # ---- per host -----------------------------------------------------------------------------
    def _each(self, work: Callable[[HostSpec, Connector], HostResult], parallel: int) -> list[HostResult]:
        def one(host: HostSpec) -> HostResult:
            started = time.monotonic()
            try:
                conn = self.connector_factory(host)
                conn.connect()
                try:
                    self.progress.host_connected(host)
                    result = work(host, conn)
                finally:
                    conn.close()
            except (DeployError, ProvisionError) as exc:
                error = exc if isinstance(exc, DeployError) else DeployError(f"{host.participant}: {exc}")
                self.progress.host_failed(host, error)
                result = HostResult(host.participant, host.where, host.port, "failed", ok=False,
                                    reason=error.reason, message=str(error))
            result.seconds = round(time.monotonic() - started, 2)
            self.progress.host_done(result)
            return result

        hosts = sorted(self.inventory.hosts, key=lambda h: not self._is_server(h))  # the server first
        with ThreadPoolExecutor(max_workers=max(1, parallel), thread_name_prefix="deploy") as pool:
            results = list(pool.map(one, hosts))
        for host in self.absent:
            error = not_created(host, self.inventory.source)
            self.progress.host_failed(host, error)
            results.append(HostResult(host.participant, host.where, host.port, "not created", ok=False,
                                      reason=error.reason, message=str(error)))
        order = {h.participant: i for i, h in enumerate([*self.inventory.hosts, *self.absent])}
        return sorted(results, key=lambda r: order[r.participant])

    def _is_server(self, host: HostSpec) -> bool:
        try:
            return read_kit(self.inventory.kit(host.participant)).kind == "server"
        except Exception:  # noqa: BLE001 - an unreadable kit fails later, with its own message
            return False

    def _probe(self, host: HostSpec, conn: Connector) -> Observed:
        result = conn.run(rs.probe_command(host.python, host.install_dir, host.venvs), timeout_s=60)
        if result.exit_code != 0:
            if result.exit_code == 127 or "not found" in result.stderr:
                raise HostUnsuitable(f"{host.participant}: there is no Python `{host.python}` on {host.where}; "
                                     "install Python 3.11+ there or set `python` in the inventory")
            last = (result.stderr.strip().splitlines() or ["no output"])[-1]
            raise HostUnsuitable(f"{host.participant}: probing {host.where} with {host.python} failed ({last}); "
                                 "check that it is Python 3.11 or newer")
        try:
            return Observed.from_probe(json.loads(result.stdout))
        except (ValueError, TypeError) as exc:
            raise HostUnsuitable(f"{host.participant}: {host.python} on {host.where} gave an unreadable answer "
                                 f"({exc}); check that it is CPython 3.11 or newer") from None

    def _wheel_set(self, observed: Observed) -> list[Path]:
        platform = Platform(observed.python, observed.glibc, observed.machine)
        with self._wheel_lock:  # built once per rollout and platform, whatever the number of hosts
            if platform.key not in self._wheels:
                self._wheels[platform.key] = wheelhouse(flctl_wheel(self.wheel_cache), platform, self.wheel_cache)
            return self._wheels[platform.key]

    def plan(self, host: HostSpec, conn: Connector, force_restart: bool = False) -> HostPlan:
        observed = self._probe(host, conn)
        check_host(host, observed)
        wheels = self._wheel_set(observed)
        desired = Desired(host.participant, kit_checksums(self.inventory.kit(host.participant)),
                          {w.name: hashlib.sha256(w.read_bytes()).hexdigest() for w in wheels},
                          host.python, host.system_site_packages)
        sudo_ok = False
        if host.sudo and observed.systemd and observed.uid != 0:
            sudo_ok = conn.run(rs.SUDO_CHECK, timeout_s=30).exit_code == 0
        return plan_host(host, desired, observed, service_mode(host, observed, sudo_ok), force_restart)

    def _deploy_host(self, host: HostSpec, conn: Connector, dry_run: bool, rollback: bool,
                     upgrade: bool) -> HostResult:
        if self.first_boot:  # a new cloud machine may still be installing packages at first boot
            conn.run_sh(rs.WAIT_FIRST_BOOT, timeout_s=900)
        plan = self.plan(host, conn)
        observed, desired = plan.observed, plan.desired

        def result(status: str, **extra: Any) -> HostResult:
            fields: dict[str, Any] = {"changes": [s.detail for s in plan.steps], "release": desired.release_id}
            return HostResult(host.participant, host.where, host.port, status, **{**fields, **extra})

        if upgrade and observed.current is None:
            raise DeployError(f"{host.participant}: nothing is installed in {host.install_dir} on {host.where}; "
                              f"run `flctl deploy {host.provider} {self.inventory.source}` first")
        if dry_run:
            return result("planned" if plan.changes else "unchanged")
        if not plan.changes:
            self._wait_healthy(host, conn, plan.mode)
            return result("unchanged")
        try:
            for step in plan.steps:
                self._do(plan, step, conn)
                self.progress.step_done(host, step)
        except Unhealthy as exc:
            old = observed.current
            if not rollback or old is None or old == desired.release_id:
                raise
            self._rollback(plan, conn, old)
            return result("rolled back", ok=False, reason="unhealthy after upgrade", release=old,
                          message=f"{exc}; rolled back to release {old}")
        return result("deployed")

    def _rollback(self, plan: HostPlan, conn: Connector, release: str) -> None:
        host = plan.host
        self._stop_node(host, conn, plan.mode, plan.observed.uid)
        conn.check(rs.switch_back_command(host.install_dir, release), "switching back to the previous release")
        self._start_node(host, conn, plan.mode, plan.observed.uid)
        self._wait_healthy(host, conn, plan.mode)

    # ---- steps: one method per step type, found through STEP_ACTIONS ---------------------------------
    def _do(self, plan: HostPlan, step: Step, conn: Connector) -> None:
        STEP_ACTIONS[type(step)](self, plan, step, conn)

    def _upload_wheels(self, plan: HostPlan, step: Step, conn: Connector) -> None:
        d = plan.host.install_dir
        conn.check(rs.wheels_folder_command(d), "creating the wheels folder")
        by_name = {w.name: w for w in self._wheel_set(plan.observed)}
        for name in step.files:
            conn.put_file(by_name[name].read_bytes(), rs.wheel_part(d, name))
            conn.check(rs.store_wheel_command(d, name), "storing a wheel")

    def _create_venv(self, plan: HostPlan, step: Step, conn: Connector) -> None:
        host, desired = plan.host, plan.desired
        flctl = next(n for n in desired.wheels if n.startswith("flctl-"))
        conn.check(rs.create_venv_command(host.python, host.install_dir, host.venvs, desired.venv_id, flctl,
                                          desired.system_site_packages),
                   "installing flctl offline into the venv", timeout_s=900)

    def _upload_kit(self, plan: HostPlan, step: Step, conn: Connector) -> None:
        host, desired = plan.host, plan.desired
        release = rs.release_folder(host.install_dir, desired.release_id)
        kit = self.inventory.kit(host.participant)
        part = f"{release}.part"
        folders = sorted({str(Path(name).parent) for name in desired.kit_files} - {"."})
        conn.check(rs.new_release_command(part, folders), "creating the release folder")
        for name in desired.kit_files:
            path = kit / name
            conn.put_file(path.read_bytes(), f"{part}/kit/{name}", path.stat().st_mode & 0o777)
        conn.put_file(json.dumps(desired.manifest(), indent=1).encode(), f"{part}/release.json")
        conn.check(rs.store_release_command(host.install_dir, part, release, f"{host.venvs}/{desired.venv_id}"),
                   "storing the release (the site's own local/ files are kept)")

    def _verify_kit(self, plan: HostPlan, step: Step, conn: Connector) -> None:
        host = plan.host
        release = rs.release_folder(host.install_dir, plan.desired.release_id)
        out = conn.run(rs.verify_kit_command(release), timeout_s=120)
        if out.exit_code != 0:
            conn.run(rs.remove_command(release))
            why = " ".join((out.stdout + " " + out.stderr).split())[-300:]
            raise KitRejected(f"{host.participant}: the kit's signature did not verify on {host.where} "
                              f"({why}); copy the kit again from the provisioner's prod folder and redeploy")

    def _install_service(self, plan: HostPlan, step: Step, conn: Connector) -> None:
        host, d = plan.host, plan.host.install_dir
        conn.check(rs.run_folders_command(d), "creating the run folders")
        if plan.mode == "systemd":
            unit = rs.unit_name(host.participant)
            conn.put_file(rs.systemd_unit(host.participant, d, host.user).encode(), f"{d}/run/{unit}")
            conn.check(rs.install_unit_command(d, host.participant, plan.observed.uid),
                       "installing the systemd service")
        else:
            conn.put_file(rs.SUPERVISOR.encode(), f"{d}/run/supervise.sh", 0o755)
        conn.put_file(f"{plan.mode}\n".encode(), f"{d}/run/mode")

    def _stop_step(self, plan: HostPlan, step: Step, conn: Connector) -> None:
        self._stop_node(plan.host, conn, plan.observed.mode or plan.mode, plan.observed.uid)

    def _switch(self, plan: HostPlan, step: Step, conn: Connector) -> None:
        conn.check(rs.switch_command(plan.host.install_dir, plan.desired.release_id), "switching to the new release")

    def _start_step(self, plan: HostPlan, step: Step, conn: Connector) -> None:
        self._start_node(plan.host, conn, plan.mode, plan.observed.uid)

    def _wait_step(self, plan: HostPlan, step: Step, conn: Connector) -> None:
        self._wait_healthy(plan.host, conn, plan.mode)

    def _start_node(self, host: HostSpec, conn: Connector, mode: str, uid: int) -> None:
        # A site counts as healthy only with a heartbeat newer than any it sent before this start
        # (the server still lists a just-stopped site online until its heartbeat times out).
        admin = self.inventory.admin_kit
        if admin is not None and not self._is_server(host):
            online = sites_online(admin) or {}
            self._heartbeat_floor[host.participant] = online.get(host.participant, 0.0)
        if mode == "systemd":
            conn.check(rs.unit_command("restart", host.participant, uid), "starting the service")
        else:
            conn.check(rs.start_process_command(host.install_dir), "starting the node")

    def _stop_node(self, host: HostSpec, conn: Connector, mode: str, uid: int) -> bool:
        """Stop the node; True when one was running."""
        if mode == "systemd":
            active = conn.run(rs.unit_active_command(host.participant)).stdout.strip() == "active"
            conn.check(rs.unit_command("stop", host.participant, uid), "stopping the service")
            return active
        out = conn.check(rs.stop_process_command(host.python, host.install_dir, STOP_GRACE_S), "stopping the node",
                         timeout_s=STOP_GRACE_S + 30)
        return out.strip() not in ("", "0")

    def _healthy(self, host: HostSpec) -> tuple[bool, str]:
        kit = self.inventory.kit(host.participant)
        if read_kit(kit).kind == "server":
            return server_answers(kit), "its port does not answer TLS"
        admin = self.inventory.admin_kit
        if admin is None:
            return True, ""
        online = sites_online(admin)
        if online is None:
            return False, "the server cannot be asked whether it is online"
        floor = self._heartbeat_floor.get(host.participant)
        fresh = host.participant in online and (floor is None or online[host.participant] > floor)
        return fresh, "the server does not list it online"

    def _wait_healthy(self, host: HostSpec, conn: Connector, mode: str) -> None:
        deadline = time.monotonic() + self.inventory.spec.health_timeout_s
        why = ""
        while time.monotonic() < deadline:
            ok, why = self._healthy(host)
            if ok and self._running(host, conn, mode):
                return
            time.sleep(0.5)
        last = conn.run(rs.node_log_tail_command(host.install_dir)).stdout.strip()
        tail = " ".join(last.splitlines()[-1:]).strip()
        raise Unhealthy(f"{host.participant} on {host.where} is unhealthy "
                        f"{self.inventory.spec.health_timeout_s:g} s after start ({why})"
                        + (f"; its log ends with: {tail[-200:]}" if tail else "")
                        + f"; see `flctl deploy logs {self.inventory.source} {host.participant}`")

    def _running(self, host: HostSpec, conn: Connector, mode: str) -> bool:
        if mode == "systemd":
            return conn.run(rs.unit_active_command(host.participant)).stdout.strip() == "active"
        return self._probe(host, conn).running

    def _status_host(self, host: HostSpec, conn: Connector) -> HostResult:
        observed = self._probe(host, conn)
        base = HostResult(host.participant, host.where, host.port, "not installed", release=observed.current)
        if observed.current is None:
            base.ok = False
            base.reason, base.message = "not installed", f"{host.participant}: nothing is deployed on {host.where}"
            return base
        running = self._running(host, conn, observed.mode or "process")
        if not running:
            base.status, base.ok, base.reason = "not running", False, "not running"
            base.message = f"{host.participant}: the node on {host.where} is not running"
            return base
        ok, why = self._healthy(host)
        base.status, base.ok = ("running", True) if ok else ("unhealthy", False)
        if not ok:
            base.reason, base.message = "unhealthy", f"{host.participant}: the node runs but {why}"
        return base

    def _stop_host(self, host: HostSpec, conn: Connector) -> HostResult:
        observed = self._probe(host, conn)
        was = False
        with contextlib.suppress(DeployError):
            was = self._running(host, conn, observed.mode or "process")
        if observed.mode is not None:
            self._stop_node(host, conn, observed.mode, observed.uid)
        return HostResult(host.participant, host.where, host.port, "stopped" if was else "not running",
                          release=observed.current)


StepAction = Callable[[Rollout, HostPlan, Step, Connector], None]
STEP_ACTIONS: dict[type[Step], StepAction] = {
    UploadWheels: Rollout._upload_wheels, CreateVenv: Rollout._create_venv, UploadKit: Rollout._upload_kit,
    VerifyKit: Rollout._verify_kit, InstallService: Rollout._install_service, StopNode: Rollout._stop_step,
    SwitchRelease: Rollout._switch, StartNode: Rollout._start_step, WaitHealthy: Rollout._wait_step,
}
"""What each type of step does (Rollout's methods); a step type the plan makes and this table lacks is a bug."""
