"""The README's table of workflows stays true: every registered workflow is a row, naming each of its arguments."""

from __future__ import annotations

import re

from flctl.node.workflows import WORKFLOWS

from .conftest import ROOT


def readme_rows() -> dict[str, str]:
    """`workflow.type` -> its row of the README's Workflows table."""
    text = (ROOT / "README.md").read_text()
    table = text[text.index("#### Workflows"):].split("\n\n")[1]
    rows = {}
    for line in table.splitlines()[2:]:
        match = re.match(r"\| `(\w+)` \|", line)
        assert match, f"not a workflow row: {line}"
        rows[match.group(1)] = line
    return rows


def test_every_registered_workflow_has_a_row_and_no_row_is_unregistered():
    """The table's workflow types are exactly the registry's."""
    # Prepare / Execute / Assert
    assert set(readme_rows()) == set(WORKFLOWS)


def test_each_row_names_every_argument_of_its_workflow():
    """An argument added to a workflow's Args must be documented in its row (fedavg's are 'those of fedavg')."""
    # Prepare
    rows = readme_rows()
    inherited = {field.alias or name for name, field in WORKFLOWS["fedavg"].Args.model_fields.items()}
    # Execute / Assert
    for name, cls in WORKFLOWS.items():
        row = rows[name]
        own = {field.alias or name for name, field in cls.Args.model_fields.items()}  # as job.yml spells them
        own -= inherited if "those of `fedavg`" in row else set()
        missing = [arg for arg in sorted(own) if f"`{arg}`" not in row]
        assert not missing, f"README's {name} row does not name {missing}"
