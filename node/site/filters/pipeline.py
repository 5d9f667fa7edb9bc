"""`FilterPipeline`: the one place where a site's filters run, used by the site's job process
(`flctl.node.site.job_process`) and by the simulator (`flctl.node.simulator.runtime.SimFederation`, in the
simulation's main process, on each simulated site's behalf) alike: never in the process of a job's script.

Both hold the task's and the result's params as safetensors bytes. When no filter of a direction needs the tensors
(no filter at all, most often), those bytes pass as they are: never decoded, never copied (the fast path). Otherwise
they are read as arrays over the bytes themselves (`tensors.views`, no copy), go through the filters in order, and
are encoded again.

A result filter of the update (`needs_received`: percentile_privacy, svt_privacy, gaussian_dp) needs the model the
task brought: `task_in` keeps each site's last task's params (views over the task's bytes: no copy; the job process
then holds them while the script trains) and `result_out` hands them to the filters once, for that site's answer.
The simulator, which calls `task_in` only when there are task filters, keeps them with `keep_received`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

from flctl.node.client import api_wire as wire
from flctl.node.config.statistics_policy import StatisticsPolicy
from flctl.node.jobs.tasks import OPAQUE_KINDS, Params, Task, TaskKind, TaskResult
from flctl.node.site.filters.base import Filter, FilterContext, FilterError
from flctl.node.wire import tensors

_Bytes = TypeVar("_Bytes", bytes, memoryview)
_Item = TypeVar("_Item", Task, TaskResult)


@dataclass(frozen=True)
class FilterPipeline:
    """The filters of one privacy scope for one job, in the order the site's privacy.yml lists them."""

    job_id: str
    scope: str = ""
    task_filters: tuple[Filter, ...] = ()
    result_filters: tuple[Filter, ...] = ()
    statistics: StatisticsPolicy = field(default_factory=StatisticsPolicy)
    """The site's rules for what leaves it of a statistics task, applied before any filter, in every scope."""
    inference_returns: tuple[str, ...] = ()
    """The metrics the job lets an `inference` answer carry out (its job.yml's `returns`), applied before any filter
    (`flctl.node.site.inference_release`); () lets none out."""
    _received: dict[str, Params] = field(default_factory=dict, compare=False, repr=False)

    @property
    def keeps_received(self) -> bool:
        """Whether a result filter needs the model each task brought (it acts on the update)."""
        return any(f.needs_received for f in self.result_filters)

    def keep_received(self, site: str, params: Params) -> None:
        """Keep `params`, the model a task brought to `site`, for the result filters of `site`'s answer to it."""
        if self.keeps_received:
            self._received[site] = params

    def keep_state(self, folder: Path) -> None:
        """Let each result filter keep its state across restarts of the job's process, in a file of `folder`
        named by its place and name (`0-gaussian_dp.json`). OSError or ValueError as `Filter.keep_state`."""
        for index, step in enumerate(self.result_filters):
            step.keep_state(folder / f"{index}-{step.type_name}.json")

    def _refuse_flower(self) -> None:
        """A Flower app's messages (`TaskKind.FLOWER_FLEET`) are opaque bytes no filter can act on: with any filter
        in the scope, the site refuses them rather than let its model updates out unfiltered."""
        if self.task_filters or self.result_filters:
            raise FilterError(f"privacy scope {self.scope!r} has filters, which cannot act on a Flower app's "
                              "messages; run Flower apps under a scope without filters (Flower's own DP mods "
                              "then apply, inside the app)")

    def describe(self) -> str:
        """What a job's log says: `private (tasks: none; results: exclude_vars)`."""
        def names(filters: tuple[Filter, ...]) -> str:
            return ", ".join(f.type_name for f in filters) or "none"

        return f"{self.scope} (tasks: {names(self.task_filters)}; results: {names(self.result_filters)})"

    def task_in(self, task: Task, payload: _Bytes, site: str) -> tuple[Task, _Bytes | bytes]:
        """What `site`'s script is given for `task`, whose params are `payload` (`task.params` is not used): the
        task as the task filters leave it (params empty) and its params' bytes, `payload` itself when no task filter
        needs the tensors. FilterError when a filter fails."""
        if task.kind in OPAQUE_KINDS:  # PSI messages: not a model, nothing to filter (tasks.OPAQUE_KINDS)
            return task, payload
        if task.kind == TaskKind.FLOWER_FLEET:
            self._refuse_flower()
            return task, payload
        ctx = FilterContext(site, self.job_id, self.scope, task.kind, task.round)
        if self.keeps_received:
            self.keep_received(site, self._decoded(payload, ctx, "the task's"))
        if not self.task_filters:
            return task, payload
        decoded = any(f.needs_params for f in self.task_filters)
        task = replace(task, params=self._decoded(payload, ctx, "the task's") if decoded else {})
        for step in self.task_filters:
            task = self._apply(step, step.filter_task, task, ctx)
        if not decoded:
            return replace(task, params={}), payload
        return replace(task, params={}), self._encoded(task.params, ctx)

    def result_out(self, task: Task, answer: wire.Result, payload: _Bytes,
                   site: str) -> tuple[wire.Result, _Bytes | bytes]:
        """What `site` sends out for the script's `answer` to `task`, whose params are `payload`: the answer as the
        result filters leave it and its params' bytes, `payload` itself when no result filter needs the tensors.
        FilterError when a filter fails."""
        if task.kind == TaskKind.STATISTICS:  # its params become an empty model, of the payload's own type
            answer, released = self._statistics_released(task, answer, site)
            payload = released if isinstance(payload, bytes) else memoryview(released)
        if task.kind == TaskKind.INFERENCE:  # only the declared metrics; no params, no meta
            from flctl.node.site.inference_release import release

            answer = release(answer, self.inference_returns, site)
            payload = tensors.encode({}) if isinstance(payload, bytes) else memoryview(tensors.encode({}))
        if task.kind == TaskKind.FLOWER_FLEET:
            self._refuse_flower()
        if not self.result_filters or task.kind in OPAQUE_KINDS:
            return answer, payload
        ctx = FilterContext(site, self.job_id, self.scope, task.kind, task.round, self._received.pop(site, None),
                            dict(task.meta))
        decoded = any(f.needs_params for f in self.result_filters)
        result = TaskResult(site, self._decoded(payload, ctx, "the script's") if decoded else {},
                            answer.num_examples, dict(answer.metrics), dict(answer.meta))
        for step in self.result_filters:
            result = self._apply(step, step.filter_result, result, ctx)
        out = wire.Result(answer.task_id, result.num_examples, dict(result.metrics), dict(result.meta))
        return out, self._encoded(result.params, ctx) if decoded else payload

    def _statistics_released(self, task: Task, answer: wire.Result, site: str) -> tuple[wire.Result, bytes]:
        """A statistics answer as the site's `statistics:` rules release it: rebuilt from the script's figures, no
        params, no other meta (`flctl.node.site.statistics_release`)."""
        import numpy as np

        from flctl.node.site.statistics_release import release

        figures = release(task.meta, answer.meta.get("statistics"), self.statistics, np.random.default_rng())
        return wire.Result(answer.task_id, 0, {}, {"statistics": figures}), tensors.encode({})

    def _apply(self, step: Filter, method: Callable[[_Item, FilterContext], _Item], item: _Item,
               ctx: FilterContext) -> _Item:
        try:
            return method(item, ctx)
        except Exception as exc:  # a filter's failure fails the job here: nothing goes out unfiltered
            raise FilterError(f"the privacy filter {step.type_name} (scope '{self.scope}') failed on "
                              f"{_describe(ctx)}: {type(exc).__name__}: {exc}") from exc

    @staticmethod
    def _decoded(payload: bytes | memoryview, ctx: FilterContext, whose: str) -> Params:
        try:
            return tensors.views(payload)
        except ValueError as exc:
            raise FilterError(f"{whose} params for {_describe(ctx)} cannot be filtered: {exc}") from None

    def _encoded(self, params: Params, ctx: FilterContext) -> bytes:
        try:
            return tensors.encode(params)
        except ValueError as exc:
            raise FilterError(f"the privacy filters of scope '{self.scope}' left params that cannot be sent on "
                              f"{_describe(ctx)}: {exc}") from None


def _describe(ctx: FilterContext) -> str:
    return f"task '{ctx.task_kind}' (round {ctx.round})"
