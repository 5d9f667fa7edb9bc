"""`flctl deploy slurm` on a real one-node Slurm cluster (tests/slurm_cluster.py: munged, slurmctld and slurmd of
Debian's slurm-wlm 22.05 on 127.0.0.1): kits and scripts rolled out over SSH to a shared folder and submitted with
sbatch run the server and two sites as jobs, hello-numpy finishes through them with `flctl job submit`, `status`
and `stop` go through squeue and scancel, and a site told that its time limit is near (SIGUSR1, as
`--signal=B:USR1@120` sends it) stops cleanly and requeues its own job, which comes back under the same id.
One federation for all of it: the machine's 2 cores are shared."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from flctl.cloud.node_probe import alive
from tests.federation import FLCTL, Federation, free_port, make_federation
from tests.slurm_cluster import SlurmCluster, slurm_cluster, unavailable
from tests.sshd import SshHost, make_key

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(unavailable() is not None, reason=unavailable() or "")


@pytest.fixture(scope="module")
def cluster() -> Iterator[SlurmCluster]:
    with slurm_cluster() as started:
        try:
            yield started
        finally:
            _cancel_all(started)


def _cancel_all(cluster: SlurmCluster) -> None:
    """Cancel every job of this test cluster and wait until they are gone (slurmd left alone would keep them)."""
    cluster.run("scancel", "--full", "--user=root")
    deadline = time.monotonic() + 60
    while cluster.run("squeue", "--noheader").stdout.strip() and time.monotonic() < deadline:
        time.sleep(0.5)


def flctl(cluster: SlurmCluster, *args: str | Path, env: dict[str, str] | None = None,
          timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FLCTL, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          env={**cluster.env, **(env or {})}, check=False)


def slurm_status(cluster: SlurmCluster, folder: Path) -> tuple[int, dict[str, dict[str, str]]]:
    done = flctl(cluster, "deploy", "slurm", "status", folder, "--json")
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, {job["participant"]: job for job in json.loads(done.stdout)}


def wait_state(cluster: SlurmCluster, folder: Path, participant: str, states: set[str],
               timeout: float = 90) -> dict[str, str]:
    """The participant's job once squeue shows it in one of `states`."""
    deadline = time.monotonic() + timeout
    while True:
        job = slurm_status(cluster, folder)[1][participant]
        if job["state"] in states:
            return job
        assert time.monotonic() < deadline, f"{participant}'s job is {job}, not {states}; {cluster.logs()}"
        time.sleep(0.5)


def test_rolled_out_over_ssh_the_server_and_two_sites_run_as_jobs_hello_numpy_finishes_and_they_stop(
        cluster: SlurmCluster, tmp_path: Path) -> None:
    """`rollout --to root@LOGIN:/shared --server --submit` through a real sshd standing in for the login node: the
    kits (keys 0600, kit folders 0700, no admin kit, a site's own local/ file kept) and scripts reading them,
    verified and submitted there (sbatch) -> `status` all RUNNING (squeue) -> hello-numpy FINISHED through them ->
    a site told its time limit is near requeues its own job and comes back under the same id -> `stop` (scancel):
    every node stopped cleanly, the queue empty. A wrong --flctl is found before anything is submitted; a second
    submit is refused while the jobs are queued."""
    federation = make_federation(tmp_path, sites=2)
    key = make_key(tmp_path / "id_ed25519")
    (tmp_path / "login").mkdir()
    login = SshHost(tmp_path / "login", free_port(), make_key(tmp_path / "login" / "host_key"))
    login.start(key.with_suffix(".pub"), extra_config=f"SetEnv SLURM_CONF={cluster.conf}\n")
    known = tmp_path / "known_hosts"
    known.write_text(login.known_hosts_line())
    shared = tmp_path / "shared"
    folder = shared / "slurm"
    (shared / "kits" / "site-2" / "local").mkdir(parents=True)
    own_policy = "# the site's own policy, kept\n" + (federation.kit("site-2") / "local" / "policy.yml").read_text()
    (shared / "kits" / "site-2" / "local" / "policy.yml").write_text(own_policy)
    ssh = ("--port", str(login.port), "--key", str(key), "--known-hosts", str(known))
    try:
        done = flctl(cluster, "deploy", "slurm", "rollout", federation.prod, "--to",
                     f"root@127.0.0.1:{tmp_path / 'other'}", *ssh, "--flctl", "/nowhere/flctl", "--submit")
        assert done.returncode == 1 and "/nowhere/flctl is not there" in done.stderr, done.stderr
        assert cluster.run("squeue", "--noheader").stdout.strip() == ""

        done = flctl(cluster, "deploy", "slurm", "rollout", federation.prod, "--to", f"root@127.0.0.1:{shared}",
                     *ssh, "--server", "--flctl", FLCTL, "--time", "1-00:00:00", "--submit", "--json")
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout)
        assert result["kits"] == [str(shared / "kits" / n) for n in ("localhost", "site-1", "site-2")]
        assert result["kept"] == [str(shared / "kits" / "site-2" / "local" / "policy.yml")]
        assert sorted(p.name for p in (shared / "kits").iterdir()) == ["localhost", "site-1", "site-2"]
        assert (shared / "kits" / "site-1").stat().st_mode & 0o777 == 0o700
        assert (shared / "kits" / "site-1" / "startup" / "site.key").stat().st_mode & 0o777 == 0o600
        assert (shared / "kits" / "site-2" / "local" / "policy.yml").read_text() == own_policy
        assert f"KIT={shared / 'kits' / 'site-1'}\n" in (folder / "site-1.sbatch").read_text()
        server_script = (folder / "localhost.sbatch").read_text()
        assert "#SBATCH --nodelist=localhost" in server_script and "#SBATCH --signal=B:USR1@120" in server_script
        submitted = {job["participant"]: job for job in result["jobs"]}
        assert list(submitted) == ["localhost", "site-1", "site-2"]
        assert all(job["job_id"].isdigit() and job["state"] == "SUBMITTED" for job in submitted.values())
        again = flctl(cluster, "deploy", "slurm", "submit", folder)
        assert again.returncode == 1 and "already queued" in again.stderr

        federation.wait_online(["site-1", "site-2"], timeout=120)
        code, jobs = slurm_status(cluster, folder)
        assert code == 0, jobs
        assert {p: (j["job_id"], j["state"], j["node"]) for p, j in jobs.items()} == \
            {p: (submitted[p]["job_id"], "RUNNING", "localhost") for p in submitted}
        for name in submitted:
            assert alive(shared / "kits" / f"workspace-{name}")[0], name

        job = federation.flctl("job", "submit", ROOT / "playbooks" / "jobs" / "hello-numpy", "--watch",
                               timeout=300)
        assert job.returncode == 0, job.stdout[-2000:] + job.stderr[-2000:]

        requeue_near_the_time_limit(cluster, folder, submitted["site-1"]["job_id"], federation, shared)
        stop_cleanly(cluster, folder, submitted, shared)
    finally:
        login.stop()
        _cancel_all(cluster)


def requeue_near_the_time_limit(cluster: SlurmCluster, folder: Path, site: str, federation: Federation,
                                shared: Path) -> None:
    """SIGUSR1 to site-1's batch shell: the site stops cleanly, its job is requeued under its id (released at once
    if Slurm holds it, as an admin would), and the site is back."""
    # The time limit's warning, as Slurm sends it (`--signal=B:USR1@120`: to the batch shell only).
    assert cluster.run("scancel", "--signal=USR1", "--batch", site).returncode == 0
    out = folder / "logs" / f"flctl-fedtest-site-1-{site}.out"
    back = wait_requeued(cluster, folder, "site-1", out)
    assert back["job_id"] == site
    federation.wait_online(["site-1"], timeout=120)
    assert alive(shared / "kits" / "workspace-site-1")[0]


def wait_requeued(cluster: SlurmCluster, folder: Path, participant: str, out: Path,
                  timeout: float = 200) -> dict[str, str]:
    """The participant's job once it runs again after requeueing itself: its log says the node stopped cleanly,
    then that it requeues, then the next start (`restart 1`). Slurm may hold a requeued job (reason BeginTime, about
    two minutes) or show it PENDING with reason None until its scheduler looks again; one pending for a few seconds
    is released here with `scontrol update StartTime=now`, as an admin would."""
    deadline = time.monotonic() + timeout
    pending_since: float | None = None
    while True:
        log = out.read_text() if out.exists() else ""
        job = slurm_status(cluster, folder)[1][participant]
        if job["state"] == "RUNNING" and "restart 1" in log:
            stopped, requeued = log.find(f"{participant} stopped (exit 0)"), log.find("the time limit is near: requeue")
            assert -1 < stopped < requeued < log.find("restart 1"), log
            return job
        if job["state"] != "PENDING":
            pending_since = None
        elif pending_since is None:
            pending_since = time.monotonic()
        elif time.monotonic() - pending_since > 3:  # held (BeginTime) or not yet looked at by the scheduler (None)
            # Not sooner: slurmd refuses a credential made in the second its job was requeued ("Job credential
            # revoked", and the job ends): that is what Slurm's own two-minute hold guards against.
            cluster.run("scontrol", "update", f"JobId={job['job_id']}", "StartTime=now")
        assert time.monotonic() < deadline, f"{participant}'s job is {job}; its log:\n{log}\n{cluster.logs()}"
        time.sleep(0.5)


def stop_cleanly(cluster: SlurmCluster, folder: Path, submitted: dict[str, dict[str, str]], shared: Path) -> None:
    """`stop`: every job cancelled, the queue empty, each node's log saying it stopped with exit 0."""
    done = flctl(cluster, "deploy", "slurm", "stop", folder, "--timeout", "240", "--json", timeout=300)
    logs = "".join(f"--- {p.name}\n{p.read_text()[-1500:]}" for p in sorted((folder / "logs").iterdir()))
    assert done.returncode == 0, done.stderr + logs
    stopped = {job["participant"]: job for job in json.loads(done.stdout)}
    assert {p: (j["job_id"], j["state"]) for p, j in stopped.items()} == \
        {p: (submitted[p]["job_id"], "CANCELLED") for p in submitted}
    assert cluster.run("squeue", "--noheader").stdout.strip() == ""
    for name in submitted:
        assert not alive(shared / "kits" / f"workspace-{name}")[0], name
    code, jobs = slurm_status(cluster, folder)
    assert code == 1 and {j["state"] for j in jobs.values()} == {"NOT QUEUED"}
    for name in submitted:  # scancel's SIGTERM: each node ended its work and exited 0
        log = (folder / "logs" / f"flctl-fedtest-{name}-{submitted[name]['job_id']}.out").read_text()
        assert f"{name} stopped (exit 0)" in log, log[-1000:]  # slurmstepd's CANCELLED line may follow


def test_a_controller_that_does_not_answer_is_exit_3(cluster: SlurmCluster, tmp_path: Path) -> None:
    """squeue with a slurm.conf whose controller port is closed, and no Slurm on PATH: exit 3, one sentence."""
    closed = tmp_path / "slurm.conf"  # short timeouts: Slurm's clients retry a closed port for a while
    text = cluster.conf.read_text().replace(f"SlurmctldPort={cluster.ctld_port}", f"SlurmctldPort={free_port()}")
    closed.write_text(text + "MessageTimeout=2\nTCPTimeout=1\n")
    federation = make_federation(tmp_path, sites=1)
    folder = tmp_path / "slurm"
    assert flctl(cluster, "deploy", "slurm", federation.prod, "-o", folder).returncode == 0
    done = flctl(cluster, "deploy", "slurm", "status", folder, env={"SLURM_CONF": str(closed)}, timeout=200)
    assert done.returncode == 3, done.stderr
    assert "cannot reach the Slurm controller" in done.stderr and "Traceback" not in done.stderr
    done = flctl(cluster, "deploy", "slurm", "stop", folder, env={"PATH": os.path.dirname(FLCTL)})
    assert done.returncode == 3 and "squeue is not installed here" in done.stderr, done.stderr


@pytest.mark.skipif(os.environ.get("FLCTL_SLURM_TIME_LIMIT_TEST") != "1",
                    reason="waits for Slurm's own time-limit signal, about a minute: FLCTL_SLURM_TIME_LIMIT_TEST=1")
def test_slurm_itself_signals_the_time_limit_and_the_site_requeues_its_job(cluster: SlurmCluster,
                                                                           tmp_path: Path) -> None:
    """A site's job with a 3-minute limit: Slurm sends SIGUSR1 (--signal=B:USR1@120, up to a minute early); the
    site stops cleanly and its job is requeued under its id. Nothing is sent by hand."""
    federation = make_federation(tmp_path, sites=1)
    folder = tmp_path / "slurm"
    assert flctl(cluster, "deploy", "slurm", federation.prod, "-o", folder, "--flctl", FLCTL, "--time", "3",
                 ).returncode == 0
    try:
        federation.start("localhost")
        done = flctl(cluster, "deploy", "slurm", "submit", folder, "--json")
        assert done.returncode == 0, done.stderr
        site = json.loads(done.stdout)[0]["job_id"]
        federation.wait_online(["site-1"], timeout=120)
        out = folder / "logs" / f"flctl-fedtest-site-1-{site}.out"
        assert wait_requeued(cluster, folder, "site-1", out, timeout=300)["job_id"] == site
    finally:
        _cancel_all(cluster)
        federation.stop_all()


def test_an_inventory_of_slurm_hosts_is_applied_shown_logged_and_stopped(cluster: SlurmCluster,
                                                                         tmp_path: Path) -> None:
    """The slurm deploy target: an inventory whose server and site are `provider: slurm` hosts behind a real sshd
    standing in for the login node. `flctl deploy slurm INVENTORY` rolls each kit out to INSTALL_DIR/PARTICIPANT
    and sbatches it over SSH (the server first) -> the site comes online -> `flctl deploy status INVENTORY`: both
    running (squeue over SSH) -> `flctl deploy logs INVENTORY site-1`: the job's output file -> applying again
    leaves the queued jobs alone -> `flctl deploy stop INVENTORY` (scancel over SSH): the queue empty, each node
    stopped cleanly. `flctl deploy upgrade INVENTORY` stops each job cleanly, rolls out and submits it again."""
    federation = make_federation(tmp_path, sites=1)
    key = make_key(tmp_path / "id_ed25519")
    (tmp_path / "login").mkdir()
    login = SshHost(tmp_path / "login", free_port(), make_key(tmp_path / "login" / "host_key"))
    login.start(key.with_suffix(".pub"), extra_config=f"SetEnv SLURM_CONF={cluster.conf}\n")
    (tmp_path / "known_hosts").write_text(login.known_hosts_line())
    shared = tmp_path / "shared"
    host = (f"provider: slurm, address: 127.0.0.1, port: {login.port}, user: root, key_file: {key}, "
            f"install_dir: {shared}")
    inventory = tmp_path / "hpc.yml"
    inventory.write_text(
        f"api_version: 1\nkits: {federation.prod}\nknown_hosts: known_hosts\nhosts:\n"
        f"  - {{participant: localhost, {host}, slurm: {{flctl: {FLCTL}, time_limit: '1-00:00:00'}}}}\n"
        f"  - {{participant: site-1, {host}, slurm: {{flctl: {FLCTL}, partition: debug, gpus: 0}}}}\n")
    try:
        done = flctl(cluster, "deploy", "slurm", inventory, "--json", timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        applied = {r["participant"]: r for r in json.loads(done.stdout)}
        assert {p: r["status"] for p, r in applied.items()} == {"localhost": "deployed", "site-1": "deployed"}
        site_script = (shared / "site-1" / "slurm" / "site-1.sbatch").read_text()
        assert f"KIT={shared / 'site-1' / 'kits' / 'site-1'}\n" in site_script
        assert "#SBATCH --partition=debug\n" in site_script and "#SBATCH --time=7-00:00:00\n" in site_script
        assert "#SBATCH --nodelist=localhost\n" in (shared / "localhost" / "slurm" / "localhost.sbatch").read_text()
        assert (shared / "site-1" / "kits" / "site-1" / "startup" / "site.key").stat().st_mode & 0o777 == 0o600

        federation.wait_online(["site-1"], timeout=120)
        done = flctl(cluster, "deploy", "status", inventory, "--json")
        assert done.returncode == 0, done.stdout + done.stderr
        assert [(r["participant"], r["status"], r["ok"]) for r in json.loads(done.stdout)] == \
            [("localhost", "running", True), ("site-1", "running", True)]

        done = flctl(cluster, "deploy", "logs", inventory, "site-1", "--lines", "50")
        assert done.returncode == 0, done.stderr
        assert "flctl: site site-1 starting on" in done.stdout, done.stdout

        again = flctl(cluster, "deploy", "slurm", "apply", inventory, "--json")
        assert again.returncode == 0, again.stderr
        assert {r["status"] for r in json.loads(again.stdout)} == {"unchanged"}
        second = upgrade(cluster, inventory)
        federation.wait_online(["site-1"], timeout=120)

        done = flctl(cluster, "deploy", "stop", inventory, "--json", timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
        assert {r["participant"]: r["status"] for r in json.loads(done.stdout)} == \
            {"localhost": "stopped", "site-1": "stopped"}
        assert cluster.run("squeue", "--noheader").stdout.strip() == ""
        for name in ("localhost", "site-1"):  # each node's newest job ended its work and exited 0
            log = (shared / name / "slurm" / "logs" / f"flctl-fedtest-{name}-{second[name]}.out").read_text()
            assert f"{name} stopped (exit 0)" in log, log[-1000:]
        done = flctl(cluster, "deploy", "status", inventory, "--json")
        assert done.returncode == 1 and {r["status"] for r in json.loads(done.stdout)} == {"not running"}
    finally:
        login.stop()
        _cancel_all(cluster)


def slurm_jobs(cluster: SlurmCluster) -> dict[str, str]:
    """The queued jobs' ids by participant (the job name's last part)."""
    lines = cluster.run("squeue", "--noheader", "--format=%i|%j").stdout.split()
    return {name.removeprefix("flctl-fedtest-"): job for job, name in (line.split("|") for line in lines)}


def upgrade(cluster: SlurmCluster, inventory: Path) -> dict[str, str]:
    """`flctl deploy upgrade`: each job stopped, the kit rolled out again and a new job submitted; the new ids."""
    first = slurm_jobs(cluster)
    done = flctl(cluster, "deploy", "upgrade", inventory, "--json", timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    upgraded = {r["participant"]: r for r in json.loads(done.stdout)}
    assert {p: (r["status"], r["changes"][0]) for p, r in upgraded.items()} == \
        {p: ("deployed", f"job {first[p]} stopped") for p in ("localhost", "site-1")}
    second = slurm_jobs(cluster)
    assert set(second) == {"localhost", "site-1"} and set(second.values()).isdisjoint(first.values())
    return second
