"""Reading a node's own YAML files (`local/privacy.yml`, `local/resources.yml`, `local/policy.yml`): a file that is
not there means the defaults; one that cannot be read or parsed stops the node with one sentence naming it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from flctl.provisioner.errors import KitError


def read_local_yaml(path: Path, missing: Any = None, error: type[Exception] = KitError) -> Any:
    """The YAML document in `path` (None for an empty file), `missing` when there is no such file; `error` naming
    the file and the cause when it cannot be read or is not YAML."""
    try:
        return yaml.safe_load(path.read_text())
    except FileNotFoundError:
        return missing
    except (OSError, yaml.YAMLError) as exc:
        raise error(f"cannot read {path}: {exc}") from None
