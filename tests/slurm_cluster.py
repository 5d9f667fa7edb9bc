"""A real one-node Slurm cluster for tests: munged, slurmctld and slurmd (Debian's slurm-wlm 22.05) on 127.0.0.1.

Everything lives in a folder of its own: the munge key and socket, slurm.conf (ports the test picks, no cgroups:
proctrack/linuxproc, task/none), the controller's state and slurmd's spool, the logs. KillWait (how long scancel
waits between SIGTERM and SIGKILL) is 120 s, not Slurm's 30: a clean stop on this shared 2-core machine can take
longer than 30 s under load. Client commands find it
through SLURM_CONF (`cluster.env`). Why a part cannot run here is a skip reason, never a silent pass.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.federation import free_port

BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "scontrol")
INSTALL = "apt-get install slurmctld slurmd slurm-client munge (bash scripts/setup.sh --all)"
NODE = "localhost"


@dataclass
class SlurmCluster:
    root: Path
    conf: Path
    ctld_port: int
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(argv), capture_output=True, text=True, timeout=60, env=self.env, check=False)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}"
                         for p in sorted((self.root / "log").glob("*")))

    def stop(self) -> None:
        for proc in reversed(self.processes):  # slurmd, then slurmctld, then munged
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(5)  # the test cluster's state is thrown away: no need to wait for its saving
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
        self.processes.clear()


def unavailable() -> str | None:
    """Why a Slurm cluster cannot run here, or None."""
    missing = [b for b in BINARIES if shutil.which(b) is None and not Path(f"/usr/sbin/{b}").exists()]
    if missing:
        return f"needs Slurm and munge ({', '.join(missing)} missing): {INSTALL}"
    if os.geteuid() != 0:
        return "slurmd must run as root to start jobs as the user who submitted them"
    return None


def _binary(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


def _conf(root: Path, ctld_port: int, slurmd_port: int) -> str:
    return f"""ClusterName=flctltest
SlurmctldHost={NODE}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/munge/socket
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
PlugStackConfig={root}/plugstack.conf
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
ReturnToService=2
KillWait=120
MinJobAge=30
NodeName={NODE} NodeAddr=127.0.0.1 CPUs=16 RealMemory=8192 State=UNKNOWN
PartitionName=debug Nodes={NODE} Default=YES MaxTime=INFINITE State=UP
"""


@contextlib.contextmanager
def slurm_cluster() -> Iterator[SlurmCluster]:
    """Start the cluster and wait until its node is idle; stop every daemon after. A short root folder: the munge
    socket's path must fit in 107 bytes."""
    root = Path(tempfile.mkdtemp(prefix="flctl-slurm-"))
    for sub in ("munge", "state", "spool", "log"):
        (root / sub).mkdir(mode=0o700)
    (root / "munge" / "munge.key").write_bytes(os.urandom(1024))
    os.chmod(root / "munge" / "munge.key", 0o600)
    (root / "plugstack.conf").write_text("")
    conf = root / "slurm.conf"
    ctld_port = free_port()
    conf.write_text(_conf(root, ctld_port, free_port()))
    cluster = SlurmCluster(root, conf, ctld_port)
    try:
        munge = root / "munge"
        _start(cluster, [_binary("munged"), "--foreground", "--force", f"--socket={munge}/socket",
                         f"--key-file={munge}/munge.key", f"--pid-file={munge}/munged.pid",
                         f"--seed-file={munge}/seed", f"--log-file={root}/log/munged.log"], "munged")
        _wait((munge / "socket").exists, cluster, "munged did not create its socket")
        _start(cluster, [_binary("slurmctld"), "-D", "-i", "-f", str(conf)], "slurmctld")
        _wait(lambda: cluster.run("scontrol", "ping").returncode == 0, cluster, "slurmctld does not answer")
        _start(cluster, [_binary("slurmd"), "-D", "-f", str(conf), "-N", NODE], "slurmd")
        _wait(lambda: cluster.run("sinfo", "--noheader", "--format=%T").stdout.strip() == "idle", cluster,
              "the node did not become idle")
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


def _start(cluster: SlurmCluster, argv: list[str], name: str) -> None:
    log = open(cluster.root / "log" / f"{name}.out", "ab")  # noqa: SIM115 - the daemon's, closed when it ends
    cluster.processes.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                              env=cluster.env))


def _wait(ready: Callable[[], bool], cluster: SlurmCluster, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        dead = [str(p.args) for p in cluster.processes if p.poll() is not None]
        if dead or time.monotonic() > deadline:
            raise RuntimeError(f"{what} ({', '.join(map(str, dead)) or 'timed out'}); logs:\n{cluster.logs()}")
        time.sleep(0.3)
