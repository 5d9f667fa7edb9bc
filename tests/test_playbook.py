"""The playbook of `flctl play` (flctl.cloud.playbook): its schema, the inline inventory, errors with file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from flctl.cloud.playbook import load_playbook
from flctl.provisioner.errors import InputError
from tests.federation import project_text

HOSTS = """\
  hosts:
    - participant: localhost
      address: 127.0.0.1
      user: fl
      install_dir: /opt/flctl
    - participant: site-1
      provider: local
      user: fl
      install_dir: /opt/site-1
"""


def write(tmp_path: Path, body: str) -> Path:
    (tmp_path / "project.yml").write_text(project_text("demo", 18443, sites=2))
    path = tmp_path / "play.yml"
    path.write_text(body)
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(InputError) as caught:
        load_playbook(path)
    return [str(p) for p in caught.value.problems]


def test_a_valid_playbook_with_an_inline_inventory(tmp_path):
    """Defaults: the state folder beside the playbook, the workspace in it, hello-numpy for 1 round."""
    # Execute
    play = load_playbook(write(tmp_path, f"api_version: 1\nproject: project.yml\ninventory:\n{HOSTS}"))
    # Assert
    assert play.participants == ["localhost", "site-1"]
    assert play.state_dir == tmp_path / "play.play" and play.workspace == tmp_path / "play.play" / "workspace"
    assert [(path.name, spec.rounds) for path, spec in play.jobs] == [("hello-numpy", 1)]
    assert play.admin() == "admin@hub.org"
    assert play.inventory_doc.data["kits"] == str(tmp_path / "play.play" / "kits")
    assert play.where("site-1") == "localhost" and play.where("localhost") == "127.0.0.1"


def test_an_inventory_file_is_read_with_play_s_kits(tmp_path):
    """A path: that inventory, its `kits` replaced by the ones play provisions."""
    # Prepare
    (tmp_path / "inventory.yml").write_text(f"api_version: 1\nkits: somewhere/else\n{HOSTS.replace('  ', '', 1)}")
    # Execute
    play = load_playbook(write(tmp_path, "api_version: 1\nproject: project.yml\ninventory: inventory.yml\n"
                                         "jobs: []\n"))
    # Assert
    assert play.inventory_doc.data["kits"] == str(tmp_path / "play.play" / "kits")
    assert play.jobs == []


def test_an_unknown_key_names_file_line_and_key(tmp_path):
    # Execute
    found = problems(write(tmp_path, f"api_version: 1\nproject: project.yml\nretries: 3\ninventory:\n{HOSTS}"))
    # Assert
    assert len(found) == 1
    assert found[0].startswith(f"{tmp_path / 'play.yml'}:3: retries: unknown key 'retries'; allowed here:")


def test_an_unknown_key_in_a_job_or_an_inline_host_names_its_line(tmp_path):
    # Prepare
    body = (f"api_version: 1\nproject: project.yml\ninventory:\n{HOSTS}      colour: red\n"
            "jobs:\n  - job: hello-numpy\n    rounds: 0\n")
    # Execute
    found = problems(write(tmp_path, body))
    # Assert
    text = "\n".join(found)
    assert "play.yml:13: inventory.hosts[1].colour: unknown key 'colour'" in text
    assert "play.yml:16: jobs[0].rounds:" in text


def test_a_job_schema_error_is_reported(tmp_path):
    # Execute
    found = problems(write(tmp_path, f"api_version: 1\nproject: project.yml\ninventory:\n{HOSTS}"
                                     "jobs:\n  - job: hello-numpy\n    rounds: 0\n"))
    # Assert
    assert any(":15: jobs[0].rounds: 0 is too small" in p for p in found), found


def test_a_host_for_no_participant_of_the_project(tmp_path):
    # Execute
    found = problems(write(tmp_path, "api_version: 1\nproject: project.yml\ninventory:\n"
                                     + HOSTS.replace("participant: site-1", "participant: site-9")))
    # Assert
    assert any(":9: inventory.hosts[1].participant: 'site-9' is not a participant of the project" in p
               for p in found), found


def test_a_missing_project_and_an_unknown_job(tmp_path):
    # Execute
    missing = problems(write(tmp_path, f"api_version: 1\nproject: nowhere.yml\ninventory:\n{HOSTS}"))
    unknown = problems(write(tmp_path, f"api_version: 1\nproject: project.yml\ninventory:\n{HOSTS}"
                                       "jobs:\n  - job: hello-nothing\n"))  # line 14
    # Assert
    assert "play.yml:2: project:" in missing[0] and "is not a file" in missing[0]
    assert "play.yml:14: jobs[0].job: no job folder or file 'hello-nothing'" in unknown[0]


def test_kits_in_an_inline_inventory_is_refused(tmp_path):
    # Execute
    found = problems(write(tmp_path, f"api_version: 1\nproject: project.yml\ninventory:\n  kits: prod\n{HOSTS}"))
    # Assert
    assert "play.yml:4: inventory.kits: unknown key 'kits'" in found[0]


def test_bad_input_exits_2_naming_the_line(tmp_path, flctl):
    """`flctl play` on a playbook with an unknown key: exit 2, file:line: key, no traceback, nothing written."""
    # Prepare
    path = write(tmp_path, f"api_version: 1\nproject: project.yml\ncheck: true\ninventory:\n{HOSTS}")
    # Execute
    result = flctl("play", path)
    # Assert
    assert result.code == 2
    assert "play.yml:3: check: unknown key 'check'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "play.play").exists()


def test_a_container_provider_is_refused_saying_which_command_makes_its_files(tmp_path):
    """docker and k8s are not play's hosts: the message says so and names the generator (README: Playbooks)."""
    # Prepare
    path = write(tmp_path, "api_version: 1\nproject: project.yml\ninventory:\n  hosts:\n"
                           "    - {participant: site-1, provider: k8s, user: fl, install_dir: /opt/flctl}\n")
    # Execute
    found = problems(path)
    # Assert
    assert len(found) == 1 and ":5: inventory.hosts[0].provider: 'k8s' is not a deploy target" in found[0]
    assert "`flctl deploy k8s WORKSPACE -o DIR` writes Kubernetes manifests for the whole project" in found[0]
