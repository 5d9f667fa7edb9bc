"""Other frameworks' Client APIs, for training scripts written for them: job.yml `app: {compat: NAME}`.

A job that names a compat gets that framework's import name on its script's path, and only that job: the site's
script bridge and the simulator's worker put `path(NAME)` first on the script's `sys.path` (PYTHONPATH), so
`import nvflare.client as flare` resolves to flctl's module over flctl's own Client API. Nothing is installed at
the top of site-packages: a real NVIDIA FLARE at a site is never shadowed for anything but such a job's script.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path

_HERE = Path(__file__).resolve().parent

COMPATS: dict[str, str] = {
    "nvflare": "NVIDIA FLARE 2.x's Client API (import nvflare.client as flare)",
}
"""The compat names job.yml accepts, and what each gives a script."""

_FOLDERS = {"nvflare": "nvflare_api"}
"""Each compat's folder: it holds only the import package(s) of that framework."""


def path(name: str) -> str:
    """The folder to put first on a script's `sys.path` for compat `name` (KeyError for an unknown one)."""
    return str(_HERE / _FOLDERS[name])


def installed_note(name: str) -> str:
    """What the site's log says about compat `name`: flctl's module is used, and whether a real one is installed
    here (which the job's script then does not use). Nothing of the installed one is imported."""
    ours = f"flctl's {name} compatibility module ({COMPATS[name]})"
    try:
        found = importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        return f"{ours}; no {name} is installed here"
    try:
        version = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        version = "of unknown version"
    return f"{ours}; the {name} {version} installed here is not used by this job"
