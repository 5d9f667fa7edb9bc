"""`flctl play`'s journal and kit links (flctl.cloud.play), over real files and real provisioning."""

from __future__ import annotations

from pathlib import Path

import pytest

from flctl.cloud.play import Journal, PlayError, kit_digest, link_kits
from flctl.provisioner.build import provision
from flctl.provisioner.project_loader import project_from_document
from flctl.provisioner.yaml_source import parse_yaml
from tests.federation import project_text


def test_events_are_appended_and_read_back_in_order(tmp_path):
    # Execute
    journal = Journal(tmp_path / "events.jsonl")
    journal.record("planned", "s", host="h")
    journal.record("provisioned", "s", digest="d")
    again = Journal(tmp_path / "events.jsonl")
    # Assert
    assert [e.kind for e in again.events] == ["planned", "provisioned"]
    assert again.state.participants["s"].state == "provisioned"


def test_a_line_torn_by_a_kill_is_dropped_and_the_next_event_starts_a_line(tmp_path):
    """A run killed in the middle of writing an event: that event never happened, and the file is mended."""
    # Prepare
    journal = Journal(tmp_path / "events.jsonl")
    journal.record("planned", "s", host="h")
    with open(tmp_path / "events.jsonl", "a") as out:
        out.write('{"kind": "provisioned", "at": 2, "partic')
    # Execute
    mended = Journal(tmp_path / "events.jsonl")
    mended.record("provisioned", "s", digest="d")
    # Assert
    assert [e.kind for e in Journal(tmp_path / "events.jsonl").events] == ["planned", "provisioned"]


def test_a_damaged_line_inside_the_journal_is_refused_naming_it(tmp_path):
    # Prepare
    path = tmp_path / "events.jsonl"
    path.write_text('{"kind": "planned", "at": 1, "participant": "s"}\nnot json\n'
                    '{"kind": "provisioned", "at": 2, "participant": "s", "data": {"digest": "d"}}\n')
    # Execute / Assert
    with pytest.raises(PlayError, match=r"events.jsonl:2 is not a play event"):
        Journal(path)


def _provision(workspace: Path, text: str) -> Path:
    project = project_from_document(parse_yaml(text, "project.yml")).project
    return provision(project, workspace).prod_dir


def test_only_a_kit_whose_content_changed_is_relinked(tmp_path):
    """Provisioning again signs every kit anew; a site whose org changed gets a new certificate: only its link
    moves to the new prod folder, so the others' hosts keep the very bytes they run."""
    # Prepare
    text = project_text("links", 18443, sites=2)
    first = _provision(tmp_path / "ws", text)
    names = ["localhost", "site-1", "site-2", "admin@hub.org"]
    link_kits(tmp_path / "kits", first, names)
    before = {n: kit_digest(tmp_path / "kits" / n) for n in names}
    # Execute
    second = _provision(tmp_path / "ws", text.replace("{name: site-2, org: org_2}", "{name: site-2, org: org_9}"))
    changed = link_kits(tmp_path / "kits", second, names)
    # Assert
    assert changed == ["site-2"]
    assert (tmp_path / "kits" / "site-2").resolve() == (second / "site-2").resolve()
    assert (tmp_path / "kits" / "site-1").resolve() == (first / "site-1").resolve()
    assert kit_digest(tmp_path / "kits" / "site-2") != before["site-2"]
    assert (first / "site-1" / "startup" / "signature.json").read_bytes() != \
        (second / "site-1" / "startup" / "signature.json").read_bytes()
