"""A job built in Python: one class per workflow, checked when built, exported as the job folder `flctl job submit`
takes (job.yml, app/, and model/initial.safetensors when an initial model is given as weights)."""

from __future__ import annotations

import os
import shlex
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, ClassVar

from flctl.recipe.errors import RecipeInputError

if TYPE_CHECKING:
    import numpy as np

    from flctl.recipe.envs import Env
    from flctl.recipe.runs import Run

INITIAL_MODEL_FILE = "model/initial.safetensors"
"""Where an initial model given as weights (a torch module, a dict of arrays) goes in the exported job."""
_SKIPPED = ("__pycache__", ".git", "*.pyc")


class Job:
    """A job: a workflow and its arguments, and the script that runs at each site.

    `script` is the training script (a path on this machine); its folder is the job's app/ (everything in it is
    sent to the sites), unless `app_dir` names another folder holding it. `script_args` follow the script on its
    command line (a list, or one string split as a shell would: "--lr 0.1 --epochs 2"). `initial_model` is what
    round 0 sends every site: a torch module or a dict of name -> array (saved in the job as
    model/initial.safetensors), a safetensors file on this machine, or a function of the app as job.yml names it
    ("app/net.py:make_model": called once at the server, confined). `workflow_args` are the workflow's own
    arguments, those of job.yml's `workflow.args` (rounds, round_timeout_s…): an unknown one is refused, naming
    the ones allowed. Everything is checked here, so a wrong recipe fails where it is written.
    """

    workflow: ClassVar[str] = ""
    """The job.yml `workflow.type` a subclass runs; `Job` itself takes it as an argument."""

    def __init__(self, name: str, script: str | os.PathLike[str], *, workflow: str | None = None, min_sites: int = 1,
                 sites: str | Sequence[str] = "all", initial_model: Any = None, script_args: str | Sequence[str] = (),
                 app_dir: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None,
                 privacy_scope: str | None = None, **workflow_args: Any) -> None:
        self.workflow_type = workflow or self.workflow
        if not self.workflow_type:
            raise RecipeInputError("Job needs workflow=...; or use FedAvgJob, CyclicJob... (one class per workflow)")
        if workflow and self.workflow and workflow != self.workflow:
            raise RecipeInputError(f"{type(self).__name__} runs the {self.workflow} workflow, not {workflow}; use "
                                   "Job(workflow=...) for another")
        self.name = name
        self.script = Path(script).expanduser().absolute()
        self.app_dir = Path(app_dir).expanduser().absolute() if app_dir is not None else self.script.parent
        self.script_args = shlex.split(script_args) if isinstance(script_args, str) else [str(a) for a in script_args]
        self._check_script()
        self.initial_model, self._initial_params = _initial(initial_model, self.app_dir)
        self.spec = self._spec(min_sites, sites, dict(workflow_args), dict(env or {}), privacy_scope)

    # ---------------------------------------------------------------------------------------------- checks
    def _check_script(self) -> None:
        who = type(self).__name__
        if not self.script.is_file():
            raise RecipeInputError(f"{who}: the script {self.script} does not exist; pass script= the path of the "
                                   "training script on this machine")
        if self.script.suffix != ".py":
            raise RecipeInputError(f"{who}: the script {self.script} is not a Python file (.py)")
        if not self.app_dir.is_dir():
            raise RecipeInputError(f"{who}: app_dir {self.app_dir} is not a folder")
        if not self.script.is_relative_to(self.app_dir):
            raise RecipeInputError(f"{who}: the script {self.script} is not inside app_dir {self.app_dir}; the app "
                                   "folder is what is sent to the sites")

    def _spec(self, min_sites: int, sites: str | Sequence[str], args: dict[str, Any], env: dict[str, str],
              privacy_scope: str | None) -> dict[str, Any]:
        """job.yml as a dict, checked by the job.yml schema and the workflow's own arguments."""
        from pydantic import ValidationError

        from flctl.node.jobs.job_spec import JobSpec
        from flctl.node.workflows import WORKFLOWS
        from flctl.provisioner.schema_messages import message

        who = type(self).__name__
        if self.workflow_type not in WORKFLOWS:
            raise RecipeInputError(f"{who}: unknown workflow {self.workflow_type!r}; known: "
                                   f"{', '.join(sorted(WORKFLOWS))}")
        model = WORKFLOWS[self.workflow_type].Args
        try:
            model.model_validate(args)
        except ValidationError as exc:
            raise RecipeInputError("; ".join(f"{who}: {_where(err['loc'])}{message(err, model)}"
                                             for err in exc.errors())) from None
        script = PurePosixPath(self.script.relative_to(self.app_dir).as_posix())
        spec: dict[str, Any] = {"api_version": 1, "name": self.name,
                                "workflow": {"type": self.workflow_type, "args": args},
                                "sites": sites if isinstance(sites, str) else list(sites), "min_sites": min_sites,
                                "app": {"command": ["python", str(script), *self.script_args], "env": env}}
        if privacy_scope is not None:
            spec["privacy_scope"] = privacy_scope
        if self.initial_model is not None:
            spec["initial_model"] = self.initial_model
        elif WORKFLOWS[self.workflow_type].needs_initial_model:
            raise RecipeInputError(f"{who}: the {self.workflow_type} workflow updates a model from the start: pass "
                                   "initial_model= (a torch module, a dict of arrays, a safetensors file or "
                                   "'app/FILE.py:FUNCTION')")
        try:
            JobSpec.model_validate(spec)
        except ValidationError as exc:
            raise RecipeInputError("; ".join(f"{who}: {_where(err['loc'])}{message(err, JobSpec)}"
                                             for err in exc.errors())) from None
        return spec

    # ---------------------------------------------------------------------------------------------- output
    def export(self, folder: str | os.PathLike[str]) -> Path:
        """Write the job folder `flctl job submit` takes (job.yml, app/, the initial model) into `folder`, a new or
        empty folder; checked as `flctl job submit` checks it. Nothing is left half-written."""
        import yaml

        from flctl.node.errors import JobError
        from flctl.node.jobs.job_spec import load_job

        target = Path(folder).expanduser().absolute()
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise RecipeInputError(f"{target} exists and is not an empty folder; export into a new one")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        try:
            shutil.copytree(self.app_dir, tmp / "app", ignore=shutil.ignore_patterns(*_SKIPPED), dirs_exist_ok=True)
            if self._initial_params is not None:
                from flctl.node.wire import tensors

                (tmp / INITIAL_MODEL_FILE).parent.mkdir()
                tensors.write_file(tmp / INITIAL_MODEL_FILE, self._initial_params)
            (tmp / "job.yml").write_text(f"# Written by flctl.recipe.{type(self).__name__}.export\n"
                                         + yaml.safe_dump(self.spec, sort_keys=False))
            try:
                load_job(tmp, shown=str(target))
            except JobError as exc:
                raise RecipeInputError(str(exc)) from None
            if target.exists():
                target.rmdir()
            tmp.rename(target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return target

    def run(self, env: Env) -> Run:
        """Run the job in `env` (`SimEnv`, `LocalEnv`, `ProdEnv`); its run handle."""
        return env.run(self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, script={str(self.script)!r}, args={self.spec['workflow']})"


def _where(loc: Sequence[Any]) -> str:
    return f"{'.'.join(str(part) for part in loc)}: " if loc else ""


def _initial(model: Any, app_dir: Path) -> tuple[str | None, dict[str, np.ndarray] | None]:
    """(job.yml's `initial_model`, the weights to save in the job) of what `initial_model=` was given."""
    if model is None:
        return None, None
    if isinstance(model, (str, os.PathLike)):
        text = os.fspath(model)
        if text.endswith(".safetensors"):
            from flctl.node.wire import tensors

            path = Path(text).expanduser()
            try:
                return INITIAL_MODEL_FILE, tensors.read_file(path)
            except (OSError, ValueError) as exc:
                raise RecipeInputError(f"initial_model: cannot read {path}: {exc}") from None
        from flctl.node.jobs.initial_model import ModelFunction, parse

        try:
            ref = parse(text)
        except ValueError as exc:
            raise RecipeInputError(f"initial_model: {exc}") from None
        if isinstance(ref, ModelFunction) and not (app_dir / ref.in_app).is_file():
            raise RecipeInputError(f"initial_model: {app_dir / ref.in_app} does not exist (app/ is {app_dir})")
        return text, None
    return INITIAL_MODEL_FILE, _weights(model)


def _weights(model: Any) -> dict[str, np.ndarray]:
    """A copy of a torch module's state_dict, or of a mapping of names to arrays or tensors, as numpy arrays."""
    import numpy as np

    from flctl.node.wire import tensors

    if hasattr(model, "state_dict") and callable(model.state_dict):
        model = model.state_dict()
    if not isinstance(model, Mapping) or not model or not all(isinstance(key, str) for key in model):
        raise RecipeInputError(f"initial_model: a {type(model).__name__} is not a model; give a torch module, a "
                               "dict of name -> array, a .safetensors file or 'app/FILE.py:FUNCTION'")
    try:
        return {name: np.array(tensors.to_numpy(value)) for name, value in model.items()}
    except (TypeError, ValueError) as exc:
        raise RecipeInputError(f"initial_model: {exc}") from None


class FedAvgJob(Job):
    """FedAvg: rounds, round_timeout_s, evaluate_every, cross_site_eval, proximal_mu (FedProx)."""

    workflow = "fedavg"


class FedAvgMJob(Job):
    """FedAvg with server momentum: FedAvg's arguments and server_learning_rate, server_momentum."""

    workflow = "fedavgm"


class FedOptJob(Job):
    """FedOpt: FedAvg's arguments and optimizer (sgdm, adam, yogi, adagrad), server_lr, beta1, beta2, tau,
    momentum."""

    workflow = "fedopt"


class ScaffoldJob(Job):
    """SCAFFOLD: FedAvg's arguments and server_lr."""

    workflow = "scaffold"


class CyclicJob(Job):
    """Cyclic (the model passes from site to site): rounds, order, site_timeout_s, seed."""

    workflow = "cyclic"


class SwarmJob(Job):
    """Swarm learning (a site aggregates each round): rounds, round_timeout_s, aggregator, seed."""

    workflow = "swarm"


class FedBuffJob(Job):
    """FedBuff, asynchronous (sites at their own pace, a server step every buffer_size updates): updates,
    buffer_size, server_lr, staleness_function, staleness_exponent, hinge_a, hinge_b, max_staleness, weighting,
    site_timeout_s; needs initial_model."""

    workflow = "fedbuff"


class CrossSiteEvalJob(Job):
    """Cross-site evaluation alone: model (a safetensors file of the job; or initial_model=), timeout_s."""

    workflow = "cross_site_eval"


class InferenceJob(Job):
    """Federated inference: the model (initial_model=, needed: a torch module, a dict of arrays, a safetensors file,
    'app/FILE.py:FUNCTION', or 'job:<JOB_ID>' for a finished job's final model) run once at every site over its own
    data; returns (the metrics a site's answer may carry out), sum, timeout_s."""

    workflow = "inference"
