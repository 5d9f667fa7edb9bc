"""project.yml: what is accepted, and how each mistake is reported (file, line, field)."""

from __future__ import annotations

from pathlib import Path

import pytest

from flctl.provisioner.errors import InputError
from flctl.provisioner.project_loader import load_project

from .conftest import LOCAL_PROJECT, ROOT

GOOD = """\
api_version: 1
name: demo
server: {name: fl.example.org, org: acme, port: 8443, hosts: [fl.example.org, 10.0.0.5]}
sites:  [{name: site-1, org: org_a}, {name: site-2, org: org_b}]
admins: [{name: admin@example.org, org: acme, role: project_admin}]
"""


def problems_of(path: Path) -> list[str]:
    with pytest.raises(InputError) as info:
        load_project(path)
    return [str(p) for p in info.value.problems]


def test_issue_example_is_accepted(write_project):
    """The example from the docs loads with defaults filled in."""
    project = load_project(write_project(GOOD)).project
    assert [p.name for p in project.participants()] == ["fl.example.org", "site-1", "site-2", "admin@example.org"]
    assert project.server.port == 8443
    assert project.ca.key == "ec-p256"
    assert project.participants()[0].san_hosts() == ("fl.example.org", "10.0.0.5")


@pytest.mark.parametrize("path", sorted((ROOT / "playbooks" / "projects").glob("*.yml")), ids=lambda p: p.name)
def test_playbook_projects_are_valid(path):
    """Every example project in playbooks/ loads without warnings."""
    loaded = load_project(path)
    assert loaded.warnings == []


def test_duplicate_names_are_refused_with_both_places(write_project):
    """Two participants with one name (ignoring case): the second is named with its line."""
    path = write_project(GOOD.replace("name: site-2", "name: SITE-1"))
    assert problems_of(path) == [
        f"{path}:4: sites[1].name: 'SITE-1' is already used by sites[0].name; "
        "participant names must be unique (ignoring case)"
    ]


def test_missing_server(write_project):
    """No server: the error says it is required."""
    path = write_project("api_version: 1\nname: demo\nsites: []\n")
    assert problems_of(path) == [f"{path}:1: server: 'server' is required"]


def test_unknown_role_lists_the_allowed_ones(write_project):
    path = write_project(GOOD.replace("role: project_admin", "role: boss"))
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}:5: admins[0].role: 'boss' is not allowed; use 'project_admin'")


@pytest.mark.parametrize(
    ("old", "new", "line", "field", "fragment"),
    [
        ("name: site-1", "name: site 1", 4, "sites[0].name", "'site 1' is not a valid name"),
        ("name: site-1", "name: ../etc", 4, "sites[0].name", "'../etc' is not a valid name"),
        ("name: site-1", "name: site.zip", 4, "sites[0].name", "kept for kit archives"),
        ("name: demo", "name: my demo", 2, "name", "'my demo' is not a valid project name"),
        ("10.0.0.5", "bad_host!", 3, "server.hosts[1]", "'bad_host!' is not a valid host"),
        ("port: 8443", "port: 70000", 3, "server.port", "70000 is too large; use 65535 or less"),
        ("name: admin@example.org", "name: 'a b@c'", 5, "admins[0].name", "is not a valid admin name"),
    ],
)
def test_invalid_values_are_named(write_project, old, new, line, field, fragment):
    """Each invalid value is reported with its line and field, and says what is allowed."""
    path = write_project(GOOD.replace(old, new))
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}:{line}: {field}: ")
    assert fragment in problem


def test_unknown_keys_list_the_allowed_keys(write_project):
    path = write_project(GOOD + "colour: blue\n")
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}:6: colour: unknown key 'colour'; allowed here: api_version, name,")


def test_unknown_key_inside_a_site(write_project):
    path = write_project(GOOD.replace("{name: site-2, org: org_b}", "{name: site-2, org: org_b, gpu: 1}"))
    assert problems_of(path) == [f"{path}:4: sites[1].gpu: unknown key 'gpu'; allowed here: name, org, parent, "
                                 "failover, transport"]


def test_every_problem_is_reported_at_once(write_project):
    """Several mistakes: all of them, in line order, not just the first."""
    text = GOOD.replace("role: project_admin", "role: boss").replace("name: site-1", "name: 'x y'")
    assert len(problems_of(write_project(text))) == 2


def test_malformed_yaml_names_the_line(write_project):
    path = write_project("api_version: 1\nname: demo\nsites: [\n  {name: a\n")
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}:") and "malformed YAML" in problem


def test_unclosed_brace_is_reported_on_its_own_line_with_the_parsers_words(write_project):
    """An unclosed `{` on line 3 is reported at line 3 (not 4), with the parser's context and problem."""
    path = write_project("api_version: 1\nname: demo\nserver: {name: localhost, org: a\n"
                         "sites:\n  - {name: s1, org: a}\n")
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}:3: malformed YAML: while parsing a flow mapping (line 3, column 9): ")
    assert "expected ',' or '}'" in problem and "(line 4, column 6)" in problem  # libyaml's or PyYAML's words
    assert problem.endswith("is a '}' missing on line 3?")


def test_other_syntax_errors_keep_the_parsers_line(write_project):
    """Where nothing was left open, the line is where the parser stopped."""
    path = write_project("api_version: 1\nname: demo\n server: x\n")
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}:3: malformed YAML: mapping values are not allowed")


def test_bad_port_names_the_value(write_project):
    """A port of 99999 is refused with its line, its field, the value and what is allowed."""
    path = write_project(GOOD.replace("port: 8443", "port: 99999"))
    assert problems_of(path) == [f"{path}:3: server.port: 99999 is too large; use 65535 or less"]


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("heartbeat: {interval_s: -1}", "6: heartbeat.interval_s: -1 is too small; use more than 0"),
        ("heartbeat: {timeout_s: soon}", "6: heartbeat.timeout_s: expected a number, got 'soon'"),
        ("ca: {valid_days: 0}", "6: ca.valid_days: 0 is too small; use 1 or more"),
        ("certs: {valid_days: 1.5}", "6: certs.valid_days: expected a whole number, got 1.5"),
        ("certs: {valid_days: 99999}", "6: certs.valid_days: 99999 is too large; use 36500 or less"),
        ("description: [a, b]", "6: description: expected a string, got a list"),
        ("certs: 7", "6: certs: expected a mapping with keys valid_days, got 7"),
    ],
    ids=["gt", "float", "ge", "int", "le", "string", "mapping"],
)
def test_every_refused_value_is_shown(write_project, extra, expected):
    """Each field's message shows the value refused, not only the validator's words."""
    path = write_project(GOOD + extra + "\n")
    assert problems_of(path) == [f"{path}:{expected}"]


def test_duplicate_yaml_key_is_an_error(write_project):
    """PyYAML keeps the last of two equal keys silently; we refuse them."""
    path = write_project(GOOD + "name: other\n")
    assert problems_of(path) == [f"{path}:6: name: duplicate key (first given on line 2)"]


def test_wrong_api_version(write_project):
    path = write_project(GOOD.replace("api_version: 1", "api_version: 2"))
    assert problems_of(path) == [f"{path}:1: api_version: 2 is not supported; use 1 (flctl) or 3 (NVIDIA FLARE)"]


def test_not_a_mapping(write_project):
    path = write_project("- just\n- a list\n")
    assert "expected a mapping" in problems_of(path)[0]


def test_missing_file(tmp_path):
    assert problems_of(tmp_path / "nope.yml") == [f"{tmp_path / 'nope.yml'}: no such file"]


def test_heartbeat_timeout_must_exceed_interval(write_project):
    path = write_project(GOOD + "heartbeat: {interval_s: 10, timeout_s: 5}\n")
    (problem,) = problems_of(path)
    assert "timeout_s (5.0) must be larger than interval_s (10.0)" in problem


NVFLARE = """\
api_version: 3
name: example_project
description: NVIDIA FLARE sample project yaml file
participants:
  - name: server1
    type: server
    org: nvidia
    fed_learn_port: 8002
    admin_port: 8003
    host_names: [server1.example.com, 10.1.1.1]
  - name: site-1
    type: client
    org: nvidia
  - name: site-2
    type: client
    org: hospital
  - name: admin@nvidia.com
    type: admin
    org: nvidia
    role: project_admin
  - name: overseer.example.com
    type: overseer
    org: nvidia
builders:
  - path: nvflare.lighter.impl.workspace.WorkspaceBuilder
    args:
      template_file: [master_template.yml, aws_template.yml]
  - path: nvflare.lighter.impl.static_file.StaticFileBuilder
    args: {config_folder: config}
  - path: nvflare.lighter.impl.docker.DockerBuilder
  - path: my_company.builders.CustomBuilder
  - path: nvflare.lighter.impl.cert.CertBuilder
  - path: nvflare.lighter.impl.signature.SignatureBuilder
"""


def test_nvflare_project_is_accepted(write_project):
    """NVIDIA FLARE's api_version 3 file maps onto server, sites and admins."""
    loaded = load_project(write_project(NVFLARE))
    project = loaded.project
    assert project.name == "example_project"
    assert (project.server.name, project.server.org, project.server.port) == ("server1", "nvidia", 8002)
    assert project.server.hosts == ["server1.example.com", "10.1.1.1"]
    assert [(s.name, s.org) for s in project.sites] == [("site-1", "nvidia"), ("site-2", "hospital")]
    assert [(a.name, a.role) for a in project.admins] == [("admin@nvidia.com", "project_admin")]


def test_nvflare_unknown_builders_warn_instead_of_failing(write_project):
    """Builders flctl does not know, an overseer and admin_port are warnings, not failures."""
    warnings = load_project(write_project(NVFLARE)).warnings
    assert any("nvflare.lighter.impl.docker.DockerBuilder" in w and "skipped" in w for w in warnings)
    assert any("my_company.builders.CustomBuilder" in w for w in warnings)
    assert any("admin_port" in w for w in warnings)
    assert any("overseer" in w for w in warnings)
    assert not any("WorkspaceBuilder" in w or "CertBuilder" in w for w in warnings)


def test_nvflare_errors_point_at_the_users_lines(write_project):
    """A mistake in a FLARE file is reported where the user wrote it, with FLARE's field names."""
    path = write_project(NVFLARE.replace("role: project_admin", "role: owner").replace("fed_learn_port: 8002",
                                                                                       "fed_learn_port: 0"))
    assert problems_of(path) == [
        f"{path}:8: participants[0].fed_learn_port: 0 is too small; use 1 or more",
        f"{path}:20: participants[3].role: 'owner' is not allowed; use 'project_admin', 'org_admin', 'lead' "
        "or 'member'",
    ]


def test_nvflare_unknown_type_is_an_error(write_project):
    path = write_project(NVFLARE.replace("type: overseer", "type: robot"))
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}:22: participants[4].type: unknown participant type 'robot'")


def test_local_playbook_is_on_localhost():
    project = load_project(LOCAL_PROJECT).project
    assert project.server.name == "localhost"
    assert len(project.sites) == 2 and len(project.admins) == 1
