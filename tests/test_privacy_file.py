"""A site's local/privacy.yml is checked at start: the kit's own file loads, a key that is not one of its keys or a
default scope it does not define is refused naming the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from flctl.node.config.privacy import PrivacyRules, load_privacy
from flctl.provisioner.errors import KitError
from flctl.provisioner.kit_files import _PRIVACY


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "privacy.yml"
    path.write_text(text)
    return path


def test_the_kit_s_own_file_and_no_file_give_the_public_scope(tmp_path: Path):
    """What every kit is given, and a missing file, both mean one scope, public, with no filters."""
    # Execute
    found = [load_privacy(write(tmp_path, _PRIVACY.format(kind="site"))), load_privacy(tmp_path / "missing.yml")]
    # Assert
    assert found == [PrivacyRules(default_scope="public", scopes={"public": []})] * 2


@pytest.mark.parametrize(("text", "words"), [
    ("api_version: 1\ndefault_scope: public\nscope:\n  public: []\n", "scope is not a key of privacy.yml"),
    ("default_scope: private\nscopes:\n  public: []\n", "default_scope 'private' is not one of its scopes (public)"),
    ("api_version: 2\n", "api_version: 2 is not allowed; use 1"),
    ("- a list\n", "privacy.yml"),
])
def test_a_bad_file_is_refused_naming_the_file_and_the_key(tmp_path: Path, text: str, words: str):
    """A misspelt key, an undefined default scope, another version, a list: KitError (exit 2) with the file."""
    # Prepare
    path = write(tmp_path, text)
    # Execute
    with pytest.raises(KitError) as caught:
        load_privacy(path)
    # Assert
    assert str(path) in str(caught.value) and words in str(caught.value)


PRIVATE = "default_scope: public\nscopes:\n  public: []\n  private:\n"
GOOD = "    - {filter: exclude_vars, args: {exclude_vars: [a]}}\n"


@pytest.mark.parametrize(("entries", "words"), [
    ("    - {filter: exclude_var, args: {exclude_vars: [a]}}\n",
     "scopes.private[0].filter: unknown filter 'exclude_var'; known filters: exclude_vars"),
    (GOOD + "    - {filter: exclude_vars, args: {names: [a]}}\n",
     "scopes.private[1].args: 'names' is not an argument of exclude_vars (its arguments: exclude_vars)"),
    ("    - {filter: exclude_vars}\n", "scopes.private[0].args: 'exclude_vars' is required"),
    ("    - {filter: exclude_vars, args: {exclude_vars: []}}\n",
     "scopes.private[0].args.exclude_vars: an empty list; name at least one tensor"),
    ("    - {filter: exclude_vars, args: {exclude_vars: '(open'}}\n",
     "scopes.private[0].args.exclude_vars: '(open' is not a regular expression"),
    ("    - {filter: exclude_vars, args: {exclude_vars: [1]}}\n",
     "scopes.private[0].args.exclude_vars: expected a list of tensor names or one regular expression"),
    (GOOD + "    - {filter: exclude_vars, args: {exclude_vars: [a]}, apply_to: output}\n",
     "scopes.private[1].apply_to: 'output' is not allowed; use 'result', 'task' or 'both'"),
    (GOOD + "    - {filter: exclude_vars, args: {exclude_vars: [a]}, on: task}\n",
     "scopes.private[1]: a key YAML reads as true or false (on, off, yes, no); to say what a filter applies to, "
     "write apply_to"),
    ("    - {filter: exclude_vars, arg: {exclude_vars: [a]}}\n",
     "scopes.private[0]: 'arg' is not a key of a filter entry (keys: filter, args, apply_to)"),
    ("    - exclude_vars\n", "scopes.private[0]: expected a mapping"),
])
def test_a_bad_filter_entry_stops_the_node_naming_scope_entry_and_field(tmp_path: Path, entries: str, words: str):
    """An unknown filter, a bad argument, a bad apply_to or a misspelt key: KitError with file, scope, index, field."""
    # Prepare
    path = write(tmp_path, PRIVATE + entries)
    # Execute
    with pytest.raises(KitError) as caught:
        load_privacy(path)
    # Assert
    assert str(caught.value).startswith(f"{path}: ") and words in str(caught.value)


def test_the_example_in_the_kit_s_comments_is_a_valid_scope(tmp_path: Path):
    """The commented example of the kit's privacy.yml, uncommented, loads: two exclude_vars filters on results."""
    # Prepare
    text = _PRIVACY.format(kind="site")
    comments = text.split("# For example", 1)[1].split("\napi_version")[0].splitlines()[1:]
    example = "\n".join(line.removeprefix("#") for line in comments)
    # Execute
    rules = load_privacy(write(tmp_path, text + example + "\n"))
    # Assert
    assert [(e.filter, e.args, e.apply_to) for e in rules.scopes["private"]] == [
        ("exclude_vars", {"exclude_vars": r"^secret\."}, "result"),
        ("exclude_vars", {"exclude_vars": ["head.bias"]}, "result")]
    filters = rules.pipeline("job-1", "private")
    assert filters.describe() == "private (tasks: none; results: exclude_vars, exclude_vars)"
