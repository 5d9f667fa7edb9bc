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
    ("api_version: 2\n", "api_version"),
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
