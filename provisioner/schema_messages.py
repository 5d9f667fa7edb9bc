"""Pydantic validation errors as one plain sentence each, for any YAML-backed schema (project.yml, job.yml)."""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel

Loc = tuple[str | int, ...]


def message(err: Any, model: type[BaseModel]) -> str:
    """The sentence for one pydantic error `err` raised while validating `model`."""
    loc: Loc = tuple(err["loc"])
    kind = err["type"]
    if kind == "extra_forbidden":
        return f"unknown key '{loc[-1]}'; allowed here: {', '.join(allowed_keys(model, loc[:-1]))}"
    if kind == "missing":
        return f"'{loc[-1]}' is required" if loc else "required"
    if kind == "literal_error":
        return f"{err['input']!r} is not allowed; use {err['ctx']['expected']}"
    if kind in ("model_type", "model_attributes_type", "dict_type") and allowed_keys(model, loc):
        return f"expected a mapping with keys {', '.join(allowed_keys(model, loc))}"
    return str(err["msg"]).removeprefix("Value error, ")


def allowed_keys(model: Any, loc: Loc) -> list[str]:
    """Field names of the model found at `loc` inside `model` (list indexes are skipped)."""
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)) or part not in model.model_fields:
            return []
        model = unwrap(model.model_fields[part].annotation)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    return []


def unwrap(annotation: Any) -> Any:
    """`list[SiteSpec]` -> SiteSpec; `X | None` -> X; `Annotated[X, ...]` -> X."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return unwrap(typing.get_args(annotation)[0])
    if origin in (list, tuple, typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            if arg is not type(None) and typing.get_origin(arg) is not typing.Literal:
                return unwrap(arg)
    return annotation
