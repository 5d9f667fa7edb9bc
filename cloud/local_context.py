"""Which local federation `flctl` acts on when none is named: the last one prepared, remembered as kubectl remembers
its context.

`flctl poc prepare -w DIR` records DIR in `<config>/flctl/poc-workspace` (`$XDG_CONFIG_HOME`, else ~/.config); the
commands that default to the local federation (`flctl poc …`, `flctl job …`, the Recipe's `LocalEnv`) find it there
when `FLCTL_POC_WORKSPACE` does not say otherwise. `flctl poc clean` forgets it. A remembered folder that no longer
holds a federation is ignored (the default folder is used).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

FILE = "poc-workspace"


def config_dir() -> Path:
    """flctl's folder of user settings: $XDG_CONFIG_HOME/flctl, else ~/.config/flctl."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base).expanduser() / "flctl"


def remembered() -> Path | None:
    """The last prepared local federation's folder, when it still holds one."""
    from flctl.cloud.local_plan import STATE_FILE

    try:
        text = (config_dir() / FILE).read_text().strip()
    except OSError:
        return None
    path = Path(text)
    return path if text and path.is_absolute() and (path / STATE_FILE).is_file() else None


def remember(workspace: Path) -> None:
    """Make `workspace` the local federation commands use by default (written through a rename)."""
    folder = config_dir()
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{FILE}.tmp-{os.getpid()}"
    tmp.write_text(f"{workspace.absolute()}\n")
    os.replace(tmp, folder / FILE)


def forget(workspace: Path) -> None:
    """Forget `workspace` if it is the remembered one (it was removed)."""
    path = config_dir() / FILE
    with contextlib.suppress(OSError):
        if Path(path.read_text().strip()) == workspace.absolute():
            path.unlink()
