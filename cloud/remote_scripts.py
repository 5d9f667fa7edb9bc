"""What runs on a host, as text: the layout of an install folder, the probe, the supervisor, the stop script.

Pure: nothing here connects anywhere. An install folder looks like:

    INSTALL/
      wheels/*.whl               the flctl wheel and its dependencies (uploaded, checksummed)
      venvs/<venv id>/           virtual environments, one per wheel set (`.complete` when installed)
      releases/<release id>/     kit/ (the participant's kit), venv -> ../../venvs/<id>, release.json
      current, previous          links to the running and the last release
      workspace/                 the node's state and its node.log (kept across releases)
      run/                       mode (systemd|process), supervise.sh, supervisor.pid, node.pid, stopping
      logs/supervisor.log        what the supervised process printed
"""

from __future__ import annotations

import shlex

UNIT_PREFIX = "flctl-"


def q(value: str) -> str:
    return shlex.quote(value)


def unit_name(participant: str) -> str:
    return f"{UNIT_PREFIX}{participant.replace('@', '-at-')}.service"


PROBE = r'''
import json, os, platform, shutil, sys, hashlib
d = sys.argv[1]
out = {"python": "%d.%d" % sys.version_info[:2], "glibc": platform.libc_ver()[1] or "0",
       "machine": platform.machine(), "systemd": os.path.isdir("/run/systemd/system"), "uid": os.getuid()}
p = d
while not os.path.exists(p):
    p = os.path.dirname(p)
out["free_mb"] = shutil.disk_usage(p).free // 2**20
out["writable"] = os.access(p, os.W_OK)
def link(name):
    path = os.path.join(d, name)
    return os.path.basename(os.readlink(path)) if os.path.islink(path) else None
out["current"], out["previous"] = link("current"), link("previous")
try:
    with open(os.path.join(d, "current", "release.json")) as f:
        out["release"] = json.load(f)
except (OSError, ValueError):
    out["release"] = None
wheels = {}
wd = os.path.join(d, "wheels")
for name in sorted(os.listdir(wd)) if os.path.isdir(wd) else []:
    with open(os.path.join(wd, name), "rb") as f:
        wheels[name] = hashlib.sha256(f.read()).hexdigest()
out["wheels"] = wheels
vd = sys.argv[2]
out["venvs"] = sorted(v for v in os.listdir(vd) if os.path.exists(os.path.join(vd, v, ".complete"))) \
    if os.path.isdir(vd) else []
def mode():
    try:
        with open(os.path.join(d, "run", "mode")) as f:
            return f.read().strip()
    except OSError:
        return None
out["mode"] = mode()
def alive(name):
    try:
        with open(os.path.join(d, "run", name)) as f:
            pid = int(f.read().strip())
        with open("/proc/%d/stat" % pid) as f:
            return pid if f.read().rsplit(")", 1)[1].split()[0] != "Z" else None
    except (OSError, ValueError, IndexError):
        return None
out["node_pid"], out["supervisor_pid"] = alive("node.pid"), alive("supervisor.pid")
print(json.dumps(out))
'''

SUPERVISOR = r'''#!/bin/sh
# Written by `flctl deploy`: keeps this install's node running, restarting it 2 s after it exits,
# until run/stopping exists (`flctl deploy stop` creates it).
D="$1"
cd "$D" || exit 1
echo $$ > run/supervisor.pid
while [ ! -e run/stopping ]; do
  "$D/current/venv/bin/flctl" node start "$D/current/kit" --workspace "$D/workspace" >> logs/supervisor.log 2>&1 &
  echo $! > run/node.pid
  wait $!
  status=$?
  [ -e run/stopping ] && break
  echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) node exited with status $status; restarting in 2 s" >> logs/supervisor.log
  sleep 2
done
rm -f run/node.pid run/supervisor.pid
'''

# Stops the supervisor, the node and every process the node started (job processes run in
# sessions of their own, so they are found through /proc before the node goes).
STOP = r'''
import os, signal, sys, time
d = sys.argv[1]
open(os.path.join(d, "run", "stopping"), "w").close()
def pid_of(name):
    try:
        with open(os.path.join(d, "run", name)) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None
def table():
    parent, group = {}, {}
    for e in os.listdir("/proc"):
        if e.isdigit():
            try:
                with open("/proc/%s/stat" % e) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":
                parent[int(e)], group[int(e)] = int(fields[1]), int(fields[2])
    return parent, group
def descendants(root):
    parent, group = table()
    found, todo = set(), [root]
    while todo:
        p = todo.pop()
        for child, par in parent.items():
            if par == p and child not in found:
                found.add(child)
                todo.append(child)
    return found, {group[p] for p in found if p in group}
def alive(pid):
    return pid in table()[0]
sup, node = pid_of("supervisor.pid"), pid_of("node.pid")
roots = [p for p in (sup, node) if p and alive(p)]
procs, groups = set(), set()
for r in roots:
    found, grp = descendants(r)
    procs |= found
    groups |= grp
if node and alive(node):
    os.kill(node, signal.SIGTERM)
    deadline = time.time() + float(sys.argv[2])
    while alive(node) and time.time() < deadline:
        time.sleep(0.1)
for pid in [*roots, *procs]:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
for g in groups:
    if g != os.getpgid(0):
        try:
            os.killpg(g, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
for name in ("node.pid", "supervisor.pid"):
    try:
        os.remove(os.path.join(d, "run", name))
    except OSError:
        pass
print(len(roots))
'''


def probe_command(python: str, install_dir: str, venv_root: str) -> str:
    return f"{q(python)} -c {q(PROBE)} {q(install_dir)} {q(venv_root)}"


def stop_process_command(python: str, install_dir: str, grace_s: float) -> str:
    return f"{q(python)} -c {q(STOP)} {q(install_dir)} {grace_s:g}"


def start_process_command(install_dir: str) -> str:
    d = q(install_dir)
    return (f"cd {d} && rm -f run/stopping && "
            f"{{ setsid nohup sh run/supervise.sh {d} > /dev/null 2>&1 < /dev/null & }}")


def systemd_unit(participant: str, install_dir: str, user: str) -> str:
    return (f"[Unit]\nDescription=flctl node {participant}\nAfter=network-online.target\n"
            f"Wants=network-online.target\n\n[Service]\nUser={user}\n"
            f"ExecStart={install_dir}/current/venv/bin/flctl node start {install_dir}/current/kit "
            f"--workspace {install_dir}/workspace\nRestart=on-failure\nRestartSec=2\nKillMode=control-group\n\n"
            "[Install]\nWantedBy=multi-user.target\n")


def sudo(command: str, uid: int) -> str:
    return command if uid == 0 else f"sudo -n {command}"


# ---- the commands each rollout step runs ------------------------------------------------------------
WAIT_FIRST_BOOT = "if command -v cloud-init >/dev/null; then cloud-init status --wait >/dev/null; fi; true"
SUDO_CHECK = "sudo -n true"


def wheels_folder_command(install_dir: str) -> str:
    return f"mkdir -p {q(install_dir)}/wheels"


def wheel_part(install_dir: str, name: str) -> str:
    """Where a wheel is uploaded before `store_wheel_command` moves it into place."""
    return f"{install_dir}/wheels/.{name}.part"


def store_wheel_command(install_dir: str, name: str) -> str:
    return f"mv {q(wheel_part(install_dir, name))} {q(f'{install_dir}/wheels/{name}')}"


def create_venv_command(python: str, install_dir: str, venv_root: str, venv_id: str, flctl_wheel: str,
                        system_site_packages: bool) -> str:
    """Install the flctl wheel offline into venv `venv_id` unless it is complete; one installer at a time."""
    venv, d = f"{venv_root}/{venv_id}", install_dir
    system = " --system-site-packages" if system_site_packages else ""
    script = (f"test -f {q(venv)}/.complete || {{ rm -rf {q(venv)} && {q(python)} -m venv{system} "
              f"{q(venv)} && {q(venv)}/bin/python -m pip install -q --disable-pip-version-check --no-index "
              f"--find-links {q(d)}/wheels {q(f'{d}/wheels/{flctl_wheel}')} && touch {q(venv)}/.complete; }}")
    return f"mkdir -p {q(venv_root)} && flock {q(venv_root)}/.lock sh -c {q(script)}"


def release_folder(install_dir: str, release_id: str) -> str:
    return f"{install_dir}/releases/{release_id}"


def new_release_command(part: str, folders: list[str]) -> str:
    """Make the empty folders of a release being uploaded to `part`."""
    return f"rm -rf {q(part)} && mkdir -p " + " ".join(q(f"{part}/kit/{f}") for f in [".", *folders])


def store_release_command(install_dir: str, part: str, release: str, venv: str) -> str:
    """Keep the site's own local/ files, link the venv, and move the uploaded release into place."""
    current_local = f"{install_dir}/current/kit/local"
    return (f"if [ -d {q(current_local)} ]; then cp -a {q(current_local)}/. {q(part)}/kit/local/; fi && "
            f"ln -sfn {q(venv)} {q(part)}/venv && rm -rf {q(release)} && mv {q(part)} {q(release)}")


def verify_kit_command(release: str) -> str:
    return f"{q(release)}/venv/bin/flctl kit verify {q(release)}/kit"


def remove_command(path: str) -> str:
    return f"rm -rf {q(path)}"


def switch_command(install_dir: str, release_id: str) -> str:
    """Make `release_id` current; the release current until now becomes `previous`."""
    return (f"cd {q(install_dir)} && if [ -L current ]; then ln -sfn \"$(readlink current)\" previous; fi && "
            f"ln -sfn releases/{q(release_id)} current.tmp && mv -T current.tmp current")


def switch_back_command(install_dir: str, release_id: str) -> str:
    """Make `release_id` current again (a rollback: `previous` stays as it is)."""
    return f"cd {q(install_dir)} && ln -sfn releases/{q(release_id)} current.tmp && mv -T current.tmp current"


def run_folders_command(install_dir: str) -> str:
    d = q(install_dir)
    return f"mkdir -p {d}/run {d}/logs {d}/workspace"


def install_unit_command(install_dir: str, participant: str, uid: int) -> str:
    """Install the unit uploaded to run/, reload systemd and enable the unit."""
    unit = unit_name(participant)
    return (sudo(f"install -m 644 {q(f'{install_dir}/run/{unit}')} /etc/systemd/system/{unit}", uid) + " && "
            + sudo("systemctl daemon-reload", uid) + " && " + sudo(f"systemctl enable {q(unit)}", uid))


def unit_command(action: str, participant: str, uid: int) -> str:
    """`systemctl ACTION` (restart, stop) on the participant's unit."""
    return sudo(f"systemctl {action} {q(unit_name(participant))}", uid)


def unit_active_command(participant: str) -> str:
    return f"systemctl is-active {q(unit_name(participant))}"


def journal_command(participant: str, lines: int, uid: int) -> str:
    return sudo(f"journalctl -u {q(unit_name(participant))} -n {lines} --no-pager", uid)


def process_logs_command(install_dir: str, lines: int) -> str:
    """The end of the node's log and of the supervisor's, each under a `==> path <==` header."""
    return (f"cd {q(install_dir)} && for f in workspace/node.log logs/supervisor.log; do "
            f"[ -f $f ] && echo \"==> {install_dir}/$f <==\" && tail -n {lines} $f; done; true")


def node_log_tail_command(install_dir: str) -> str:
    return f"tail -n 3 {q(install_dir)}/workspace/node.log 2>/dev/null"
