"""Inventory files: valid ones load with paths resolved; invalid ones name the file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from flctl.cloud.inventory import load_inventory
from flctl.provisioner.errors import InputError

EXAMPLE = Path(__file__).resolve().parent.parent / "playbooks" / "rollouts" / "inventory.yml"


@pytest.fixture
def kits(tmp_path: Path) -> Path:
    """A fake prod folder with a server, a site and an admin kit (only their startup/ folders)."""
    prod = tmp_path / "ws" / "proj" / "prod_00"
    for name in ("server1", "site-1", "admin@org"):
        (prod / name / "startup").mkdir(parents=True)
    return prod


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "inventory.yml"
    path.write_text(text)
    return path


GOOD = """api_version: 1
kits: ws/proj/prod_00
admin_kit: admin@org
hosts:
  - participant: server1
    address: 127.0.0.1
    port: 2222
    user: root
    install_dir: /opt/flctl
  - participant: site-1
    address: 127.0.0.1
    user: deploy
    key_file: id_test
    sudo: true
    python: /usr/bin/python3.11
    install_dir: /srv/flctl/
"""


def test_a_valid_inventory_loads_with_defaults_and_resolved_paths(tmp_path: Path, kits: Path) -> None:
    """Relative kits and key paths resolve against the inventory's folder; unset fields take their defaults."""
    # Prepare
    (tmp_path / "id_test").write_text("key")
    # Execute
    inv = load_inventory(write(tmp_path, GOOD))
    # Assert
    server, site = inv.hosts
    assert inv.kits == kits
    assert inv.admin_kit == kits / "admin@org"
    assert inv.known_hosts == Path("~/.ssh/known_hosts").expanduser()
    assert (server.port, server.python, server.sudo, server.key_file) == (2222, "python3", False, None)
    assert inv.key_file(site) == tmp_path / "id_test"
    assert (site.install_dir, site.venvs) == ("/srv/flctl", "/srv/flctl/venvs")
    assert inv.host("site-1") is site


def test_every_problem_is_reported_with_its_line_and_field(tmp_path: Path, kits: Path) -> None:
    """Unknown keys, missing fields, bad ports, relative install folders and unknown kits are all listed."""
    # Prepare
    text = """api_version: 1
kits: ws/proj/prod_00
hosts:
  - participant: server1
    address: 127.0.0.1
    user: root
    port: 70000
    install_dir: opt/flctl
  - participant: nobody
    adress: 127.0.0.1
    user: root
    install_dir: /opt/flctl
"""
    # Execute
    with pytest.raises(InputError) as caught:
        load_inventory(write(tmp_path, text))
    # Assert
    got = [(p.line, p.field) for p in caught.value.problems]
    assert got == [(7, "hosts[0].port"), (8, "hosts[0].install_dir"), (9, "hosts[1].address"),
                   (10, "hosts[1].adress")]
    assert "unknown key 'adress'" in str(caught.value)
    assert str(caught.value).startswith(f"{tmp_path / 'inventory.yml'}:7: hosts[0].port: 70000 is too large; use "
                                        "65535 or less")
    assert "Input should" not in str(caught.value), "no library wording reaches the user"


def test_references_are_checked_against_the_kits_folder(tmp_path: Path, kits: Path) -> None:
    """A participant without a kit, a participant deployed twice and a missing key file are errors with lines."""
    # Prepare
    text = """api_version: 1
kits: ws/proj/prod_00
hosts:
  - {participant: site-9, address: a, user: u, install_dir: /x}
  - {participant: site-1, address: b, user: u, install_dir: /x, key_file: missing_key}
  - {participant: site-1, address: c, user: u, install_dir: /y}
"""
    # Execute
    with pytest.raises(InputError) as caught:
        load_inventory(write(tmp_path, text))
    # Assert
    messages = {(p.line, p.field): p.message for p in caught.value.problems}
    assert "no kit 'site-9'" in messages[(4, "hosts[0].participant")]
    assert "admin@org, server1, site-1" in messages[(4, "hosts[0].participant")]
    assert "is not a file" in messages[(5, "hosts[1].key_file")]
    assert "already deployed by hosts[1]" in messages[(6, "hosts[2].participant")]


def test_shell_characters_and_duplicate_keys_are_refused(tmp_path: Path, kits: Path) -> None:
    """Values that end up in remote commands may not carry shell characters; YAML duplicate keys are errors."""
    # Prepare
    text = """api_version: 1
kits: ws/proj/prod_00
hosts:
  - participant: site-1
    address: "h; rm -rf /"
    user: u
    user: v
    install_dir: /x
"""
    # Execute
    with pytest.raises(InputError) as caught:
        load_inventory(write(tmp_path, text))
    # Assert
    assert [(p.line, p.field) for p in caught.value.problems] == [(7, "hosts[0].user")]
    with pytest.raises(InputError) as caught_again:
        load_inventory(write(tmp_path, text.replace("    user: v\n", "")))
    assert "hosts[0].address: must be non-empty and contain no spaces" in str(caught_again.value)


@pytest.mark.parametrize("example", [EXAMPLE, EXAMPLE.with_name("cloud.yml"), EXAMPLE.with_name("slurm.yml")],
                         ids=["ssh", "cloud", "slurm"])
def test_the_example_inventories_are_valid_apart_from_their_kits(example: Path) -> None:
    """playbooks/rollouts/*.yml parse; only their kits folder (not provisioned here) is reported."""
    # Execute
    with pytest.raises(InputError) as caught:
        load_inventory(example)
    # Assert
    assert [p.field for p in caught.value.problems] == ["kits"]


def test_the_cloud_example_dry_runs_as_its_comments_say(tmp_path: Path) -> None:
    """playbooks/rollouts/cloud.yml: after the provision command its comment gives (run as written, from a copy of
    the repository's playbooks), `flctl deploy aws playbooks/rollouts/cloud.yml --dry-run` prints each machine's
    plan and exits 0, calling no cloud API (no credentials here)."""
    import os
    import shutil
    import subprocess
    import sys

    # Prepare
    shutil.copytree(EXAMPLE.parent.parent, tmp_path / "playbooks")
    example = tmp_path / "playbooks" / "rollouts" / "cloud.yml"
    commands = [line.split("flctl ", 1)[1].split() for line in example.read_text().splitlines()
                if line.startswith("#") and " flctl " in line and "playbooks/" in line]
    flctl = str(Path(sys.executable).parent / "flctl")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(FLCTL_CA_PASSPHRASE="example-passphrase", AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
               AWS_CONFIG_FILE=str(tmp_path / "none"))
    # Execute
    runs = [subprocess.run([flctl, *command], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120,
                           check=False) for command in commands]
    # Assert
    assert [c[:2] for c in commands] == [["provision", "playbooks/projects/hospitals.yml"],
                                         ["deploy", "aws"]]
    assert [r.returncode for r in runs] == [0, 0], [r.stdout + r.stderr for r in runs]
    assert "machine plan (nothing was changed)" in runs[1].stdout
    assert "fl.research-centre.example.org\tinstance" in runs[1].stdout
