"""`exclude_vars`: tensors a site never sends out (or never hands its script), by name or by pattern.

NVIDIA FLARE's `ExcludeVars`, with its argument: a list of exact names, or one regular expression searched in each
name. Unlike FLARE, an empty list or pattern is refused (a filter configured to exclude nothing is a mistake).
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any, ClassVar

from pydantic import Field, field_validator

from flctl.node.jobs.tasks import Params, Task, TaskResult
from flctl.node.site.filters.base import Filter, FilterArgs, FilterContext


class ExcludeVarsArgs(FilterArgs):
    """The arguments of `exclude_vars`."""

    exclude_vars: list[str] | str = Field(
        description="The tensors to remove: a list of exact names, or one regular expression (a string), removing "
                    "every tensor whose name it matches anywhere (re.search), as NVIDIA FLARE's ExcludeVars does")

    @field_validator("exclude_vars", mode="before")
    @classmethod
    def _names_or_pattern(cls, value: Any) -> Any:
        if isinstance(value, str):
            if not value:
                raise ValueError("an empty pattern; give a list of names or a regular expression")
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"{value!r} is not a regular expression: {exc}") from None
            return value
        if not isinstance(value, list) or not all(isinstance(name, str) and name for name in value):
            raise ValueError("expected a list of tensor names or one regular expression (a string)")
        if not value:
            raise ValueError("an empty list; name at least one tensor")
        return value


class ExcludeVars(Filter):
    """Removes the named (or matching) tensors; the others go on unchanged, byte for byte."""

    type_name: ClassVar[str] = "exclude_vars"
    Args: ClassVar[type[FilterArgs]] = ExcludeVarsArgs

    def __init__(self, args: FilterArgs) -> None:
        if not isinstance(args, ExcludeVarsArgs):
            raise TypeError(f"exclude_vars needs ExcludeVarsArgs, not {type(args).__name__}")
        super().__init__(args)
        spec = args.exclude_vars
        self._names = frozenset(spec) if isinstance(spec, list) else frozenset()
        self._pattern = re.compile(spec) if isinstance(spec, str) else None

    def excluded(self, name: str) -> bool:
        """Whether the tensor `name` is removed."""
        return name in self._names or (self._pattern is not None and self._pattern.search(name) is not None)

    def filter_task(self, task: Task, ctx: FilterContext) -> Task:
        return replace(task, params=self._kept(task.params))

    def filter_result(self, result: TaskResult, ctx: FilterContext) -> TaskResult:
        return replace(result, params=self._kept(result.params))

    def _kept(self, params: Params) -> Params:
        return {name: value for name, value in params.items() if not self.excluded(name)}
