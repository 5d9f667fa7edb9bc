"""The site's filter pipeline: exclude_vars against a plain reference on fixed inputs (kept tensors byte for byte,
excluded ones absent), the fast path that never decodes, and failures that stop what would go out."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, ClassVar

import numpy as np
import pytest

from flctl.node.client import api_wire as wire
from flctl.node.config.privacy import FilterEntry, PrivacyRules, ScopeRefused
from flctl.node.jobs.tasks import Params, Task, TaskResult
from flctl.node.site.filters import FILTERS, make_filter
from flctl.node.site.filters.base import Filter, FilterArgs, FilterContext, FilterError
from flctl.node.site.filters.pipeline import FilterPipeline
from flctl.node.wire import tensors

PARAMS: Params = {
    "conv.weight": np.arange(24, dtype=np.float32).reshape(2, 3, 4),
    "conv.bias": np.array([0.5, -1.25], dtype=np.float32),
    "secret.embedding": np.arange(6, dtype=np.float64).reshape(3, 2),
    "head.secret_bias": np.array([7, 8, 9], dtype=np.int64),
    "steps": np.array(3, dtype=np.int32),
}
TASK = Task("train", 2, {}, {"rounds": 5})
ENCODED = tensors.encode(PARAMS)
ANSWER = wire.Result(task_id=7, num_examples=11, metrics={"loss": 0.25}, meta={"note": "x"})


def pipeline(*entries: dict[str, Any], scope: str = "private") -> FilterPipeline:
    rules = PrivacyRules(default_scope="public", scopes={"public": [], scope: [FilterEntry(**e) for e in entries]})
    return rules.pipeline("job-1", scope)


def reference_without(params: Params, excluded: set[str]) -> bytes:
    """The plain reference: the encoding of `params` less the excluded names, in the same order."""
    return tensors.encode({name: value for name, value in params.items() if name not in excluded})


@pytest.mark.parametrize(("spec", "excluded"), [
    (["secret.embedding", "steps", "not.there"], {"secret.embedding", "steps"}),
    ("secret", {"secret.embedding", "head.secret_bias"}),  # re.search: anywhere in the name, as in NVIDIA FLARE
    (r"^secret\.", {"secret.embedding"}),
    ("^conv", {"conv.weight", "conv.bias"}),
])
def test_exclude_vars_on_results_keeps_the_others_byte_for_byte(spec: list[str] | str, excluded: set[str]) -> None:
    """What a result sends out: the excluded tensors are gone, every other one is the script's, byte for byte."""
    # Prepare
    filters = pipeline({"filter": "exclude_vars", "args": {"exclude_vars": spec}})
    sent = tensors.encode(PARAMS)
    # Execute
    answer, out = filters.result_out(TASK, ANSWER, sent, "site-1")
    # Assert
    assert bytes(out) == reference_without(PARAMS, excluded)
    got = tensors.decode(out)
    assert sorted(got) == sorted(set(PARAMS) - excluded)
    for name, value in got.items():
        assert value.dtype == PARAMS[name].dtype and value.tobytes() == PARAMS[name].tobytes()
    assert answer == ANSWER  # task id, num_examples, metrics and meta go on unchanged


def test_exclude_vars_on_tasks_hides_tensors_from_the_script_but_not_results() -> None:
    """`apply_to: task` filters what the script is given; the result it sends is then not filtered."""
    # Prepare
    filters = pipeline({"filter": "exclude_vars", "args": {"exclude_vars": ["conv.bias"]}, "apply_to": "task"})
    data = tensors.encode(PARAMS)
    # Execute
    task, given = filters.task_in(TASK, data, "site-1")
    answer, out = filters.result_out(task, ANSWER, data, "site-1")
    # Assert
    assert bytes(given) == reference_without(PARAMS, {"conv.bias"})
    assert (task.kind, task.round, task.meta, task.params) == ("train", 2, {"rounds": 5}, {})
    assert out is data and answer is ANSWER


def test_filters_run_in_the_order_listed_and_both_applies_to_tasks_and_results() -> None:
    """Two entries in a scope both apply, in order; `apply_to: both` filters each way."""
    # Prepare
    filters = pipeline({"filter": "exclude_vars", "args": {"exclude_vars": "^conv"}, "apply_to": "both"},
                       {"filter": "exclude_vars", "args": {"exclude_vars": ["steps"]}})
    data = tensors.encode(PARAMS)
    # Execute
    _task, given = filters.task_in(TASK, data, "site-1")
    _answer, out = filters.result_out(TASK, ANSWER, data, "site-1")
    # Assert
    assert bytes(given) == reference_without(PARAMS, {"conv.weight", "conv.bias"})
    assert bytes(out) == reference_without(PARAMS, {"conv.weight", "conv.bias", "steps"})
    assert filters.describe() == "private (tasks: exclude_vars; results: exclude_vars, exclude_vars)"


class _TagMeta(Filter):
    """A filter that needs no tensors: it only notes the scope in the meta."""

    type_name: ClassVar[str] = "tag_meta"
    Args: ClassVar[type[FilterArgs]] = FilterArgs
    needs_params: ClassVar[bool] = False

    def filter_task(self, task: Task, ctx: FilterContext) -> Task:
        return replace(task, meta={**task.meta, "scope": ctx.scope, "site": ctx.site})

    def filter_result(self, result: TaskResult, ctx: FilterContext) -> TaskResult:
        assert result.params == {}
        return replace(result, meta={**result.meta, "scope": ctx.scope}, metrics={**result.metrics, "tagged": 1.0})


@pytest.fixture
def no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("the fast path decoded or encoded the params")

    for name in ("views", "decode", "encode"):
        monkeypatch.setattr(tensors, name, refuse)


@pytest.mark.parametrize("data", [ENCODED, memoryview(ENCODED)])
def test_the_fast_path_passes_the_same_bytes_without_decoding(no_decoding: None, data: bytes | memoryview) -> None:
    """No filters (the public scope of every kit): the task's and the result's bytes are the very objects given."""
    # Prepare
    filters = PrivacyRules().pipeline("job-1", None)
    # Execute
    task, given = filters.task_in(TASK, data, "site-1")
    answer, out = filters.result_out(TASK, ANSWER, data, "site-1")
    # Assert
    assert filters.scope == "public" and given is data and out is data
    assert task is TASK and answer is ANSWER


def test_filters_that_need_no_tensors_keep_the_fast_path(no_decoding: None) -> None:
    """A pipeline whose filters do not need the tensors changes meta and metrics, and passes the bytes as given."""
    # Prepare
    filters = FilterPipeline("job-1", "private", (_TagMeta(FilterArgs()),), (_TagMeta(FilterArgs()),))
    data = ENCODED
    # Execute
    task, given = filters.task_in(TASK, data, "site-1")
    answer, out = filters.result_out(task, ANSWER, data, "site-1")
    # Assert
    assert given is data and out is data
    assert task.meta == {"rounds": 5, "scope": "private", "site": "site-1"}
    assert (answer.task_id, answer.num_examples) == (7, 11)
    assert answer.metrics == {"loss": 0.25, "tagged": 1.0} and answer.meta == {"note": "x", "scope": "private"}


class _Broken(Filter):
    type_name: ClassVar[str] = "broken"
    Args: ClassVar[type[FilterArgs]] = FilterArgs

    def filter_result(self, result: TaskResult, ctx: FilterContext) -> TaskResult:
        raise ZeroDivisionError("oops")


def test_a_failing_filter_or_unreadable_params_stop_what_would_go_out() -> None:
    """A filter that raises, or params that are not safetensors, give FilterError: nothing is sent unfiltered."""
    # Prepare
    broken = FilterPipeline("job-1", "private", (), (_Broken(FilterArgs()),))
    excluding = pipeline({"filter": "exclude_vars", "args": {"exclude_vars": ["steps"]}})
    # Execute
    with pytest.raises(FilterError) as failed:
        broken.result_out(TASK, ANSWER, tensors.encode(PARAMS), "site-1")
    with pytest.raises(FilterError) as unreadable:
        excluding.result_out(TASK, ANSWER, b"garbage!", "site-1")
    # Assert
    assert str(failed.value) == ("the privacy filter broken (scope 'private') failed on task 'train' (round 2): "
                                 "ZeroDivisionError: oops")
    assert "the script's params for task 'train' (round 2) cannot be filtered: not safetensors data" in \
        str(unreadable.value)


def test_a_scope_the_site_lacks_is_refused_naming_its_scopes() -> None:
    """A job asking for a scope the site does not have is refused with the scopes it has."""
    # Prepare
    rules = PrivacyRules(default_scope="public", scopes={"public": [], "private": []})
    # Execute
    with pytest.raises(ScopeRefused) as refused:
        rules.pipeline("job-1", "secret")
    # Assert
    assert str(refused.value).startswith("the job asks for privacy scope 'secret', which this site does not have "
                                         "(its scopes: private, public)")


def test_the_registry_names_exclude_vars_with_nvidia_flare_s_argument() -> None:
    """`exclude_vars` is registered, and takes FLARE's argument name (a list of names or one regex string)."""
    assert "exclude_vars" in FILTERS
    assert list(FILTERS["exclude_vars"].Args.model_fields) == ["exclude_vars"]
    made = make_filter("exclude_vars", {"exclude_vars": "x$"})
    assert made.needs_params and made.directions == frozenset(("task", "result"))
