"""A job folder's `job.yml` (api_version 1) and `load_job`, which names file, line and field of every problem.

A job is a folder holding `job.yml` and `app/`, or a job file: any `NAME.yml` with `app/` beside it, so that
several jobs (say, one per workflow) share one app folder. A job file is the job.yml of a job made of it and that
app folder (`bundle.pack_job` packs exactly those two; a file named job.yml stands for its whole folder).

The pydantic models are the reference for the file: each field's description is its documentation.
```
api_version: 1
name: hello-numpy
workflow: {type: fedavg, args: {rounds: 3, round_timeout_s: 60}}
sites: all                      # or a list of site names
min_sites: 2
resources: {cpus: 1, memory_mb: 0, gpus: 0}   # optional: what each site gives the job
app: {command: [python, train.py], env: {}}   # also framework: pytorch|keras, compat: nvflare, external
privacy_scope: private          # optional: the sites' filters for it apply (default: each site's default_scope)
initial_model: app/net.py:make_model   # optional: round 0's model (or a safetensors file of the job, or job:<ID>)
transfer: {quantize: int8}      # optional: models travel quantized (fp16, bf16 or int8; block_size for int8)
checkpoints: {keep: 2}          # optional: only the newest 2 rounds' models stay on the server (default: all)
```
"""

from __future__ import annotations

import inspect
import re
import typing
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from flctl.node.errors import JobError
from flctl.node.jobs.bundle import APP_FOLDER, JOB_FILE, job_file_of
from flctl.node.jobs.metrics_spec import MetricsSpec
from flctl.node.workflows import WORKFLOWS
from flctl.node.workflows.base import Workflow, WorkflowArgs
from flctl.node.workflows.secure_sum import secure_mode_of
from flctl.provisioner.errors import InputError, Problem
from flctl.provisioner.names import check_simple_name
from flctl.provisioner.schema_messages import message
from flctl.provisioner.yaml_source import Loc, YamlDocument, format_loc, load_yaml

_JOB_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def check_job_name(name: str) -> str:
    if not _JOB_NAME.fullmatch(name):
        raise ValueError(f"'{name}' is not a valid job name; use 1-64 letters, digits, '.', '_' or '-', "
                         "starting with a letter or digit")
    return name


def _check_psi_job(name: str | None) -> str | None:
    return None if name is None else check_job_name(name)


def _check_env(env: dict[str, str]) -> dict[str, str]:
    for key in env:
        if not _ENV_NAME.fullmatch(key):
            raise ValueError(f"'{key}' is not a valid environment variable name; use letters, digits and '_'")
    return env


class FieldProblem(ValueError):
    """A check across fields that belongs to one of them (so `load_job` can point at its line)."""

    def __init__(self, loc: Loc, message: str) -> None:
        super().__init__(message)
        self.loc = loc


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WorkflowSpec(_Strict):
    """Which server-side workflow runs the job, and its arguments."""

    type: str = Field(description="A registered workflow type, e.g. fedavg")
    args: dict[str, Any] = Field(
        default_factory=dict, description="The workflow's arguments; each workflow documents its own (fedavg: rounds, "
        "round_timeout_s)"
    )

    @field_validator("type")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in WORKFLOWS:
            raise ValueError(f"unknown workflow type '{value}'; known: {', '.join(sorted(WORKFLOWS))}")
        return value


class Resources(_Strict):
    """What the job asks of each site; only the keys it states count (no block: it asks nothing, and runs as it
    always did). A site gives the job what it asks or makes it wait, and refuses a job that can never fit it
    (`flctl.node.site.placement`): its cores (the job's processes are pinned to them), memory (placement only:
    not a process limit) and GPUs (the script sees only its own through CUDA_VISIBLE_DEVICES)."""

    cpus: int = Field(1, ge=1, le=1 << 16, description="CPU cores the job's script is given at each site, pinned "
                      "to them (sched_setaffinity)")
    memory_mb: int = Field(0, ge=0, description="Memory the job needs at each site, in MiB: a site runs the job "
                           "when its running jobs leave this much of what it offers (0: no stated need)")
    gpus: int = Field(0, ge=0, le=1024, description="GPUs the job's script is given at each site, its own unless "
                      "the site shares GPUs (NVIDIA FLARE's resource_spec num_of_gpus)")
    gpu_memory_gb: float = Field(0, ge=0, description="GPU memory the job needs on each of its GPUs, in GiB "
                                 "(NVIDIA FLARE's mem_per_gpu_in_GiB); needs gpus")

    @model_validator(mode="after")
    def _gpu_memory_needs_gpus(self) -> Resources:
        if self.gpu_memory_gb and not self.gpus:
            raise FieldProblem(("gpu_memory_gb",), "asks memory on GPUs the job does not ask for: add gpus: 1 (or "
                               "more)")
        return self

    @model_serializer(mode="wrap")
    def _stated_only(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Only what the job stated, so that the server's copy of the spec asks what job.yml asks."""
        return {k: v for k, v in handler(self).items() if k in self.model_fields_set}


class AppSpec(_Strict):
    """The code that runs at each site, from the job's `app/` folder."""

    command: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=lambda: ["python", "train.py"], min_length=1,
        description="Command run in app/ at each site; a leading 'python' means the site's own interpreter",
    )
    env: Annotated[dict[str, str], AfterValidator(_check_env)] = Field(
        default_factory=dict, description="Extra environment variables for the command"
    )
    framework: Literal["numpy", "pytorch", "keras"] | None = Field(
        None, description="What the script's params are: numpy arrays or torch tensors (pytorch: received as "
        "tensors, net.load_state_dict(model.params) works as it is; keras: numpy arrays named by the Keras 3 "
        "model's weight paths, flctl.client.keras.load(model, params) and params=model). Default: numpy, or "
        "pytorch with compat: nvflare (as NVIDIA FLARE's ScriptRunner)")
    compat: Literal["nvflare"] | None = Field(
        None, description="Another framework's Client API the script is written for, run as it is: nvflare puts "
        "flctl's `nvflare.client` (NVIDIA FLARE 2.x's Client API) on this job's script path only; a real NVIDIA "
        "FLARE installed at a site is not used by the job")

    external: bool = Field(
        False, description="true: no command is run; a trainer the site runs itself attaches to the job with "
        "flctl.client.attach('<site workspace>/jobs/<job id>/agent') and gets its tasks (NVIDIA FLARE's agent)")
    attach_timeout_s: float = Field(
        300, gt=0, description="With external: true, how long a site waits for its trainer to attach before "
        "failing its part of the job, saying so")

    def params_framework(self) -> str:
        """What the script's params are: `framework`, else pytorch for compat nvflare, else numpy."""
        return self.framework or ("pytorch" if self.compat == "nvflare" else "numpy")

    def script(self) -> str | None:
        """The script of a `[python, SCRIPT, ...]` command, else None."""
        if len(self.command) >= 2 and self.command[0] == "python" and not self.command[1].startswith("-"):
            return self.command[1]
        return None


def _check_sites(value: Any) -> Any:
    """'all' or a non-empty list of distinct site names; problems point at the list item."""
    if value == "all":
        return value
    if not isinstance(value, list):
        raise ValueError("use 'all' or a list of site names")
    if not value:
        raise ValueError("name at least one site, or use 'all'")
    seen: set[str] = set()
    for i, site in enumerate(value):
        if not isinstance(site, str):
            raise FieldProblem((i,), "expected a site name")
        try:
            check_simple_name(site)
        except ValueError as exc:
            raise FieldProblem((i,), str(exc)) from None
        if site.lower() in seen:
            raise FieldProblem((i,), f"'{site}' is named twice")
        seen.add(site.lower())
    return value


def _check_initial_model(value: str | None) -> str | None:
    if value is not None:
        from flctl.node.jobs.initial_model import parse

        parse(value)
    return value


class TransferSpec(_Strict):
    """How models travel between the server and the sites, both ways (`flctl.node.wire.quantize`)."""

    quantize: Literal["fp16", "bf16", "int8"] | None = Field(
        None, description="Send models quantized, server -> site and site -> server, dequantized on arrival "
        "(aggregation stays in float32): fp16 or bf16 (float32/64 tensors narrowed to 2 bytes), or int8 "
        "(blockwise absmax: 1 byte a value and a float32 scale per block). Default: each tensor in its own dtype")
    block_size: int = Field(256, ge=8, le=1 << 20, description="int8 only: values per block, each block with its "
                            "own scale (smaller: closer values, more scales)")


class CheckpointSpec(_Strict):
    """Which round checkpoints the server keeps (`flctl.node.jobs.checkpoints`)."""

    keep: int | None = Field(
        None, ge=1, description="Keep the newest K rounds' global models (models/round-N.safetensors, with their "
        "workflow state); older ones are removed as each round is saved, models/final.safetensors always stays, "
        "and a restarted server resumes from the newest (default: every round's)")


class JobSpec(_Strict):
    """A job: what runs on the server (workflow), where (sites) and what runs at each site (app)."""

    api_version: Literal[1] = Field(description="Version of this file's format; 1")
    name: Annotated[str, AfterValidator(check_job_name)] = Field(
        description="Job name: 1-64 letters, digits, '.', '_' or '-'"
    )
    workflow: WorkflowSpec = Field(description="The server-side workflow and its arguments")
    sites: Annotated[Literal["all"] | list[str], BeforeValidator(_check_sites)] = Field(
        "all", description="'all' (every site connected when the job starts) or a list of site names"
    )
    min_sites: int = Field(1, ge=1, description="Fewest sites that must take part and answer each round")
    resources: Resources = Field(default_factory=Resources, description="What each site sets aside for the job")
    app: AppSpec = Field(default_factory=AppSpec, description="The command run at each site, from app/")
    privacy_scope: str | None = Field(
        None, min_length=1, description="The privacy scope the job asks of each site: the filters that site's "
        "local/privacy.yml lists for it apply to the job's tasks and results; a site without it refuses the job "
        "(default: each site's default_scope)")
    metrics: MetricsSpec = Field(default_factory=MetricsSpec, description="Where the job's metrics go besides "
                                 "flctl's own store: tensorboard, mlflow, wandb (see flctl.node.jobs.metrics_spec)")
    initial_model: Annotated[str | None, AfterValidator(_check_initial_model)] = Field(
        None, description="The model round 0 sends every site: a safetensors file of the job "
        "(model/initial.safetensors; for a job file, in app/), or a function of the app that returns a torch module "
        "or a dict of arrays (app/net.py:make_model), called once at the server, confined like a training script, "
        "or a finished job's final model on the server (job:<JOB_ID>; the submitter must be allowed to download "
        "that job) (default: none; round 0 sends an empty model)")
    transfer: TransferSpec = Field(default_factory=TransferSpec, description="How models travel: quantized or as "
                                   "they are (see TransferSpec)")
    checkpoints: CheckpointSpec = Field(default_factory=CheckpointSpec, description="How many round checkpoints "
                                        "the server keeps (see CheckpointSpec)")
    psi_job: Annotated[str | None, AfterValidator(_check_psi_job)] = Field(
        None, description="The name of an earlier psi job whose intersection this job reads: each site copies the "
        "one it kept (<site workspace>/psi/NAME/intersection.txt) to psi/intersection.txt in the job's workspace "
        "before the script starts, and refuses the job when it has none (vertical learning over the shared IDs)")

    @model_validator(mode="after")
    def _sites_fit(self) -> JobSpec:
        if isinstance(self.sites, list) and self.min_sites > len(self.sites):
            named = f"{len(self.sites)} site" + ("s" if len(self.sites) > 1 else "")
            raise FieldProblem(("min_sites",), f"{self.min_sites} is more than the {named} named in 'sites'")
        return self

    def site_names(self, available: list[str]) -> list[str]:
        """The sites the job runs at, given the sites `available` now."""
        return list(available) if self.sites == "all" else list(self.sites)

    def workflow_args(self) -> WorkflowArgs:
        """The workflow's arguments, validated by its Args model (raises pydantic's ValidationError)."""
        return WORKFLOWS[self.workflow.type].parse_args(self.workflow.args)


@dataclass(frozen=True)
class LoadedJob:
    """A valid job: its folder (where app/ is) and, for a job file, that file."""

    spec: JobSpec
    folder: Path
    args: WorkflowArgs
    job_file: Path | None = None

    @property
    def spec_path(self) -> Path:
        """The file the spec was read from: the job file, else the folder's job.yml."""
        return self.job_file or self.folder / JOB_FILE

    def create_workflow(self) -> Workflow:
        """The job's workflow, given job.yml's min_sites when it takes one."""
        cls: Any = WORKFLOWS[self.spec.workflow.type]
        if "min_sites" in inspect.signature(cls).parameters:
            return typing.cast(Workflow, cls(self.args, min_sites=self.spec.min_sites))
        return typing.cast(Workflow, cls(self.args))


def load_job(path: Path, shown: str | None = None) -> LoadedJob:
    """Read and check the job at `path` (a job folder, or a job file with app/ beside it); raise JobError listing
    every problem (file, line, field).

    `shown` names the folder in messages instead of its path (say, when it is a temporary copy).
    """
    try:
        return _load(path)
    except JobError as exc:
        if shown is None:
            raise
        where = str(path)
        raise JobError([replace(p, file=p.file.replace(where, shown, 1), message=p.message.replace(where, shown))
                        for p in exc.problems]) from None


def _load(given: Path) -> LoadedJob:
    job_file = job_file_of(given)
    folder = given.parent if given.is_file() else given
    path = job_file or folder / JOB_FILE
    if not folder.is_dir():
        raise JobError([Problem(str(folder), None, "", "is not a folder; a job is a folder with job.yml and app/, "
                                "or a job file (NAME.yml) with app/ beside it")])
    if not path.is_file():
        raise JobError([Problem(str(path), None, "", f"no {JOB_FILE} in {folder}; a job is a folder with "
                                "job.yml and app/")])
    try:
        doc = load_yaml(path)
    except InputError as exc:
        raise JobError(exc.problems) from None
    spec, args, problems = _validate(doc)
    if spec is not None and args is not None:
        problems += _check_transfer(doc, spec, args)
    app = spec.app if spec is not None else _app_alone(doc)
    if app is not None:  # its script is checked even when other fields are wrong: every problem at once
        problems += _check_app(doc, folder, app)
    if spec is not None and spec.initial_model:
        problems += _check_initial_model_file(doc, folder, spec.initial_model, job_file is not None)
    if problems or spec is None or args is None:
        raise JobError(sorted(problems, key=lambda p: (p.line or 0, p.field)))
    return LoadedJob(spec, folder, args, job_file)


def _validate(doc: YamlDocument) -> tuple[JobSpec | None, WorkflowArgs | None, list[Problem]]:
    def where(loc: Loc, message: str) -> Problem:
        return Problem(doc.path, doc.line_of(loc), format_loc(loc), message)

    if not isinstance(doc.data, dict):
        return None, None, [where((), "expected a mapping with api_version, name, workflow, sites, min_sites and app")]
    problems: list[Problem] = []
    spec: JobSpec | None = None
    try:
        spec = JobSpec.model_validate(doc.data)
    except ValidationError as exc:
        problems += [where(*_located(err, JobSpec)) for err in exc.errors()]
    args: WorkflowArgs | None = None
    workflow = doc.data.get("workflow")
    kind = workflow.get("type") if isinstance(workflow, dict) else None
    raw = workflow.get("args", {}) if isinstance(workflow, dict) else None
    if isinstance(kind, str) and kind in WORKFLOWS and isinstance(raw, dict):
        model = WORKFLOWS[kind].Args
        try:
            args = model.model_validate(raw)
        except ValidationError as exc:
            for err in exc.errors():
                loc, message = _located(err, model)
                problems.append(where(("workflow", "args", *loc), message))
        if WORKFLOWS[kind].needs_initial_model and spec is not None and not spec.initial_model:
            problems.append(where(("workflow", "type"), f"{kind} updates a model from the start: give the job an "
                                  "initial_model (a safetensors file of the job, or app/FILE.py:FUNCTION)"))
    return spec, args, problems


def _check_transfer(doc: YamlDocument, spec: JobSpec, args: WorkflowArgs) -> list[Problem]:
    """Quantized transfer and secure aggregation exclude each other: masked or encrypted updates are not floats."""
    mode = secure_mode_of(args)
    if not spec.transfer.quantize or mode == "none":
        return []
    loc = ("transfer", "quantize")
    return [Problem(doc.path, doc.line_of(loc), format_loc(loc), f"{spec.transfer.quantize} cannot be combined with "
                    f"the workflow's secure aggregation ({mode}): masked or encrypted updates are not floats to "
                    "quantize; drop one of them")]


def _app_alone(doc: YamlDocument) -> AppSpec | None:
    """job.yml's `app` when it is valid on its own (the rest of the file may not be), else None."""
    raw = doc.data.get("app", {}) if isinstance(doc.data, dict) else None
    try:
        return AppSpec.model_validate(raw)
    except ValidationError:
        return None


def _check_app(doc: YamlDocument, folder: Path, app_spec: AppSpec) -> list[Problem]:
    app = folder / APP_FOLDER
    if app_spec.external:  # nothing runs from the job: a trainer the site runs itself attaches
        return []
    if not app.is_dir():
        return [Problem(doc.path, None, "", f"no {APP_FOLDER}/ folder beside {Path(doc.path).name}; put the code "
                        f"that runs at each site in {app}")]
    script = app_spec.script()
    if script is None:
        return []
    loc: Loc = ("app", "command", 1)
    given = isinstance(doc.data.get("app"), dict) and "command" in doc.data["app"]
    line = doc.line_of(loc) if given else None
    field = format_loc(loc) if given else "app.command"
    relative = PurePosixPath(script)
    if relative.is_absolute() or ".." in relative.parts:
        return [Problem(doc.path, line, field, f"'{script}' must be a path inside {APP_FOLDER}/")]
    if not (app / relative).is_file():
        return [Problem(doc.path, line, field, f"'{script}' is not in {APP_FOLDER}/ ({app / relative} is missing)")]
    return []


def _check_initial_model_file(doc: YamlDocument, folder: Path, value: str, is_job_file: bool) -> list[Problem]:
    """The file `initial_model` names is in the job (a job file packs only app/ beside it)."""
    from flctl.node.jobs.initial_model import FinishedJob, ModelFile, parse

    ref = parse(value)
    if isinstance(ref, FinishedJob):  # on the server it is submitted to: resolved there, at submit
        return []
    path = ref.path if isinstance(ref, ModelFile) else ref.file
    line = doc.line_of(("initial_model",))
    if is_job_file and PurePosixPath(path).parts[0] != APP_FOLDER:
        return [Problem(doc.path, line, "initial_model", f"'{path}' is not sent: a job file packs only the "
                        f"{APP_FOLDER}/ beside it; put the file in {APP_FOLDER}/")]
    if not (folder / path).is_file():
        return [Problem(doc.path, line, "initial_model", f"'{path}' is not in the job ({folder / path} is missing)")]
    return []


def _located(err: Any, model: type[BaseModel]) -> tuple[Loc, str]:
    """A pydantic error as (location, one-sentence message)."""
    loc: Loc = tuple(err["loc"])
    cause = (err.get("ctx") or {}).get("error")
    if isinstance(cause, FieldProblem):
        return (*loc, *cause.loc), str(cause)
    return loc, message(err, model)
