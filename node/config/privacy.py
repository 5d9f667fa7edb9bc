"""A site's own `local/privacy.yml`: the scopes a job may ask for and, per scope, the filters that what leaves the
site (and what a task brings in) passes through. Owned by the site, never signed.

    api_version: 1
    default_scope: public
    scopes:
      public: []

The filters themselves come with the privacy work; here the file is checked at start, so a misspelt key or a
default scope that is not defined stops the node (KitError, exit 2) instead of being ignored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from flctl.provisioner.errors import KitError


class PrivacyRules(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    api_version: Literal[1] = 1
    default_scope: str = Field("public", description="The scope of a job that names none")
    scopes: dict[str, list[Any]] = Field(default_factory=lambda: {"public": []},
                                         description="Scope name -> the filters applied in that scope, in order")


def load_privacy(path: Path) -> PrivacyRules:
    """The rules in `path`; the defaults when there is no such file."""
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        return PrivacyRules()
    except (OSError, yaml.YAMLError) as exc:
        raise KitError(f"cannot read {path}: {exc}") from None
    try:
        rules = PrivacyRules.model_validate(raw or {})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the file"
        what = "is not a key of privacy.yml (keys: api_version, default_scope, scopes)" \
            if first["type"] == "extra_forbidden" else f"{first['msg'].lower()}, not {first.get('input')!r}"
        raise KitError(f"{path}: {where} {what}") from None
    if rules.default_scope not in rules.scopes:
        raise KitError(f"{path}: default_scope {rules.default_scope!r} is not one of its scopes "
                       f"({', '.join(sorted(rules.scopes)) or 'none defined'})")
    return rules
