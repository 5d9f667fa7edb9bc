"""FedBuff, buffered asynchronous aggregation (Nguyen et al. 2022, "Federated Learning with Buffered Asynchronous
Aggregation", Algorithm 1): no rounds that wait for the slowest site. Every site trains the newest model the server
has; as soon as it answers, its update goes into a buffer and the site gets the newest model again. Every
`buffer_size` updates the server takes a step and the model's version goes up by one:

    x <- x + server_lr * sum_i c_i * s(staleness_i) * delta_i,     staleness_i = version now - version site i trained

with `delta_i` the site's model minus the model it was sent (or the diff it sent), `c_i` 1/K (`weighting:
uniform`, the paper's) or n_i / sum n (`examples`), and `s` the staleness weight: `polynomial`, (1 + s)^-a (a = 0.5:
the paper's 1/sqrt(1 + s)), `constant`, 1, or `hinge` (Xie et al. 2019's FedAsync), 1 up to b, then 1/(a(s - b) + 1).

An update staler than `max_staleness` is refused, and so is one from a model version the server never made or no
longer holds (a site saying in its answer's meta `model_version` that it trained an older model than the task's): the
reason goes to the job's log. A site that fails or stays silent for `site_timeout_s` rests until the next version,
then gets the newest model again (a site that rejoined trains again). Each version is a round for the rest of flctl:
`round-N` checkpoints, `flctl job show`'s progress, each site's metrics of the answers it went into (with
`staleness`); the report `fedbuff` counts each site's answers, refusals and staleness.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, cast

from pydantic import Field, model_validator

from flctl.node.jobs.tasks import PARAMS_TYPE, Params, SiteFailure, Task, TaskKind, TaskResult
from flctl.node.workflows.base import AsyncFederation, Federation, Workflow, WorkflowArgs, WorkflowError
from flctl.node.workflows.state import WorkflowState

if TYPE_CHECKING:
    import numpy as np

MODEL_VERSION = "model_version"
"""The meta key of a task (and, optionally, of an answer) holding the version of the model trained."""

StalenessFunction = Literal["polynomial", "constant", "hinge"]


class FedBuffArgs(WorkflowArgs):
    """`workflow.args` of a `fedbuff` job."""

    updates: int = Field(ge=1, description="How many times the server updates the model (its final version)")
    buffer_size: int = Field(ge=1, description="K: the sites' updates the server buffers for each step of the model")
    server_lr: float = Field(1.0, gt=0, description="The server's learning rate on the buffered update")
    staleness_function: StalenessFunction = Field(
        "polynomial", description="How an update is weighted by its staleness s: polynomial, (1 + s)^-a; constant, 1; "
                                  "hinge, 1 up to b, then 1/(a(s - b) + 1)")
    staleness_exponent: float | None = Field(None, gt=0, description="polynomial: a (default 0.5, 1/sqrt(1 + s))")
    hinge_a: float | None = Field(None, gt=0, description="hinge: a, how fast the weight falls past b (default 10)")
    hinge_b: int | None = Field(None, ge=0, description="hinge: b, the staleness weighted fully (default 4)")
    max_staleness: int | None = Field(None, ge=0, description="Refuse updates staler than this many versions "
                                                              "(none: weigh them all)")
    weighting: Literal["uniform", "examples"] = Field(
        "uniform", description="uniform: each buffered update counts 1/K (the paper's); examples: by num_examples")
    site_timeout_s: float = Field(3600.0, gt=0, description="Seconds one site's training task may take; a silent "
                                                            "site rests until the next version")

    @model_validator(mode="after")
    def _parameters_fit_the_function(self) -> FedBuffArgs:
        given = {"staleness_exponent": self.staleness_exponent, "hinge_a": self.hinge_a, "hinge_b": self.hinge_b}
        belongs = {"staleness_exponent": "polynomial", "hinge_a": "hinge", "hinge_b": "hinge"}
        for name, value in given.items():
            if value is not None and belongs[name] != self.staleness_function:
                raise ValueError(f"{name} is for staleness_function: {belongs[name]}, not "
                                 f"{self.staleness_function}")
        return self

    @property
    def rounds(self) -> int:
        """The versions the job makes: what `flctl job show`, the console and the simulator count as rounds."""
        return self.updates

    def weight(self, staleness: int) -> float:
        """s(staleness): how much an update that many versions old counts."""
        return staleness_weight(self.staleness_function, staleness, self.staleness_exponent, self.hinge_a,
                                self.hinge_b)


def staleness_weight(function: str, staleness: int, exponent: float | None = None, hinge_a: float | None = None,
                     hinge_b: int | None = None) -> float:
    """The weight of an update `staleness` versions old under `function` (defaults: a = 0.5; hinge a = 10, b = 4)."""
    if staleness < 0:
        raise ValueError(f"staleness {staleness} is negative")
    if function == "constant":
        return 1.0
    if function == "polynomial":
        return float((1.0 + staleness) ** -(0.5 if exponent is None else exponent))
    if function == "hinge":
        a, b = 10.0 if hinge_a is None else hinge_a, 4 if hinge_b is None else hinge_b
        return 1.0 if staleness <= b else 1.0 / (a * (staleness - b) + 1.0)
    raise ValueError(f"unknown staleness function {function!r}")


class UpdateBuffer:
    """The buffered updates of one step: sum_i c_i s_i delta_i, kept in the sum dtype of FedAvg's `WeightedSum`."""

    def __init__(self, model: Params, weighting: str) -> None:
        self._model = model
        self._weighting = weighting
        self._sum: dict[str, np.ndarray] = {}
        self._examples = 0
        self.count = 0

    def add(self, delta: Params, weight: float, num_examples: int) -> None:
        """Add one update, weighted by its staleness weight (and its examples, `weighting: examples`)."""
        import numpy as np

        from flctl.node.workflows.aggregation import accumulator_dtype

        factor = weight * (num_examples if self._weighting == "examples" else 1)
        for name, value in delta.items():
            total = self._sum.get(name)
            if total is None:
                total = self._sum[name] = np.zeros(value.shape, accumulator_dtype(self._model[name].dtype))
            total += np.asarray(value, total.dtype) * total.dtype.type(factor)
        self._examples += num_examples
        self.count += 1

    def step(self, server_lr: float) -> Params:
        """The next model: the model plus server_lr times the buffered update, divided by K (or by the examples),
        each tensor in the model's dtype."""
        import numpy as np

        divisor = float(self._examples if self._weighting == "examples" else self.count)
        out: Params = {}
        for name, value in self._model.items():
            total = self._sum[name]
            update = total * total.dtype.type(server_lr / divisor) if divisor else total * 0
            moved = np.asarray(value, total.dtype) + update
            out[name] = (np.rint(moved) if value.dtype.kind in "iub" else moved).astype(value.dtype)
        return out


@dataclass
class _SiteTally:
    """What one site's answers came to over the job (the `fedbuff` report)."""

    accepted: int = 0
    refused: int = 0
    failed: int = 0
    staleness_sum: int = 0
    staleness_max: int = 0
    reasons: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        mean = self.staleness_sum / self.accepted if self.accepted else 0.0
        return {"accepted": self.accepted, "refused": self.refused, "failed": self.failed,
                "staleness_mean": round(mean, 6), "staleness_max": self.staleness_max,
                "refusals": self.reasons[-5:]}


class FedBuff(Workflow):
    """Sites train at their own pace; the server steps the model every `buffer_size` updates, weighting stale ones
    down."""

    type_name: ClassVar[str] = "fedbuff"
    Args: ClassVar[type[WorkflowArgs]] = FedBuffArgs
    needs_initial_model: ClassVar[bool] = True  # every answer is an update of a model the server has

    def __init__(self, args: WorkflowArgs, min_sites: int = 1) -> None:
        super().__init__(args, min_sites)
        self.settings = cast(FedBuffArgs, args)  # checked by Workflow.__init__
        self.tally: dict[str, _SiteTally] = {}

    def run(self, fed: Federation, initial: Params | None, start_round: int = 0) -> Params:
        """Make versions `start_round + 1`..`updates` (version v is saved as `round-<v-1>`)."""
        if not all(callable(getattr(fed, name, None)) for name in ("post", "next_answer")):
            raise WorkflowError(f"this federation ({type(fed).__name__}) cannot hold a task open at each site at "
                                "once, which fedbuff needs")
        return _Run(self, cast(AsyncFederation, fed), dict(initial) if initial else {}, start_round).go()

    def state(self) -> WorkflowState:
        return WorkflowState({"tally": {site: vars(t) for site, t in sorted(self.tally.items())}})

    def restore(self, state: WorkflowState) -> None:
        saved = state.values.get("tally")
        try:
            if not isinstance(saved, dict):
                raise TypeError("not a mapping")
            self.tally = {str(site): _SiteTally(**values) for site, values in saved.items()}
        except TypeError as exc:
            raise WorkflowError(f"the saved fedbuff state is damaged (tally {saved!r}: {exc})") from None


class _Unusable(Exception):
    """A site's answer does not fit the model: the site rests, as a failed one does."""


class _Run:
    """One run of the workflow: the model, its version, the buffer and which site trains which version."""

    def __init__(self, flow: FedBuff, fed: AsyncFederation, model: Params, start: int) -> None:
        self.flow, self.fed, self.args = flow, fed, flow.settings
        self.model = model
        self.version = start
        self.saved = f"round-{start - 1}" if model and start > 0 else ""
        self.bases: dict[int, Params] = {start: model}  # version -> its model (once saved: mapped) while trained
        self.open: dict[str, tuple[str, int]] = {}  # task id -> (site, version sent)
        self.resting: dict[str, str] = {}  # site -> why it is not training now
        self.buffer = UpdateBuffer(model, self.args.weighting)
        self.in_step: dict[str, list[tuple[dict[str, float], int]]] = {}  # site -> its answers' (metrics, staleness)

    def go(self) -> Params:
        if not self.model:
            raise WorkflowError("fedbuff needs a model to update from the start: give job.yml an initial_model")
        sites = self.fed.sites()
        if len(sites) < self.flow.min_sites:
            raise WorkflowError(f"{self.flow.min_sites} sites are required but the job has {len(sites)}")
        for site in sites:
            self.post(site)
        while self.version < self.args.updates:
            got = self.fed.next_answer(self.args.site_timeout_s)
            if got is None:
                raise WorkflowError(f"version {self.version + 1}: no site is training" + self._why_resting())
            task_id, answer = got
            site, based_on = self.open.pop(task_id)
            if isinstance(answer, SiteFailure):
                self._rest(site, answer.reason)
            elif self._take(site, based_on, answer):
                if self.buffer.count >= self.args.buffer_size:
                    self._step()
                    self._wake_resting()
                self.post(site)
            self._forget_bases()
        self.fed.save_model("final", self.model, saved_as=self.saved)
        self.fed.save_report("fedbuff", self.report())
        return self.model

    def post(self, site: str) -> None:
        """Send the newest model to `site`."""
        meta = {MODEL_VERSION: self.version, "updates": self.args.updates, "rounds": self.args.updates}
        task = Task(TaskKind.TRAIN, self.version, self.model, meta=meta, saved_as=self.saved)
        self.open[self.fed.post(task, site, self.args.site_timeout_s)] = (site, self.version)
        self.bases.setdefault(self.version, self.model)

    def _take(self, site: str, sent: int, answer: TaskResult) -> bool:
        """Buffer the site's update, or refuse it saying why; False when the site sent an unusable model (it rests
        then, as a failed site does)."""
        tally = self.flow.tally.setdefault(site, _SiteTally())
        try:
            based_on = self._based_on(sent, answer)
            staleness = self.version - based_on
            limit = self.args.max_staleness
            if limit is not None and staleness > limit:
                raise ValueError(f"it trained version {based_on}, {staleness} versions old (max_staleness {limit})")
            delta = self._delta(based_on, answer)
        except ValueError as exc:
            tally.refused += 1
            tally.reasons.append(f"version {self.version}: {exc}")
            self.fed.log(f"version {self.version}: {site}'s update refused: {exc}")
            return True
        except _Unusable as exc:
            self._rest(site, f"it sent an unusable model: {exc}")
            return False
        self.resting.pop(site, None)
        self.buffer.add(delta, self.args.weight(staleness), answer.num_examples)
        tally.accepted += 1
        tally.staleness_sum += staleness
        tally.staleness_max = max(tally.staleness_max, staleness)
        self.in_step.setdefault(site, []).append((dict(answer.metrics), staleness))
        return True

    def _based_on(self, sent: int, answer: TaskResult) -> int:
        """The version the answer trained: its meta's `model_version` when it says one, else the task's."""
        claimed = answer.meta.get(MODEL_VERSION, sent)
        if not isinstance(claimed, int) or isinstance(claimed, bool):
            raise ValueError(f"its meta's {MODEL_VERSION} {claimed!r} is not a version number")
        if not 0 <= claimed <= self.version:
            raise ValueError(f"it trained model version {claimed}, which the server never made (it is at version "
                             f"{self.version})")
        return claimed

    def _delta(self, based_on: int, answer: TaskResult) -> Params:
        """What the site's training changed: its diff as sent, or its model minus the model it trained. ValueError
        when the model it trained is not known; _Unusable when its answer does not fit the model (names, shapes,
        dtypes, finite values)."""
        import numpy as np

        from flctl.node.workflows.aggregation import WeightedSum, accumulator_dtype

        kind = answer.meta.get(PARAMS_TYPE, "full")
        try:
            if kind not in ("full", "diff"):
                raise ValueError(f"params_type {kind!r} is neither 'full' nor 'diff'")
            WeightedSum(like=self.model, like_name="the model").check(answer.params, answer.site)
        except ValueError as exc:
            raise _Unusable(str(exc)) from None
        if kind == "diff":
            return dict(answer.params)
        base = self.bases.get(based_on)
        if base is None:
            held = ", ".join(str(v) for v in sorted(self.bases))
            raise ValueError(f"it trained model version {based_on}, which the server no longer holds (it holds "
                             f"{held}), so its update is unknown; send a diff (params_type: diff) or train the "
                             "task's model")
        return {name: np.asarray(value, accumulator_dtype(base[name].dtype)) - np.asarray(
            base[name], accumulator_dtype(base[name].dtype)) for name, value in answer.params.items()}

    def _step(self) -> None:
        """Apply the buffer: the next version, checkpointed and recorded as a round."""
        from statistics import fmean

        round_no, before = self.version, self.saved
        self.model = self.buffer.step(self.args.server_lr)
        if before and round_no in self.bases:  # sites still training it: read from its checkpoint, not held
            self.bases[round_no] = self.fed.load_model(before)
        self.version += 1
        self.flow.checkpoint(self.fed, round_no, self.model)
        self.saved = f"round-{round_no}"
        metrics: dict[str, dict[str, float]] = {}
        for site, answers in self.in_step.items():
            names = {name for values, _ in answers for name in values}
            metrics[site] = {name: fmean(values[name] for values, _ in answers if name in values) for name in names}
            metrics[site]["staleness"] = fmean(staleness for _, staleness in answers)
        stale = [s for answers in self.in_step.values() for _, s in answers]
        self.fed.log(f"version {self.version} of {self.args.updates}: {self.buffer.count} updates from "
                     f"{len(self.in_step)} sites ({', '.join(sorted(self.in_step))}), staleness "
                     f"{min(stale)}-{max(stale)}")
        self.fed.record_round(round_no, metrics)
        self.buffer = UpdateBuffer(self.model, self.args.weighting)
        self.in_step = {}
        self.bases[self.version] = self.model

    def _rest(self, site: str, reason: str) -> None:
        """A site failed, was silent or sent an unusable model: it rests until the next version; fewer than
        `min_sites` sites training ends the job."""
        if site not in self.resting:
            self.flow.tally.setdefault(site, _SiteTally()).failed += 1
            self.fed.log(f"version {self.version}: {site} failed: {reason}; it gets the newest model at the next "
                         "version")
        self.resting[site] = reason
        training = {site for site, _ in self.open.values()}
        if len(training) < self.flow.min_sites:
            raise WorkflowError(f"version {self.version + 1}: {len(training)} sites are training, "
                                f"{self.flow.min_sites} required" + self._why_resting())

    def _wake_resting(self) -> None:
        """A new version: the resting sites get it (one that is still down fails again at once, silently)."""
        for site in sorted(self.resting):
            self.post(site)

    def _forget_bases(self) -> None:
        """Keep only the models some site is training, and the newest."""
        wanted = {version for _, version in self.open.values()} | {self.version}
        self.bases = {version: model for version, model in self.bases.items() if version in wanted}

    def _why_resting(self) -> str:
        training = {site for site, _ in self.open.values()}
        down = {site: why for site, why in self.resting.items() if site not in training}
        return "".join(f"; {site}: {why}" for site, why in sorted(down.items()))

    def report(self) -> dict[str, Any]:
        return {"version": self.version, "updates": self.args.updates, "buffer_size": self.args.buffer_size,
                "sites": {site: tally.as_dict() for site, tally in sorted(self.flow.tally.items())}}
