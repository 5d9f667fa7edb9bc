"""A job's initial model (job.yml `initial_model`), so that round 0 sends every site the same weights.

    initial_model: model/initial.safetensors      a safetensors file in the job (for a job file: in app/)
    initial_model: app/net.py:make_model          a function of the app, called once at the server
    initial_model: job:3f2a9c1b7e4d               a finished job's final model, from the server's own store

`job:<JOB_ID>` is resolved by the server when the job is submitted (`resolve_finished_job`): refused when no such
job is there, when the submitter may not download it (the same right as `flctl job download`), or when it has no
final model (it failed, or is still running); else the server keeps a link to that model in the new job's folder
(`FROM_JOB_FILE`, outside models/: the new job's download does not carry it), so the job runs with it even if the
finished job is removed meanwhile. The simulator has no store, so it refuses `job:`: download the job
(`flctl job download ID`) and name its models/final.safetensors, copied into the job, instead.

A function is job code: the server (or the simulator) never imports it. `build` runs it in a child process
(`flctl.node.jobs.model_function`) confined the way a site confines a training
script (`flctl.node.site.sandbox`: Landlock, or another user under root; a minimal environment), reading only the
app, the Python installation and flctl, writing only one scratch folder. The child writes what the function returned
(a torch module's `state_dict()`, or a mapping of names to arrays or tensors) as safetensors; the parent reads that
file back with flctl's own safetensors reader, as it reads any site's answer.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from flctl.node.jobs.bundle import APP_FOLDER, inner_path
from flctl.node.jobs.tasks import Params
from flctl.node.workflows.base import WorkflowError

if TYPE_CHECKING:
    from flctl.node.site.sandbox import Isolation

BUILD_TIMEOUT_S = 300.0
_FUNCTION = re.compile(r"(?P<file>[^:]+\.py):(?P<name>[A-Za-z_][A-Za-z0-9_]*)")
JOB_PREFIX = "job:"
_JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
FROM_JOB_FILE = "initial-from-job.safetensors"
"""Where the server keeps, in a job's folder, the finished job's model its `initial_model: job:<ID>` names."""


class InitialModelError(WorkflowError):
    """The initial model could not be read or built; the job fails with this sentence."""


@dataclass(frozen=True)
class ModelFile:
    """A safetensors file of the job, relative to the job folder."""

    path: str


@dataclass(frozen=True)
class ModelFunction:
    """A function of the app: `file` relative to the job folder (it starts with app/), `name` the function."""

    file: str
    name: str

    @property
    def in_app(self) -> str:
        """The file relative to app/."""
        return str(PurePosixPath(self.file).relative_to(APP_FOLDER))


@dataclass(frozen=True)
class FinishedJob:
    """A finished job's final model, on the server the job is submitted to."""

    job_id: str


InitialModel = ModelFile | ModelFunction | FinishedJob


def parse(value: str) -> InitialModel:
    """job.yml's `initial_model` (pure); ValueError with what is allowed."""
    if value.startswith(JOB_PREFIX):
        job_id = value[len(JOB_PREFIX):]
        if not _JOB_ID.fullmatch(job_id):
            raise ValueError(f"'{value}' does not name a job: use job:<JOB_ID> as `flctl job ls` shows it "
                             "(letters, digits, '.', '_' or '-')")
        return FinishedJob(job_id)
    match = _FUNCTION.fullmatch(value)
    if match:
        file = match["file"]
        try:
            inner = inner_path(file)
        except ValueError:
            raise ValueError(f"'{file}' must be a path inside the job's {APP_FOLDER}/ folder") from None
        if inner.parts[0] != APP_FOLDER or len(inner.parts) < 2:
            raise ValueError(f"'{file}' must be in {APP_FOLDER}/ (the code that is sent); e.g. "
                             f"{APP_FOLDER}/net.py:make_model")
        return ModelFunction(str(inner), match["name"])
    if value.endswith(".safetensors"):
        try:
            return ModelFile(str(inner_path(value)))
        except ValueError:
            raise ValueError(f"'{value}' must be a path inside the job folder") from None
    raise ValueError(f"'{value}' is neither a safetensors file of the job (model/initial.safetensors) nor a function "
                     f"of its app ({APP_FOLDER}/net.py:make_model), nor a finished job's model (job:<JOB_ID>)")


def load(value: str, job_file: Callable[[str], bytes], build_function: Callable[[ModelFunction], Params],
         from_job: Path | None = None) -> Params:
    """The initial model job.yml names: a file read through `job_file` (the Federation's), a function built by
    `build_function`, or (job:<ID>) the file `from_job` the server kept at submit; InitialModelError saying why not."""
    from flctl.node.wire import tensors

    ref = parse(value)
    if isinstance(ref, ModelFunction):
        return build_function(ref)
    if isinstance(ref, FinishedJob):
        if from_job is None:
            raise InitialModelError(f"initial_model: {value} names a job on a server, and a simulation has none: "
                                    f"download it (flctl job download {ref.job_id}) and name its "
                                    "models/final.safetensors, copied into the job")
        try:
            return tensors.read_file(from_job)
        except (OSError, ValueError) as exc:
            raise InitialModelError(f"initial_model: the model of job {ref.job_id} kept at submit cannot be read: "
                                    f"{exc}") from None
    try:
        params = tensors.decode(job_file(ref.path))
    except (OSError, ValueError) as exc:
        raise InitialModelError(f"initial_model: cannot read {ref.path!r} from the job: {exc}") from None
    if not params:
        raise InitialModelError(f"initial_model: {ref.path!r} holds no tensors")
    return params


def build(ref: ModelFunction, app_dir: Path, work: Path, isolation: Isolation,
          timeout_s: float = BUILD_TIMEOUT_S) -> Params:
    """Call `ref` in a child confined by `isolation` to reading `app_dir`, Python and flctl
    and writing `work` (made here); its model, read back from the file it wrote. InitialModelError when the function
    fails, returns no model, or runs past `timeout_s`."""
    from flctl.node.site import sandbox
    from flctl.node.wire import tensors

    work.mkdir(parents=True, exist_ok=True)
    out = work / "initial.safetensors"
    tmp = work / "tmp"
    tmp.mkdir(exist_ok=True)
    env = sandbox.script_env(os.environ, job_env={}, allow=(), home=work, tmp=tmp)
    env["PYTHONPATH"] = str(_flctl_path(work / "python"))
    if isolation.kind == "user":
        uid, gid = sandbox.user_ids(isolation.user)
        sandbox.chown_tree(work, uid, gid)
    grants = sandbox.Grants(read=(*sandbox.SYSTEM_READ, *sandbox.python_paths(), *sandbox.package_dirs(),
                                  str(app_dir)),
                            write=(str(work), *sandbox.SYSTEM_WRITE))
    command = sandbox.launcher(grants, isolation, [sys.executable, "-m", "flctl.node.jobs.model_function",
                                                   str(app_dir), ref.in_app, ref.name, str(out)])
    where = f"initial_model {ref.file}:{ref.name}"
    try:
        done = subprocess.run(command, cwd=app_dir, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise InitialModelError(f"{where} ran past {timeout_s:.0f} s") from None
    if done.returncode != 0:
        lines = [line for line in (done.stderr or "").splitlines() if line.strip()]
        raise InitialModelError(f"{where} failed: {lines[-1] if lines else f'exit code {done.returncode}'}")
    try:
        params = tensors.read_file(out)
    except (OSError, ValueError) as exc:
        raise InitialModelError(f"{where} wrote no readable model: {exc}") from None
    if not params:
        raise InitialModelError(f"{where} returned a model without tensors")
    return params


def _flctl_path(folder: Path) -> Path:
    """`folder` holding only a `flctl` package that links to this flctl's `node` (as a training script's path does,
    `flctl.node.client.script_bridge`): the child imports the flctl the parent runs, never another one installed."""
    import flctl

    top = Path(flctl.__file__).resolve().parent
    package = folder / "flctl"
    package.mkdir(parents=True, exist_ok=True)
    for name in ("__init__.py", "node"):
        link = package / name
        if not link.exists():
            link.symlink_to((top / name).resolve(), target_is_directory=name == "node")
    return folder


def confinement(policy: str) -> Isolation:
    """How the server confines the model function, under its local/resources.yml `job_isolation` (`required`,
    `preferred`, `off`); InitialModelError when it is required and this machine cannot confine."""
    from flctl.node.site import sandbox

    if policy == "off":
        return sandbox.Isolation("none")
    isolation = sandbox.available()
    if isolation.kind == "none" and policy == "required":
        raise InitialModelError("initial_model: the server cannot confine job code here (no Landlock, not root), "
                                "so it will not call the app's model function; give a safetensors file instead, or "
                                "set job_isolation: preferred in the server's local/resources.yml")
    return isolation


def build_from_bundle(ref: ModelFunction, bundle: Path, work: Path, policy: str) -> Params:
    """`build` at the server: the app unpacked from the job's `bundle` (safely) into `work`, removed afterwards."""
    import shutil

    from flctl.node.jobs.bundle import extract_bundle

    isolation = confinement(policy)
    shutil.rmtree(work, ignore_errors=True)
    try:
        extract_bundle(bundle.read_bytes(), work / "job")
        return build(ref, work / "job" / APP_FOLDER, work / "out", isolation)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def resolve_finished_job(value: str, jobs_dir: Path, job_dir: Path) -> None:
    """At submit, for `initial_model: job:<ID>` (`value`; nothing for another kind): keep a link to job ID's final
    model (`jobs_dir/ID/models/final.safetensors`) as `job_dir/FROM_JOB_FILE`, a copy where a link cannot be made.
    ValueError saying what is wrong (the caller checked that the job exists and may be read)."""
    import shutil

    ref = parse(value)
    if not isinstance(ref, FinishedJob):
        return
    final = jobs_dir / ref.job_id / "models" / "final.safetensors"
    if not final.is_file():
        raise ValueError(f"job {ref.job_id} has no final model (only a job that finished training has one; "
                         f"`flctl job show {ref.job_id}` says how it ended)")
    target = job_dir / FROM_JOB_FILE
    try:
        os.link(final, target)
    except OSError:
        shutil.copyfile(final, target)
