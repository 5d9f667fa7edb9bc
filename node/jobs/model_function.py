"""The confined child that calls a job's model function (job.yml `initial_model: app/net.py:make_model`):

    python -m flctl.node.jobs.model_function APP_DIR FILE FUNCTION OUT

It imports FILE from APP_DIR (its folder on sys.path, as a training script's), calls FUNCTION and writes what it
returned (a torch module's state_dict, or a mapping of names to arrays or tensors) to OUT as safetensors. It imports
nothing of flctl but the safetensors writer: `flctl.node.jobs.initial_model.build` starts it confined to reading the
app, Python and `flctl.node`.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def params_of(model: Any) -> Mapping[str, Any]:
    """What a model function returned, as name -> array or tensor: a torch module's state_dict, or a mapping."""
    if hasattr(model, "state_dict") and callable(model.state_dict):
        model = model.state_dict()
    if not isinstance(model, Mapping) or not all(isinstance(key, str) for key in model):
        raise TypeError(f"it returned a {type(model).__name__}; return a torch module or a dict of name -> array")
    return model


def main(argv: list[str]) -> int:
    """The child: import FILE from APP_DIR (its folder on sys.path, as a script's), call FUNCTION, write OUT."""
    from flctl.node.wire import tensors

    app_dir, file, name, out = argv
    sys.path.insert(0, str(Path(app_dir, file).parent))
    try:
        spec = importlib.util.spec_from_file_location("flctl_initial_model", Path(app_dir, file))
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {file}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        function = getattr(module, name, None)
        if not callable(function):
            raise AttributeError(f"{file} has no function {name}")
        tensors.write_file(Path(out), params_of(function()))
    except Exception as exc:  # noqa: BLE001 - the job's code failed: one line for the parent, which fails the job
        import traceback

        traceback.print_exc()
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
