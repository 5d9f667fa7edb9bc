"""Where Flower is: the Python of the virtual environment that holds `flwr` (not flctl's own: flwr 1.42 needs
protobuf<7, flctl pins protobuf 7 with grpcio)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ENV = "FLCTL_FLOWER_PYTHON"
VENV = ".venv-flower"
SETUP = "bash scripts/setup.sh --all"


class FlowerMissing(Exception):
    """No Python with Flower was found."""


def flower_python(environ: dict[str, str] | None = None) -> Path:
    """`$FLCTL_FLOWER_PYTHON`, else the `.venv-flower` beside the virtual environment flctl runs from (the one
    `bash scripts/setup.sh --all` makes); FlowerMissing saying how to get one."""
    env = os.environ if environ is None else environ
    given = env.get(ENV, "")
    if given:
        path = Path(given)
        if not path.is_file():
            raise FlowerMissing(f"{ENV}={given} is not a file; point it at the python of a venv with flwr 1.42")
        return path
    beside = Path(sys.prefix).parent / VENV / "bin" / "python"
    if beside.is_file():
        return beside
    raise FlowerMissing(f"no Flower here: neither {ENV} nor {beside.parent.parent}; `{SETUP}` makes the venv "
                        f"(flwr 1.42 in {VENV}), or set {ENV} to the python of a venv with flwr 1.42")


def flower_tool(python: Path, name: str) -> Path:
    """A Flower command (`flower-superlink`, `flwr`…) of the venv whose python is `python`."""
    return python.parent / name


def flower_env(python: Path, home: Path, extra: dict[str, str] | None = None,
               base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment Flower's processes run in: `base` (default: this process's) with the venv first on PATH (a
    SuperLink starts `flower-superexec` by name), FLWR_HOME of this job, no telemetry nor update check."""
    env = {**(os.environ if base is None else base), **(extra or {})}
    env.pop(ENV, None)
    env.update({"PATH": f"{python.parent}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}", "FLWR_HOME": str(home),
                "FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1",
                "VIRTUAL_ENV": str(python.parent.parent)})
    env.pop("PYTHONPATH", None)
    return env
