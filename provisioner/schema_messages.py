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
        return f"expected a mapping with keys {', '.join(allowed_keys(model, loc))}, got {shown(err['input'])}"
    if kind in _BOUNDS:
        key, text = _BOUNDS[kind]
        bound = err["ctx"][key]
        return f"{shown(err['input'])} is {text.format(shown(bound) if isinstance(bound, int | float) else bound)}"
    if kind in _EXPECTED:
        quote = kind == "string_type" and isinstance(err["input"], int | float | bool)
        return f"expected {_EXPECTED[kind]}, got {shown(err['input'])}" + ("; put it in quotes" if quote else "")
    text = str(err["msg"]).removeprefix("Value error, ")
    if kind == "value_error" or "input" not in err:  # our own checks name the value themselves
        return text
    return f"{shown(err['input'])} is refused: {text[:1].lower()}{text[1:]}"


# A value out of range: the bound pydantic reports it under, and what to say.
_BOUNDS = {
    "greater_than_equal": ("ge", "too small; use {} or more"),
    "greater_than": ("gt", "too small; use more than {}"),
    "less_than_equal": ("le", "too large; use {} or less"),
    "less_than": ("lt", "too large; use less than {}"),
    "too_short": ("min_length", "too short; give at least {} items"),
    "too_long": ("max_length", "too long; give at most {} items"),
}
# A value of the wrong type: what was expected.
_EXPECTED = {
    "int_parsing": "a whole number", "int_type": "a whole number", "int_from_float": "a whole number",
    "float_parsing": "a number", "float_type": "a number", "bool_parsing": "true or false",
    "bool_type": "true or false", "string_type": "a string", "list_type": "a list",
    "dict_type": "a mapping", "model_type": "a mapping", "model_attributes_type": "a mapping",
}


def shown(value: Any, limit: int = 40) -> str:
    """A refused value as the user wrote it in YAML: 99999, 'abc', true, null, or what kind of thing it is."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return repr(value if len(value) <= limit else value[:limit] + "...")
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__


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
