"""`flctl play` over three kinds of host at once: the server on a real sshd (provider ssh), site-1 on a machine
made in moto's EC2 (provider aws), site-2 on one made through the local Azure Resource Manager stand-in (provider
azure). The cloud machines exist only in their stand-ins, so a second real sshd plays both (the inventory's
ssh_config sends their addresses there, as a bastion would) and accepts exactly the keys flctl made for them.
Azure refuses `root`, so site-2 logs in as this machine's unprivileged user with the system Python (3.11, the
wheels of the tests' cache); it runs only where that user exists (this project's test machine and CI image).
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.azure_arm import ArmServer
from tests.federation import free_port, project_text
from tests.moto_server import MotoServer
from tests.sshd import SshHost, make_key, start_hosts
from tests.test_deploy_ssh import HOST_PYTHON, flctl, processes_under

AZURE_USER = "cloudsdk"
SYSTEM_PYTHON = "/usr/bin/python3"


@dataclass
class CloudPlay:
    root: Path
    azure_dir: Path
    playbook: Path
    env: dict[str, str]

    def run(self, *args: str) -> object:
        return flctl("play", self.playbook, *args, env=self.env, timeout=500)


def _azure_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(AZURE_USER)
    except KeyError:
        pytest.skip(f"needs the unprivileged user {AZURE_USER} (this project's test machine and CI image)")


@pytest.fixture(scope="module")
def cloud_play(tmp_path_factory: pytest.TempPathFactory, wheel_cache: Path, host_venvs: Path) -> Iterator[CloudPlay]:
    user = _azure_user()
    root = tmp_path_factory.mktemp("play-cloud")
    # site-2's machine: a folder its user can reach (the test's temporary folders are root's alone)
    azure_dir = Path(tempfile.mkdtemp(prefix="flctl-play-azure-", dir="/tmp"))
    azure_dir.chmod(0o755)
    os.chown(azure_dir, user.pw_uid, user.pw_gid)
    key = make_key(root / "id_ed25519")
    (root / "authorized_keys").write_text(key.with_suffix(".pub").read_text())
    server_host = start_hosts(root, 1, root / "authorized_keys")[0]
    (root / "known_hosts").write_text(server_host.known_hosts_line())
    state = root / "play.play"
    # sshd reads authorized_keys files as the user logging in, and site-2's user cannot reach the keys flctl makes
    # under root's temporary folder: a command run as root hands sshd those keys instead. sshd runs such a command
    # only from a folder no one else may write to, all the way up (so not under /tmp).
    command_dir = Path(tempfile.mkdtemp(prefix="flctl-play-keys-", dir="/run"))
    command = command_dir / "keys.sh"
    command.write_text(f"#!/bin/sh\ncat {state / 'deploy' / 'keys'}/*.pub 2>/dev/null\nexit 0\n")
    command.chmod(0o755)
    command_dir.chmod(0o755)
    machines = SshHost(root / "machines", free_port(), make_key(_mkdir(root / "machines") / "host_key"))
    machines.start([state / "deploy" / "keys" / f"{name}.pub" for name in ("site-1", "site-2")],
                   extra_config=f"AuthorizedKeysCommand {command} %u\nAuthorizedKeysCommandUser root\n"
                                "UsePAM yes\n")  # the user's password is locked ('!'): without PAM sshd refuses it
    (root / "ssh_config").write_text(f"Host *\n  HostName 127.0.0.1\n  Port {machines.port}\n")
    (root / "project.yml").write_text(project_text("playcloud", free_port(), sites=2))
    moto = MotoServer(root / "moto.log")
    arm = ArmServer(_mkdir(root / "arm"))
    image = moto.client().describe_images()["Images"][0]["ImageId"]  # type: ignore[attr-defined]
    playbook = root / "play.yml"
    playbook.write_text(
        "api_version: 1\nproject: project.yml\nparallel: 3\ninventory:\n  known_hosts: known_hosts\n"
        "  ssh_config: ssh_config\n  health_timeout_s: 90\n  hosts:\n"
        f"    - participant: localhost\n      address: 127.0.0.1\n      port: {server_host.port}\n      user: root\n"
        f"      key_file: {key}\n      python: {HOST_PYTHON}\n      install_dir: {server_host.root / 'opt'}\n"
        f"      venv_root: {host_venvs}\n      min_free_mb: 50\n"
        f"    - participant: site-1\n      provider: aws\n      user: root\n      python: {HOST_PYTHON}\n"
        f"      install_dir: {root / 'aws-machine'}\n      venv_root: {host_venvs}\n      min_free_mb: 50\n"
        f"      aws: {{region: eu-west-1, image: {image}, instance_type: t3.small, ssh_cidrs: [203.0.113.7/32]}}\n"
        f"    - participant: site-2\n      provider: azure\n      user: {AZURE_USER}\n      python: {SYSTEM_PYTHON}\n"
        f"      install_dir: {azure_dir / 'opt'}\n      venv_root: {azure_dir / 'venvs'}\n      min_free_mb: 50\n"
        "      azure: {subscription: 00000000-0000-0000-0000-0000000000aa, location: westeurope, "
        f"resource_group: fl-play, ssh_cidrs: [203.0.113.7/32], arm_endpoint: {arm.url}}}\n"
        "checks: {preflight: false}\n")
    env = {**moto.env(), **arm.identity_env(), "FLCTL_WHEEL_CACHE": str(wheel_cache)}
    try:
        yield CloudPlay(root, azure_dir, playbook, env)
    finally:
        if (state / "inventory.yml").exists():
            flctl("deploy", "stop", state / "inventory.yml", env=env)
        for pid in processes_under(root) + processes_under(azure_dir):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for sshd in (server_host, machines):
            sshd.stop()
        moto.stop()
        arm.stop()
        shutil.rmtree(azure_dir, ignore_errors=True)
        shutil.rmtree(command_dir, ignore_errors=True)


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_a_play_over_ssh_aws_and_azure_hosts_ends_verified(cloud_play: CloudPlay) -> None:
    """The machines are made in EC2 and Azure, every node rolled out and healthy, hello-numpy finished; a second
    run does nothing."""
    # Execute
    out = cloud_play.run("--json")
    again = cloud_play.run("--json")
    # Assert
    assert out.returncode == 0, out.stdout + out.stderr  # type: ignore[attr-defined]
    result = json.loads(out.stdout)  # type: ignore[attr-defined]
    assert [(r["participant"], r["state"]) for r in result["participants"]] == [
        ("localhost", "verified"), ("site-1", "verified"), ("site-2", "verified")]
    assert [j["status"] for j in result["jobs"]] == ["FINISHED"]
    machines = json.loads((cloud_play.root / "play.play" / "deploy" / "state.json").read_text())["machines"]
    assert {name: m["provider"] for name, m in machines.items()} == {"site-1": "aws", "site-2": "azure"}
    assert again.returncode == 0, again.stderr  # type: ignore[attr-defined]
    assert json.loads(again.stdout)["nothing_to_do"] is True  # type: ignore[attr-defined]
