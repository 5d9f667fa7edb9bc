"""Deploy targets behind one interface: a new target is its module and one line in the table.

The smallest possible target (`EchoTarget`, below, standing in for a new module) is added to
flctl.cloud.targets.TARGETS and nothing else: an inventory naming it validates, with its own block,
and `flctl deploy echo`, `deploy status`, `deploy stop` and `deploy logs` go through it by the same
CLI code as ssh, aws and azure.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel, ConfigDict, Field

from flctl.cloud import targets
from flctl.cloud.deploy_executor import STEP_ACTIONS, HostResult
from flctl.cloud.deploy_plan import Step
from flctl.cloud.deploy_state import DeploymentState, Record
from flctl.cloud.inventory import HostSpec, load_inventory
from flctl.cloud.local_connector import LocalConnector
from flctl.cloud.targets.base import Applied, Deployment, DeployTarget, Planned
from flctl.provisioner.errors import InputError
from tests.federation import make_federation
from tests.test_deploy_ssh import HOST_PYTHON, processes_under
from tests.test_deploy_ssh import flctl as flctl_binary

from .conftest import ROOT


# ---- the smallest possible target: what a new target's module holds ------------------------------------
class EchoBlock(BaseModel):
    """`echo:` — what the echo target says for the host."""

    model_config = ConfigDict(extra="forbid")

    greeting: str = Field(description="The word the host's node answers with.")


class EchoTarget(DeployTarget):
    """Runs nothing: every operation answers from the host's `echo:` block."""

    name: ClassVar[str] = "echo"
    spec: ClassVar[type[BaseModel] | None] = EchoBlock
    summary: ClassVar[str] = "Pretend to run the inventory's `provider: echo` hosts."

    def plan(self, deployment: Deployment, hosts: list[HostSpec]) -> Planned:
        return Planned(hosts=[self._result(h, "planned") for h in hosts])

    def apply(self, deployment: Deployment, hosts: list[HostSpec]) -> Applied:
        return Applied(hosts=[self._result(h, "deployed") for h in hosts])

    def status(self, deployment: Deployment, hosts: list[HostSpec]) -> list[HostResult]:
        return [self._result(h, "running") for h in hosts]

    def stop(self, deployment: Deployment, hosts: list[HostSpec]) -> list[HostResult]:
        return [self._result(h, "stopped") for h in hosts]

    def logs(self, deployment: Deployment, host: HostSpec, lines: int) -> str:
        return f"{self._greeting(host)} from {host.participant}\n"

    def destroy(self, deployment: Deployment, state: DeploymentState, records: list[Record]) -> list[
            tuple[Record, str]]:
        return []

    def _result(self, host: HostSpec, status: str) -> HostResult:
        return HostResult(host.participant, self.where(host), host.port, status, changes=[self._greeting(host)])

    def _greeting(self, host: HostSpec) -> str:
        return host.block_as(EchoBlock).greeting


@pytest.fixture
def echo(monkeypatch: pytest.MonkeyPatch) -> EchoTarget:
    """EchoTarget registered: the one table line a new target adds."""
    target = EchoTarget()
    monkeypatch.setitem(targets.TARGETS, target.name, target)
    return target


def write_inventory(path: Path, prod: Path, hosts: str) -> Path:
    path.write_text(f"api_version: 1\nkits: {prod}\nhosts:\n{hosts}")
    return path


ECHO_HOSTS = ("  - {participant: site-1, provider: echo, user: u, install_dir: /opt/a, echo: {greeting: hello}}\n"
              "  - {participant: site-2, provider: echo, user: u, install_dir: /opt/b, echo: {greeting: hi}}\n")


# ---- tests ----------------------------------------------------------------------------------------------
def test_an_inventory_naming_a_registered_target_validates_with_its_block(echo: EchoTarget, tmp_path: Path,
                                                                          local_kits: Any) -> None:
    """provider: echo is allowed once echo is in the table, and its `echo:` block is read by the target's schema."""
    # Execute
    inv = load_inventory(write_inventory(tmp_path / "inv.yml", local_kits.prod_dir, ECHO_HOSTS))
    # Assert
    assert [(h.provider, h.block) for h in inv.hosts] == [("echo", EchoBlock(greeting="hello")),
                                                         ("echo", EchoBlock(greeting="hi"))]
    assert inv.hosts[0].where == "echo"


def test_a_target_blocks_mistakes_name_their_line_and_field(echo: EchoTarget, tmp_path: Path,
                                                            local_kits: Any) -> None:
    """An unknown key in the block, a missing block and another target's block are each one problem."""
    # Prepare
    hosts = ("  - participant: site-1\n    provider: echo\n    user: u\n    install_dir: /opt/a\n"
             "    echo: {greeting: hello, loud: true}\n"
             "  - {participant: site-2, provider: echo, user: u, install_dir: /opt/b}\n"
             "  - {participant: localhost, address: h, user: u, install_dir: /opt/c, echo: {greeting: x}}\n")
    # Execute
    with pytest.raises(InputError) as caught:
        load_inventory(write_inventory(tmp_path / "inv.yml", local_kits.prod_dir, hosts))
    # Assert
    got = {(p.line, p.field): p.message for p in caught.value.problems}
    assert got[(8, "hosts[0].echo.loud")] == "unknown key 'loud'; allowed here: greeting"
    assert "needs an 'echo:' block" in got[(9, "hosts[1].provider")]
    assert "'echo' is only allowed with provider: echo" in got[(10, "hosts[2].echo")]


def test_an_unknown_provider_names_the_field_the_value_and_the_targets(echo: EchoTarget, tmp_path: Path,
                                                                       local_kits: Any) -> None:
    """provider: gcp is refused with its line, field and every registered target's name."""
    # Prepare
    hosts = "  - {participant: site-1, provider: gcp, user: u, install_dir: /opt/a}\n"
    # Execute
    with pytest.raises(InputError) as caught:
        load_inventory(write_inventory(tmp_path / "inv.yml", local_kits.prod_dir, hosts))
    # Assert
    [problem] = caught.value.problems
    assert (problem.line, problem.field) == (4, "hosts[0].provider")
    assert problem.message == "'gcp' is not a deploy target; use one of: ssh, local, aws, azure, slurm, echo"


def test_two_local_nodes_may_not_share_an_install_folder(tmp_path: Path, local_kits: Any) -> None:
    """Both `provider: local` hosts run on this machine: the same install_dir twice is refused with its line."""
    # Prepare
    hosts = "".join(f"  - {{participant: {name}, provider: local, user: me, install_dir: /opt/same}}\n"
                    for name in ("site-1", "site-2"))
    # Execute
    with pytest.raises(InputError) as caught:
        load_inventory(write_inventory(tmp_path / "inv.yml", local_kits.prod_dir, hosts))
    # Assert
    [problem] = caught.value.problems
    assert (problem.line, problem.field) == (5, "hosts[1].install_dir")
    assert "already installs into this folder on this host" in problem.message


def test_plan_apply_status_stop_and_logs_go_through_the_registered_target(echo: EchoTarget, flctl: Any,
                                                                          tmp_path: Path, local_kits: Any) -> None:
    """`flctl deploy echo` exists because echo is in the table, and every deploy command reaches EchoTarget."""
    # Prepare
    inventory = write_inventory(tmp_path / "inv.yml", local_kits.prod_dir, ECHO_HOSTS)
    # Execute
    planned = flctl("deploy", "echo", inventory, "--dry-run", "--json")
    applied = flctl("deploy", "echo", inventory, "site-2", "--json")
    status = flctl("deploy", "status", inventory, "--json")
    stop = flctl("deploy", "stop", inventory, "--json")
    logs = flctl("deploy", "logs", inventory, "site-2", "--json")
    listed = flctl("deploy", "--help")
    # Assert
    assert planned.code == 0, planned.stderr
    assert [(r["participant"], r["status"], r["changes"]) for r in planned.json()] == [
        ("site-1", "planned", ["hello"]), ("site-2", "planned", ["hi"])]
    assert applied.code == 0, applied.stderr
    assert [(r["participant"], r["status"]) for r in applied.json()] == [("site-2", "deployed")]
    assert {r["status"] for r in status.json()} == {"running"}
    assert {r["status"] for r in stop.json()} == {"stopped"}
    assert logs.json()["log"] == "hi from site-2\n"
    assert "echo" in listed.stdout and "Pretend to run" in listed.stdout


def test_the_local_target_reaches_this_machine_without_ssh(flctl: Any, tmp_path: Path, local_kits: Any) -> None:
    """A `provider: local` host is probed here, through the local connector: nothing is installed yet."""
    # Prepare
    install = tmp_path / "install"
    hosts = (f"  - {{participant: site-1, provider: local, user: me, install_dir: {install}, "
             f"python: {HOST_PYTHON}, min_free_mb: 1}}\n")
    inventory = write_inventory(tmp_path / "inv.yml", local_kits.prod_dir, hosts)
    # Execute
    status = flctl("deploy", "status", inventory, "--json")
    # Assert
    assert status.code == 1, status.stderr
    [result] = status.json()
    assert (result["participant"], result["address"], result["status"]) == ("site-1", "localhost", "not installed")


def test_the_local_target_runs_a_federation_on_this_machine(tmp_path: Path, wheel_cache: Path,
                                                          host_venvs: Path) -> None:
    """`flctl deploy local` installs and starts a server and a site here, healthy; status and stop reach them."""
    # Prepare
    if Path("/run/systemd/system").is_dir():
        pytest.skip("this machine runs systemd: the local target would install system units here")
    fed = make_federation(tmp_path, sites=1)
    hosts = "".join(f"  - {{participant: {name}, provider: local, user: me, install_dir: {tmp_path / name}, "
                    f"python: {HOST_PYTHON}, venv_root: {host_venvs}, min_free_mb: 50}}\n"
                    for name in ("localhost", "site-1"))
    inventory = tmp_path / "inv.yml"
    inventory.write_text(f"api_version: 1\nkits: {fed.prod}\nadmin_kit: {fed.admin}\nhosts:\n{hosts}")
    env = {"FLCTL_WHEEL_CACHE": str(wheel_cache)}
    try:
        # Execute
        deployed = flctl_binary("deploy", "local", inventory, "--json", env=env)
        status = flctl_binary("deploy", "status", inventory, "--json", env=env)
        stopped = flctl_binary("deploy", "stop", inventory, "--json", env=env)
    finally:
        for pid in processes_under(tmp_path):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    # Assert
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    assert [(r["participant"], r["status"]) for r in json.loads(deployed.stdout)] == [
        ("localhost", "deployed"), ("site-1", "deployed")]
    assert {r["status"] for r in json.loads(status.stdout)} == {"running"}, status.stdout
    assert {r["status"] for r in json.loads(stopped.stdout)} == {"stopped"}, stopped.stdout


def test_the_local_connector_writes_files_and_runs_commands_here(tmp_path: Path) -> None:
    """put_file writes with the mode asked for; run gives the exit code and both outputs."""
    # Prepare
    conn = LocalConnector("here")
    target = tmp_path / "run.sh"
    # Execute
    with conn:
        conn.put_file(b"echo out; echo err >&2; exit 3\n", str(target), 0o750)
        result = conn.run(f"sh {target}")
    # Assert
    assert target.stat().st_mode & 0o777 == 0o750
    assert (result.exit_code, result.stdout, result.stderr) == (3, "out\n", "err\n")


def test_every_step_type_has_exactly_one_action() -> None:
    """The executor finds what to do by the step's type: every kind of Step has an action."""
    # Execute / Assert
    assert set(STEP_ACTIONS) == set(Step.__subclasses__())
    assert len({cls.kind for cls in STEP_ACTIONS}) == len(STEP_ACTIONS)


def test_no_code_outside_the_target_modules_switches_on_a_target_name() -> None:
    """cloud/ and console/cli/deploy/ never compare with a target's name: that lives in cloud/targets/ only."""
    # Prepare
    names = "|".join(targets.TARGETS)
    switch = re.compile(rf"""[=!]=\s*["']({names})["']|["']({names})["']\s*[=!]=|in\s*[({{\[]\s*["']({names})["']""")
    files = [*ROOT.joinpath("cloud").glob("*.py"), *ROOT.joinpath("console", "cli", "deploy").glob("*.py")]
    # Execute
    found = [f"{path.name}:{n}: {line.strip()}" for path in files
             for n, line in enumerate(path.read_text().splitlines(), 1) if switch.search(line)]
    # Assert
    assert files and found == []


def test_deploy_help_imports_no_cloud_sdk_and_no_ssh_library() -> None:
    """`flctl deploy --help` builds every target's command without importing boto3, azure or paramiko."""
    # Prepare
    code = ("import sys\nfrom flctl.console.cli.app import main\nsys.argv = ['flctl', 'deploy', '--help']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore', 'azure', 'paramiko')),"
            " file=sys.__stderr__)\n")
    # Execute
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    # Assert
    assert "aws" in out.stdout and "azure" in out.stdout
    assert json.loads(out.stderr.strip().splitlines()[-1].replace("'", '"')) == []
