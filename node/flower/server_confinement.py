"""The Flower app's code at the server (its ServerApp, run by the SuperLink's `flwr-serverapp`) is job code: it runs
confined as a site's training script is (`flctl.node.site.sandbox`: Landlock, or another user under root), under the
server's `local/resources.yml` `job_isolation`, reading only Python, Flower's venv and system files, writing only the
job's `flower/` folder, with a minimal environment."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from flctl.node.flower.superlink_runner import FlowerRunError

Wrap = Callable[[list[str]], list[str]]


def job_isolation(job_dir: Path) -> str:
    """The server's `job_isolation` for this job, as the daemon wrote it in the job's run.json (required when the
    file cannot be read: fail closed)."""
    from flctl.node.process.links import LinkError
    from flctl.node.server.job_messages import RUN_PLAN

    try:
        return RUN_PLAN.decode((job_dir / "run.json").read_bytes()).job_isolation
    except (OSError, LinkError):
        return "required"


def confinement(policy: str, python: Path, work: Path) -> tuple[Wrap, dict[str, str] | None]:
    """How to start Flower's server processes: a wrapper of their command line and the environment to start from
    (None: this process's), under `policy` (`required`, `preferred`, `off`); FlowerRunError when it is required and
    this machine cannot confine."""
    from flctl.node.site import sandbox

    if policy == "off":
        return list, None
    isolation = sandbox.available()
    if isolation.kind == "none":
        if policy == "required":
            raise FlowerRunError("the server cannot confine the Flower app's ServerApp here (no Landlock, not root); "
                                 "set job_isolation: preferred in the server's local/resources.yml to run it "
                                 "unconfined")
        return list, None
    if isolation.kind == "user":
        uid, gid = sandbox.user_ids(isolation.user)
        sandbox.chown_tree(work, uid, gid)
    real = Path(os.path.realpath(python))
    read = (*sandbox.SYSTEM_READ, *sandbox.python_paths(), str(python.parent.parent), str(real.parent),
            str(real.parent.parent))
    grants = sandbox.Grants(read=read, write=(str(work), *sandbox.SYSTEM_WRITE))
    tmp = work / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    env = sandbox.script_env(os.environ, job_env={}, allow=(), home=work, tmp=tmp)
    return (lambda command: sandbox.launcher(grants, isolation, command)), env
