"""Rollout planning (pure): what a host lacks becomes steps; a host that runs the release gets none."""

from __future__ import annotations

from pathlib import Path

import pytest

from flctl.cloud.deploy_errors import HostUnsuitable
from flctl.cloud.deploy_plan import Desired, Observed, kit_checksums, plan_host, service_mode
from flctl.cloud.inventory import HostSpec

HOST = HostSpec(participant="site-1", address="10.0.0.1", user="u", install_dir="/opt/flctl")
DESIRED = Desired("site-1", {"startup/site.crt": "a" * 64, "startup/node.yml": "b" * 64},
                  {"flctl-0.1.0-py3-none-any.whl": "c" * 64, "numpy-2.whl": "d" * 64}, "python3", False)


def fresh(**changes: object) -> Observed:
    base = {"python": "3.11", "glibc": "2.36", "machine": "x86_64", "free_mb": 10_000, "writable": True,
            "systemd": False, "uid": 1000}
    return Observed.from_probe({**base, **changes})


def installed(**changes: object) -> Observed:
    """A host that runs DESIRED already."""
    state: dict[str, object] = {"current": DESIRED.release_id, "release": DESIRED.manifest(),
                                "wheels": dict(DESIRED.wheels), "venvs": [DESIRED.venv_id], "mode": "process",
                                "node_pid": 42, "supervisor_pid": 41}
    return fresh(**{**state, **changes})


def kinds(observed: Observed, desired: Desired = DESIRED) -> list[str]:
    return [s.kind for s in plan_host(HOST, desired, observed, "process").steps]


def test_a_new_host_gets_every_step_in_order() -> None:
    """Nothing installed: upload wheels, make the venv, upload and verify the kit, service, switch, start, wait."""
    # Execute
    plan = plan_host(HOST, DESIRED, fresh(), "process")
    # Assert
    assert [s.kind for s in plan.steps] == ["upload_wheels", "create_venv", "upload_kit", "verify_kit",
                                            "install_service", "switch", "start", "wait_healthy"]
    assert plan.steps[0].files == ("flctl-0.1.0-py3-none-any.whl", "numpy-2.whl")


def test_a_host_running_the_release_needs_nothing() -> None:
    """Same checksums and a live node: an empty plan."""
    # Execute / Assert
    assert kinds(installed()) == []


def test_a_stopped_node_is_only_started() -> None:
    """Same release but no node process: install the service and start, nothing uploaded."""
    # Execute / Assert
    assert kinds(installed(node_pid=None)) == ["install_service", "start", "wait_healthy"]


def test_a_changed_kit_file_is_named_and_reuses_wheels_and_venv() -> None:
    """One kit file changed: only the kit is uploaded (its changed file named), the node restarted."""
    # Prepare
    desired = Desired("site-1", {**DESIRED.kit_files, "startup/node.yml": "e" * 64}, DESIRED.wheels, "python3", False)
    # Execute
    plan = plan_host(HOST, desired, installed(), "process")
    # Assert
    assert [s.kind for s in plan.steps] == ["upload_kit", "verify_kit", "install_service", "stop", "switch",
                                            "start", "wait_healthy"]
    assert plan.steps[0].files == ("startup/node.yml",)
    assert "1 changed: startup/node.yml" in plan.steps[0].detail
    assert desired.venv_id == DESIRED.venv_id and desired.release_id != DESIRED.release_id


def test_a_new_wheel_uploads_only_that_wheel_and_makes_a_new_venv() -> None:
    """A new flctl wheel: one upload, a new venv, a new release."""
    # Prepare
    desired = Desired("site-1", DESIRED.kit_files, {**DESIRED.wheels, "flctl-0.1.0-py3-none-any.whl": "f" * 64},
                      "python3", False)
    # Execute
    plan = plan_host(HOST, desired, installed(), "process")
    # Assert
    assert plan.steps[0].files == ("flctl-0.1.0-py3-none-any.whl",)
    assert plan.steps[1].kind == "create_venv"


@pytest.mark.parametrize(("observed", "fragment"), [
    (fresh(python="3.9"), "is Python 3.9; flctl needs 3.11"),
    (fresh(free_mb=10), "only 10 MB free"),
    (fresh(writable=False), "cannot write /opt/flctl"),
])
def test_an_unsuitable_host_is_refused_in_one_sentence(observed: Observed, fragment: str) -> None:
    """Old Python, a full disk and an unwritable folder are refused before anything is planned."""
    # Execute / Assert
    with pytest.raises(HostUnsuitable, match=fragment):
        plan_host(HOST, DESIRED, observed, "process")


def test_systemd_is_used_only_with_root_or_sudo() -> None:
    """systemd needs the host to run it and root or passwordless sudo that the inventory allows."""
    # Execute / Assert
    with_sudo = HOST.model_copy(update={"sudo": True})
    assert service_mode(HOST, fresh(systemd=True), sudo_ok=True) == "process"
    assert service_mode(with_sudo, fresh(systemd=True), sudo_ok=True) == "systemd"
    assert service_mode(with_sudo, fresh(systemd=True), sudo_ok=False) == "process"
    assert service_mode(HOST, fresh(systemd=True, uid=0), sudo_ok=False) == "systemd"
    assert service_mode(with_sudo, fresh(systemd=False, uid=0), sudo_ok=True) == "process"


def test_kit_checksums_cover_every_file_but_the_workspace(tmp_path: Path) -> None:
    """A kit's checksums list its files by relative path and leave a local workspace out."""
    # Prepare
    (tmp_path / "startup").mkdir()
    (tmp_path / "startup" / "a.txt").write_bytes(b"a")
    (tmp_path / "workspace").mkdir()
    (tmp_path / "workspace" / "node.log").write_bytes(b"log")
    # Execute / Assert
    assert kit_checksums(tmp_path) == {
        "startup/a.txt": "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb"}
