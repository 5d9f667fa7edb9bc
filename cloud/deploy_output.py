"""Write generated deployment files all at once: into a temporary folder beside the output, then renamed into
place, so a failure leaves nothing half-written and the files that hold keys are never readable by others."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from flctl.cloud.deploy_errors import DeployInputError


def write_tree(out: Path, files: dict[str, bytes], secret: set[str] | None = None, replace: bool = False) -> Path:
    """Write `files` (relative path -> bytes) as the folder `out`; the paths in `secret` mode 0600, the folder 0700.

    An existing `out` is refused unless `replace` (then swapped for the new one only once it is complete)."""
    if out.exists() and not replace:
        raise DeployInputError(f"[-o] {out} exists; choose a new folder or pass --force to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        for rel, data in files.items():
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if rel in (secret or set()) else 0o644)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
        os.chmod(tmp, 0o700)
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
