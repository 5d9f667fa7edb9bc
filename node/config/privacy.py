"""A site's own `local/privacy.yml`: the scopes a job may ask for and, per scope, the filters that what leaves the
site (and what a task brings in) passes through, in order. Owned by the site, never signed.

    api_version: 1
    default_scope: public
    scopes:
      public: []
      private:
        - filter: exclude_vars                  # one of flctl.node.site.filters.FILTERS
          args: {exclude_vars: [secret.bias]}   # the filter's own arguments (a list of names, or one regex)
          apply_to: result                      # result (the default), task or both

A job asks for a scope with `privacy_scope` in its job.yml (else it gets `default_scope`); a site without that scope
refuses the job. The file is checked at start: a misspelt key, a default scope that is not defined, an unknown filter
or a bad argument stops the node (KitError, exit 2) naming the file, the scope, the entry and the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from flctl.node.config.local_yaml import read_local_yaml
from flctl.node.config.statistics_policy import StatisticsPolicy
from flctl.node.errors import NodeError
from flctl.node.site.filters import FILTERS, make_filter
from flctl.provisioner.errors import KitError
from flctl.provisioner.schema_messages import message

if TYPE_CHECKING:  # numpy: imported when a job runs, not when a node checks its files
    from flctl.node.site.filters.pipeline import FilterPipeline


class ScopeRefused(NodeError):
    """The job asks for a privacy scope this site does not have: the site refuses the job."""


class FilterEntry(BaseModel):
    """One filter of a scope, as privacy.yml lists it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    filter: str = Field(description="The filter's name: " + ", ".join(sorted(FILTERS)))
    args: dict[str, Any] = Field(default_factory=dict,
                                 description="The filter's arguments (exclude_vars: exclude_vars, a list of tensor "
                                             "names or one regular expression; percentile_privacy, svt_privacy, "
                                             "gaussian_dp: see the README's Privacy section)")
    apply_to: Literal["result", "task", "both"] = Field(
        "result", description="What passes through it: the results the site sends out (result), the tasks it "
                              "brings in, before the job's script sees them (task), or both. (Not `on`: YAML "
                              "reads that key as true.)")


class PrivacyRules(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    api_version: Literal[1] = 1
    default_scope: str = Field("public", description="The scope of a job that names none")
    scopes: dict[str, list[FilterEntry]] = Field(default_factory=lambda: {"public": list[FilterEntry]()},
                                                 description="Scope name -> the filters applied in that scope, "
                                                             "in order")
    statistics: StatisticsPolicy = Field(default_factory=StatisticsPolicy,
                                         description="What leaves the site of federated statistics, in every "
                                                     "scope (flctl.node.config.statistics_policy)")

    def pipeline(self, job_id: str, scope: str | None) -> FilterPipeline:
        """The filters of `scope` (the default scope when None) for the job `job_id`; ScopeRefused when this site
        has no such scope."""
        from flctl.node.site.filters.pipeline import FilterPipeline

        name = scope or self.default_scope
        if name not in self.scopes:
            raise ScopeRefused(f"the job asks for privacy scope '{name}', which this site does not have (its "
                               f"scopes: {', '.join(sorted(self.scopes))}); use one of them in the job's "
                               "privacy_scope, or add it to the site's local/privacy.yml")
        entries = self.scopes[name]
        made = [(make_filter(e.filter, e.args), e.apply_to) for e in entries]
        return FilterPipeline(job_id, name, tuple(f for f, on in made if on in ("task", "both")),
                              tuple(f for f, on in made if on in ("result", "both")), self.statistics)


def load_privacy(path: Path) -> PrivacyRules:
    """The rules in `path`; the defaults when there is no such file."""
    raw = read_local_yaml(path)
    boolean = _boolean_key(raw)
    if boolean:
        raise KitError(f"{path}: {boolean}: a key YAML reads as true or false (on, off, yes, no); to say what a "
                       "filter applies to, write apply_to: result, task or both")
    try:
        rules = PrivacyRules.model_validate(raw or {})
    except ValidationError as exc:
        raise KitError(f"{path}: {_problem(_first(exc))}") from None
    if rules.default_scope not in rules.scopes:
        raise KitError(f"{path}: default_scope {rules.default_scope!r} is not one of its scopes "
                       f"({', '.join(sorted(rules.scopes)) or 'none defined'})")
    for scope, entries in rules.scopes.items():
        for index, entry in enumerate(entries):
            problem = _entry_problem(entry)
            if problem:
                raise KitError(f"{path}: {_where(('scopes', scope, index))}.{problem}")
    return rules


def _boolean_key(raw: Any) -> str:
    """Where a filter entry has a key YAML turned into a boolean (`on: task` is {True: 'task'}); '' when none."""
    scopes = raw.get("scopes") if isinstance(raw, dict) else None
    for scope, entries in (scopes.items() if isinstance(scopes, dict) else ()):
        for index, entry in enumerate(entries if isinstance(entries, list) else ()):
            if isinstance(entry, dict) and any(isinstance(key, bool) for key in entry):
                return _where(("scopes", scope, index))
    return ""


def _where(loc: tuple[Any, ...]) -> str:
    """A location as privacy.yml's reader says it: scopes.private[0].args."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "the file"


def _first(exc: ValidationError) -> Any:
    """The error to report: a key that is not one of the model's first (it often explains the others)."""
    errors = exc.errors()
    return next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])


def _problem(err: Any) -> str:
    loc = tuple(err["loc"])
    if len(loc) <= 1:
        if err["type"] == "extra_forbidden":
            return f"{_where(loc)} is not a key of privacy.yml (keys: api_version, default_scope, scopes, statistics)"
        return f"{_where(loc)}: {message(err, PrivacyRules)}"
    if loc[0] == "statistics":
        keys = ", ".join(StatisticsPolicy.model_fields)
        return _located(loc, err, PrivacyRules, f"a key of statistics (keys: {keys})")
    return _located(loc, err, PrivacyRules, f"a key of a filter entry (keys: {', '.join(FilterEntry.model_fields)})")


def _located(loc: tuple[Any, ...], err: Any, model: type[BaseModel], unknown: str) -> str:
    """A nested error as `where: what`; `unknown` says what a key that is not allowed there is not."""
    if err["type"] == "extra_forbidden":
        return f"{_where(loc[:-1])}: '{loc[-1]}' is not {unknown}"
    if err["type"] == "missing":
        return f"{_where(loc[:-1])}: {message(err, model)}"
    return f"{_where(loc)}: {message(err, model)}"


def _entry_problem(entry: FilterEntry) -> str:
    """What is wrong with one filter entry, starting with the field ('' when nothing is)."""
    cls = FILTERS.get(entry.filter)
    if cls is None:
        return f"filter: unknown filter '{entry.filter}'; known filters: {', '.join(sorted(FILTERS))}"
    wanted = {"task", "result"} if entry.apply_to == "both" else {entry.apply_to}
    if not wanted <= cls.directions:
        return (f"apply_to: {entry.filter} filters only {' and '.join(sorted(cls.directions))}s, not "
                f"{entry.apply_to}")
    try:
        make_filter(entry.filter, entry.args)
    except ValidationError as exc:
        first = _first(exc)
        return _located(("args", *first["loc"]), first, cls.Args,
                        f"an argument of {entry.filter} (its arguments: {', '.join(cls.Args.model_fields)})")
    return ""
