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
from flctl.cloud.deploy_plan import Desired, HostPlan, Observed, Step, kit_checksums, plan_host, service_mode
from flctl.cloud.health import server_answers, sites_online
from flctl.cloud.inventory import HostSpec, Inventory
from flctl.cloud.remote_scripts import q
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


@dataclass
class Rollout:
    """Deploy, inspect and stop the nodes of one inventory."""

    inventory: Inventory
    connector_factory: ConnectorFactory
    progress: Progress = field(default_factory=Progress)
    wheel_cache: Path = field(default_factory=default_cache)
    absent: list[HostSpec] = field(default_factory=list)  # cloud hosts whose machine does not exist yet
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
                unit = rs.unit_name(host.participant)
                return conn.check(rs.sudo(f"journalctl -u {q(unit)} -n {lines} --no-pager", observed.uid),
                                  "reading the journal")
            d = q(host.install_dir)
            result = conn.run_sh(f"cd {d} && for f in workspace/node.log logs/supervisor.log; do "
                                 f"[ -f $f ] && echo \"==> {host.install_dir}/$f <==\" && tail -n {lines} $f; done; "
                                 "true")
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
            error = NotCreated(f"{host.participant}: its {host.provider} machine does not exist yet; create it with "
                               f"`flctl deploy {host.provider} {self.inventory.source}`")
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
                raise HostUnsuitable(f"{host.participant}: there is no Python `{host.python}` on {host.address}; "
                                     "install Python 3.11+ there or set `python` in the inventory")
            last = (result.stderr.strip().splitlines() or ["no output"])[-1]
            raise HostUnsuitable(f"{host.participant}: probing {host.address} with {host.python} failed ({last}); "
                                 "check that it is Python 3.11 or newer")
        try:
            return Observed.from_probe(json.loads(result.stdout))
        except (ValueError, TypeError) as exc:
            raise HostUnsuitable(f"{host.participant}: {host.python} on {host.address} gave an unreadable answer "
                                 f"({exc}); check that it is CPython 3.11 or newer") from None

    def _wheel_set(self, observed: Observed) -> list[Path]:
        platform = Platform(observed.python, observed.glibc, observed.machine)
        with self._wheel_lock:  # built once per rollout and platform, whatever the number of hosts
            if platform.key not in self._wheels:
                self._wheels[platform.key] = wheelhouse(flctl_wheel(self.wheel_cache), platform, self.wheel_cache)
            return self._wheels[platform.key]

    def plan(self, host: HostSpec, conn: Connector, force_restart: bool = False) -> HostPlan:
        observed = self._probe(host, conn)
        from flctl.cloud.deploy_plan import check_host

        check_host(host, observed)
        wheels = self._wheel_set(observed)
        desired = Desired(host.participant, kit_checksums(self.inventory.kit(host.participant)),
                          {w.name: hashlib.sha256(w.read_bytes()).hexdigest() for w in wheels},
                          host.python, host.system_site_packages)
        sudo_ok = False
        if host.sudo and observed.systemd and observed.uid != 0:
            sudo_ok = conn.run("sudo -n true", timeout_s=30).exit_code == 0
        return plan_host(host, desired, observed, service_mode(host, observed, sudo_ok), force_restart)

    def _deploy_host(self, host: HostSpec, conn: Connector, dry_run: bool, rollback: bool,
                     upgrade: bool) -> HostResult:
        if host.provider != "ssh":  # a new cloud machine may still be installing packages at first boot
            conn.run_sh("if command -v cloud-init >/dev/null; then cloud-init status --wait >/dev/null; fi; true",
                        timeout_s=900)
        plan = self.plan(host, conn)
        observed, desired = plan.observed, plan.desired

        def result(status: str, **extra: Any) -> HostResult:
            fields: dict[str, Any] = {"changes": [s.detail for s in plan.steps], "release": desired.release_id}
            return HostResult(host.participant, host.where, host.port, status, **{**fields, **extra})

        if upgrade and observed.current is None:
            raise DeployError(f"{host.participant}: nothing is installed in {host.install_dir} on {host.address}; "
                              "run `flctl deploy ssh` first")
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
        d = q(host.install_dir)
        conn.check(f"cd {d} && ln -sfn releases/{q(release)} current.tmp && mv -T current.tmp current",
                   "switching back to the previous release")
        self._start_node(host, conn, plan.mode, plan.observed.uid)
        self._wait_healthy(host, conn, plan.mode)

    # ---- steps ------------------------------------------------------------------------------
    def _do(self, plan: HostPlan, step: Step, conn: Connector) -> None:
        host, desired, d = plan.host, plan.desired, plan.host.install_dir
        release = f"{d}/releases/{desired.release_id}"
        if step.kind == "upload_wheels":
            conn.check(f"mkdir -p {q(d)}/wheels", "creating the wheels folder")
            by_name = {w.name: w for w in self._wheel_set(plan.observed)}
            for name in step.files:
                conn.put_file(by_name[name].read_bytes(), f"{d}/wheels/.{name}.part")
                conn.check(f"mv {q(f'{d}/wheels/.{name}.part')} {q(f'{d}/wheels/{name}')}", "storing a wheel")
        elif step.kind == "create_venv":
            venv = f"{host.venvs}/{desired.venv_id}"
            flctl = next(n for n in desired.wheels if n.startswith("flctl-"))
            system = " --system-site-packages" if desired.system_site_packages else ""
            script = (f"test -f {q(venv)}/.complete || {{ rm -rf {q(venv)} && {q(host.python)} -m venv{system} "
                      f"{q(venv)} && {q(venv)}/bin/python -m pip install -q --disable-pip-version-check --no-index "
                      f"--find-links {q(d)}/wheels {q(f'{d}/wheels/{flctl}')} && touch {q(venv)}/.complete; }}")
            conn.check(f"mkdir -p {q(host.venvs)} && flock {q(host.venvs)}/.lock sh -c {q(script)}",
                       "installing flctl offline into the venv", timeout_s=900)
        elif step.kind == "upload_kit":
            self._upload_kit(host, conn, desired, release)
        elif step.kind == "verify_kit":
            out = conn.run(f"{q(release)}/venv/bin/flctl kit verify {q(release)}/kit", timeout_s=120)
            if out.exit_code != 0:
                conn.run(f"rm -rf {q(release)}")
                why = " ".join((out.stdout + " " + out.stderr).split())[-300:]
                raise KitRejected(f"{host.participant}: the kit's signature did not verify on {host.address} "
                                  f"({why}); copy the kit again from the provisioner's prod folder and redeploy")
        elif step.kind == "install_service":
            self._install_service(plan, conn)
        elif step.kind == "stop":
            self._stop_node(host, conn, plan.observed.mode or plan.mode, plan.observed.uid)
        elif step.kind == "switch":
            conn.check(f"cd {q(d)} && if [ -L current ]; then ln -sfn \"$(readlink current)\" previous; fi && "
                       f"ln -sfn releases/{desired.release_id} current.tmp && mv -T current.tmp current",
                       "switching to the new release")
        elif step.kind == "start":
            self._start_node(host, conn, plan.mode, plan.observed.uid)
        elif step.kind == "wait_healthy":
            self._wait_healthy(host, conn, plan.mode)
        else:  # pragma: no cover - the plan makes only the kinds above
            raise DeployError(f"unknown step {step.kind}")

    def _upload_kit(self, host: HostSpec, conn: Connector, desired: Desired, release: str) -> None:
        kit = self.inventory.kit(host.participant)
        tmp = f"{release}.part"
        folders = sorted({str(Path(name).parent) for name in desired.kit_files} - {"."})
        conn.check(f"rm -rf {q(tmp)} && mkdir -p " + " ".join(q(f"{tmp}/kit/{f}") for f in [".", *folders]),
                   "creating the release folder")
        for name in desired.kit_files:
            path = kit / name
            conn.put_file(path.read_bytes(), f"{tmp}/kit/{name}", path.stat().st_mode & 0o777)
        conn.put_file(json.dumps(desired.manifest(), indent=1).encode(), f"{tmp}/release.json")
        current_local = f"{host.install_dir}/current/kit/local"
        conn.check(f"if [ -d {q(current_local)} ]; then cp -a {q(current_local)}/. {q(tmp)}/kit/local/; fi && "
                   f"ln -sfn {q(host.venvs)}/{desired.venv_id} {q(tmp)}/venv && rm -rf {q(release)} && "
                   f"mv {q(tmp)} {q(release)}", "storing the release (the site's own local/ files are kept)")

    def _install_service(self, plan: HostPlan, conn: Connector) -> None:
        host, d = plan.host, plan.host.install_dir
        conn.check(f"mkdir -p {q(d)}/run {q(d)}/logs {q(d)}/workspace", "creating the run folders")
        if plan.mode == "systemd":
            unit = rs.unit_name(host.participant)
            conn.put_file(rs.systemd_unit(host.participant, d, host.user).encode(), f"{d}/run/{unit}")
            conn.check(rs.sudo(f"install -m 644 {q(f'{d}/run/{unit}')} /etc/systemd/system/{unit}",
                               plan.observed.uid) + " && " + rs.sudo("systemctl daemon-reload", plan.observed.uid)
                       + " && " + rs.sudo(f"systemctl enable {q(unit)}", plan.observed.uid),
                       "installing the systemd service")
        else:
            conn.put_file(rs.SUPERVISOR.encode(), f"{d}/run/supervise.sh", 0o755)
        conn.put_file(f"{plan.mode}\n".encode(), f"{d}/run/mode")

    def _start_node(self, host: HostSpec, conn: Connector, mode: str, uid: int) -> None:
        # A site counts as healthy only with a heartbeat newer than any it sent before this start
        # (the server still lists a just-stopped site online until its heartbeat times out).
        admin = self.inventory.admin_kit
        if admin is not None and not self._is_server(host):
            online = sites_online(admin) or {}
            self._heartbeat_floor[host.participant] = online.get(host.participant, 0.0)
        if mode == "systemd":
            conn.check(rs.sudo(f"systemctl restart {q(rs.unit_name(host.participant))}", uid), "starting the service")
        else:
            conn.check(rs.start_process_command(host.install_dir), "starting the node")

    def _stop_node(self, host: HostSpec, conn: Connector, mode: str, uid: int) -> bool:
        """Stop the node; True when one was running."""
        if mode == "systemd":
            unit = q(rs.unit_name(host.participant))
            active = conn.run(f"systemctl is-active {unit}").stdout.strip() == "active"
            conn.check(rs.sudo(f"systemctl stop {unit}", uid), "stopping the service")
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
        last = conn.run(f"tail -n 3 {q(host.install_dir)}/workspace/node.log 2>/dev/null").stdout.strip()
        tail = " ".join(last.splitlines()[-1:]).strip()
        raise Unhealthy(f"{host.participant} on {host.address} is unhealthy "
                        f"{self.inventory.spec.health_timeout_s:g} s after start ({why})"
                        + (f"; its log ends with: {tail[-200:]}" if tail else "")
                        + f"; see `flctl deploy logs {self.inventory.source} {host.participant}`")

    def _running(self, host: HostSpec, conn: Connector, mode: str) -> bool:
        if mode == "systemd":
            return conn.run(f"systemctl is-active {q(rs.unit_name(host.participant))}").stdout.strip() == "active"
        return self._probe(host, conn).running

    def _status_host(self, host: HostSpec, conn: Connector) -> HostResult:
        observed = self._probe(host, conn)
        base = HostResult(host.participant, host.where, host.port, "not installed", release=observed.current)
        if observed.current is None:
            base.ok = False
            base.reason, base.message = "not installed", f"{host.participant}: nothing is deployed on {host.address}"
            return base
        running = self._running(host, conn, observed.mode or "process")
        if not running:
            base.status, base.ok, base.reason = "not running", False, "not running"
            base.message = f"{host.participant}: the node on {host.address} is not running"
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
