"""`python -m flctl.recipe SCRIPT.py [ARGS...]`: run a recipe script the way flctl's commands end.

The script runs as `__main__` with ARGS as its `sys.argv[1:]`. A `RecipeError` it lets through becomes one line,
`error: <sentence>`, and the exit code DESIGN.md gives it (2 bad input, 3 cannot connect, 4 not permitted,
5 timed out, 1 the run failed) instead of a traceback; any other exception is a bug, and keeps its traceback.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

from flctl.recipe.errors import RecipeError

USAGE = "usage: python -m flctl.recipe SCRIPT.py [ARGS...]"


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, file=sys.stderr if not argv else sys.stdout)
        return 2 if not argv else 0
    script = Path(argv[0])
    if not script.is_file():
        print(f"error: no recipe script {script}; {USAGE}", file=sys.stderr)
        return 2
    sys.argv = list(argv)
    sys.path.insert(0, str(script.resolve().parent))  # as `python SCRIPT.py` would
    try:
        runpy.run_path(str(script), run_name="__main__")
    except RecipeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
