"""The old import name of the Client API, `node.api`, kept working for job scripts written before `flctl.client`.

This folder (not the package `flctl.node`) is put first on a training script's path by the site's
script bridge and the simulator, so `import node.api` finds `node/api.py` here, which warns once and
hands the script the real Client API. Nothing named `node` is installed at the top of site-packages.
"""

from pathlib import Path

PATH = str(Path(__file__).resolve().parent)
"""The folder to put on a script's `sys.path` (or PYTHONPATH) for `import node.api` to work."""
