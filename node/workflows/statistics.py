"""Federated statistics (NVIDIA FLARE's StatisticsController): counts, sums, means, variances, min, max, histograms,
quantiles and cohort sizes per site and over every site, each site releasing only what its privacy rules allow.

    workflow:
      type: statistics
      args:
        statistics:                       # FLARE's statistic_configs
          count: {}
          mean: {}
          variance: {}                    # or var; the sample variance (ddof=1)
          stddev: {}
          min: {}
          max: {}
          failure_count: {}               # missing values (NaN, None) per feature
          histogram: {"*": {bins: 20}, age: {bins: 10, range: [0, 100]}}   # no range: the global min..max
          quantile: {"*": [0.1, 0.5, 0.9]}
          cohort: {elderly_lung: 'age >= 65 and diagnosis == "C34"'}
        features: [age, bmi]              # default: every column a site has

Pass one (`statistics` task, step `summary`) gathers each site's count, failure_count, sum, mean, variance, min and
max; pass two (step `spread`) sends the global mean and the agreed bins and gathers squared deviations and
histograms, so the global variance and histograms are exact (`statistics_merge`). Cohorts are a third task. The
result is the job's report `statistics` (`reports/statistics.json`, `flctl job show`, `docs/statistics.md`).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, cast

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator

from flctl.node.jobs.filter_expr import ExpressionError, parse
from flctl.node.jobs.tasks import Params, SiteFailure, Task, TaskKind
from flctl.node.workflows import statistics_merge as merge
from flctl.node.workflows.base import Federation, Workflow, WorkflowArgs, WorkflowError

REPORT = "statistics"
GLOBAL = "global"
ALL = "*"
SIMPLE = ("count", "sum", "mean", "variance", "stddev", "min", "max", "failure_count")


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class NoSettings(_Settings):
    """A statistic without settings: `{}`."""


class HistogramSpec(_Settings):
    """One feature's histogram (or every feature's, under `*`)."""

    bins: int = Field(gt=0, le=100_000, description="How many equal bins")
    range: tuple[float, float] | None = Field(None, description="[low, high]; default: the global min and max, "
                                                                "agreed in the first pass")

    @field_validator("range")
    @classmethod
    def _ordered(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is not None and not value[0] < value[1]:
            raise ValueError(f"range [{value[0]:g}, {value[1]:g}] must be [low, high] with low < high")
        return value


Share = Annotated[float, Field(gt=0, lt=1)]


class StatisticConfigs(_Settings):
    """The statistics wanted (FLARE's statistic_configs): a key per statistic, with its settings."""

    count: NoSettings | None = Field(None, description="Records with a value, per feature")
    sum: NoSettings | None = None
    mean: NoSettings | None = None
    variance: NoSettings | None = Field(None, validation_alias=AliasChoices("variance", "var"),
                                        description="The sample variance (ddof=1); also `var`")
    stddev: NoSettings | None = None
    min: NoSettings | None = None
    max: NoSettings | None = None
    failure_count: NoSettings | None = Field(None, description="Missing values (NaN, None) per feature")
    histogram: dict[str, HistogramSpec] | None = Field(None, description="feature (or `*`) -> {bins, range}")
    quantile: dict[str, Annotated[list[Share], Field(min_length=1)]] | None = Field(
        None, description="feature (or `*`) -> the quantiles, each strictly between 0 and 1")
    cohort: dict[str, str] | None = Field(None, description="cohort name -> a filter over the columns, e.g. "
                                                            "'age >= 65 and diagnosis == \"C34\"'")

    @field_validator("cohort")
    @classmethod
    def _filters(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for name, text in (value or {}).items():
            try:
                parse(text)
            except ExpressionError as exc:
                raise ValueError(f"cohort {name!r}: {exc}") from None
        return value

    def wanted(self) -> list[str]:
        """The statistics asked for, in the order of SIMPLE, then histogram, quantile and cohort."""
        return [name for name in (*SIMPLE, "histogram", "quantile", "cohort") if getattr(self, name) is not None]


class StatisticsArgs(WorkflowArgs):
    """`workflow.args` of a `statistics` job."""

    statistics: StatisticConfigs = Field(description="The statistics wanted, with their settings")
    features: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=list, description="The features (columns) to describe; empty: every column a site has")
    min_count: int = Field(0, ge=0, description="A minimum count the job asks of every site; a site's own "
                                                "min_count applies when it is higher (a job never lowers it)")
    sketch_bins: int = Field(100, ge=2, le=100_000, description="Bins of the histogram quantiles are read from: "
                                                                "each is within (max - min) / sketch_bins")
    timeout_s: float = Field(300.0, gt=0, description="Seconds each pass waits for the sites")
    encryption: Literal["none", "he"] = Field(
        "none", description="he: each site's counts and sums travel encrypted (the project's CKKS context), the "
                            "server adds them and one site decrypts only the totals: the report holds global count, "
                            "sum and mean, no site's own (statistics_he)")

    def secure_mode(self) -> str:
        """'he' or 'none' (see `secure_sum.secure_mode_of`)."""
        return self.encryption

    @model_validator(mode="after")
    def _encryptable(self) -> StatisticsArgs:
        if self.encryption == "he":
            others = [s for s in self.statistics.wanted() if s not in ("count", "sum", "mean")]
            if others:
                raise ValueError(f"encryption: he sums counts and sums only; {', '.join(others)} cannot be made from "
                                 "encrypted sums: ask for count, sum and mean")
            if not self.features:
                raise ValueError("encryption: he needs the features named (features: [...]): every site encrypts "
                                 "one value per feature, in that order")
        return self

    @model_validator(mode="after")
    def _named(self) -> StatisticsArgs:
        if not self.statistics.wanted():
            raise ValueError("statistics: name at least one statistic (count, sum, mean, variance, stddev, min, "
                             "max, failure_count, histogram, quantile, cohort)")
        if self.features:
            for kind in ("histogram", "quantile"):
                for name in getattr(self.statistics, kind) or {}:
                    if name != ALL and name not in self.features:
                        raise ValueError(f"statistics.{kind}.{name}: {name!r} is not one of the features "
                                         f"({', '.join(self.features)})")
        return self

    def histogram_of(self, feature: str) -> HistogramSpec | None:
        specs = self.statistics.histogram or {}
        return specs.get(feature) or specs.get(ALL)

    def quantiles_of(self, feature: str) -> list[float]:
        specs = self.statistics.quantile or {}
        return list(specs.get(feature) or specs.get(ALL) or [])


class Statistics(Workflow):
    """Two passes over every site's data, then the global figures."""

    type_name: ClassVar[str] = "statistics"
    Args: ClassVar[type[WorkflowArgs]] = StatisticsArgs

    def __init__(self, args: WorkflowArgs, min_sites: int = 1) -> None:
        super().__init__(args, min_sites)
        self.settings = cast(StatisticsArgs, args)  # checked by Workflow.__init__

    def run(self, fed: Federation, initial: Params | None, start_round: int = 0) -> Params:
        report = compute(fed, self.settings, self.min_sites)
        fed.save_report(REPORT, report)
        fed.log(f"statistics: {len(report['features'])} features at {len(report['sites'])} sites; see "
                "`flctl job show`")
        return {}


def compute(fed: Federation, args: StatisticsArgs, min_sites: int = 1) -> dict[str, Any]:
    """Ask the sites, merge what they released; the report (`docs/statistics.md` documents its form)."""
    if args.encryption == "he":
        from flctl.node.workflows.statistics_he import compute_encrypted

        return compute_encrypted(fed, args, min_sites)
    sites = fed.sites()
    run = _Run(fed, args, sites)
    wanted = args.statistics.wanted()
    numeric = [s for s in wanted if s != "cohort"]
    if numeric:
        first = run.ask({"step": "summary", "features": args.features or None})
        if len(first) < min_sites:
            raise WorkflowError(f"only {len(first)} of {len(sites)} sites answered the statistics' first pass; "
                                f"min_sites is {min_sites}" + run.failures_said())
        run.summaries = first
        run.merge_first()
        if any(s in wanted for s in ("variance", "stddev", "histogram", "quantile")):
            run.summaries_second = run.ask({"step": "spread", "request": run.second_request()},
                                           [s for s in sites if s in first])
    cohorts = run.ask({"step": "cohort", "cohorts": dict(args.statistics.cohort)}) if args.statistics.cohort else {}
    return run.report(cohorts)


class _Run:
    """One statistics job's figures as they come in."""

    def __init__(self, fed: Federation, args: StatisticsArgs, sites: list[str]) -> None:
        self.fed = fed
        self.args = args
        self.sites = sites
        self.failed: dict[str, str] = {}
        self.policy: dict[str, dict[str, Any]] = {}
        self.summaries: dict[str, dict[str, Any]] = {}
        self.summaries_second: dict[str, dict[str, Any]] = {}
        self.features: list[str] = list(args.features)
        self.global_first: dict[str, dict[str, Any]] = {}
        self.notes: dict[str, list[str]] = {}

    def ask(self, meta: dict[str, Any], sites: list[str] | None = None) -> dict[str, dict[str, Any]]:
        """Send a statistics step to `sites` (default: every site not failed); the released figures by site."""
        targets = [s for s in (sites if sites is not None else self.sites) if s not in self.failed]
        task = Task(TaskKind.STATISTICS, 0, {}, meta={**meta, "min_count": self.args.min_count})
        answers: dict[str, dict[str, Any]] = {}
        for answer in self.fed.send(task, targets, self.args.timeout_s):
            if answer.site not in targets or answer.site in answers or answer.site in self.failed:
                continue
            if isinstance(answer, SiteFailure):
                self._fail(answer.site, answer.reason)
                continue
            figures = answer.meta.get("statistics")
            if not isinstance(figures, dict):
                self._fail(answer.site, "answered without statistics (is its script fl.serve_statistics?)")
            elif figures.get("error"):
                self._fail(answer.site, str(figures["error"]))
            else:
                answers[answer.site] = figures
                if isinstance(figures.get("policy"), dict):
                    self.policy[answer.site] = figures["policy"]
        for site in targets:
            if site not in answers and site not in self.failed:
                self._fail(site, f"did not answer within {self.args.timeout_s:g} s")
        return answers

    def _fail(self, site: str, reason: str) -> None:
        self.failed[site] = reason
        self.fed.log(f"statistics: {site} failed: {reason}")

    def failures_said(self) -> str:
        return "".join(f"; {site}: {why}" for site, why in sorted(self.failed.items()))

    def merge_first(self) -> None:
        """The features (as asked, else every one a site named, in order) and their pass-one global figures."""
        if not self.features:
            for figures in self.summaries.values():
                for part in ("features", "refused", "missing"):
                    for name in figures.get(part) or {}:
                        if name not in self.features:
                            self.features.append(name)
        for name in self.features:
            self.global_first[name] = merge.merge_summary(
                figures["features"][name] for figures in self.summaries.values()
                if name in (figures.get("features") or {}))

    def second_request(self) -> dict[str, dict[str, Any]]:
        """What pass two asks per feature: the global mean, and the agreed histogram and sketch bins."""
        wanted = self.args.statistics.wanted()
        request: dict[str, dict[str, Any]] = {}
        for name in self.features:
            merged = self.global_first[name]
            if merged.get("mean") is None or "min" not in merged:
                continue
            asked: dict[str, Any] = {}
            if "variance" in wanted or "stddev" in wanted:
                asked["mean"] = merged["mean"]
            spec = self.args.histogram_of(name) if "histogram" in wanted else None
            if spec is not None:
                low, high = spec.range or (merged["min"], merged["max"])
                asked["histogram"] = {"bins": spec.bins, "range": [low, high]}
            if self.args.quantiles_of(name):
                asked["sketch"] = {"bins": self._sketch_bins(name), "range": [merged["min"], merged["max"]]}
            if asked:
                request[name] = asked
        return request

    def _sketch_bins(self, name: str) -> int:
        """The quantile sketch's bins for a feature: `sketch_bins`, or fewer, so that no site's max_bins_percent
        refuses it (agreed from the counts and policies of the first pass)."""
        bins = self.args.sketch_bins
        for site, figures in self.summaries.items():
            count = ((figures.get("features") or {}).get(name) or {}).get("count")
            percent = self.policy.get(site, {}).get("max_bins_percent")
            if isinstance(count, int) and isinstance(percent, int | float):
                bins = min(bins, int(percent * count // 100))
        return max(2, bins)

    def _incomplete(self, name: str, kind: str, seconds: dict[str, dict[str, Any]]) -> list[str]:
        """The sites that released `name` in pass one but not its `kind` (histogram, sketch) in pass two."""
        return [site for site, figures in self.summaries.items() if name in (figures.get("features") or {})
                and kind not in seconds.get(site, {})]

    def report(self, cohorts: dict[str, dict[str, Any]]) -> dict[str, Any]:
        wanted = self.args.statistics.wanted()
        request = self.second_request() if self.summaries else {}
        results: dict[str, dict[str, Any]] = {}
        refused: dict[str, dict[str, dict[str, str]]] = {}
        missing: dict[str, dict[str, str]] = {}
        for site in self.sites:
            first = self.summaries.get(site, {})
            second = self.summaries_second.get(site, {})
            if site in self.summaries:
                results[site] = {name: _site_figures(name, first, second, request.get(name, {}), wanted,
                                                     self.args.quantiles_of(name)) for name in self.features
                                 if name in (first.get("features") or {})}
            for part in (first, second):
                for name, why in (part.get("refused") or {}).items():
                    refused.setdefault(site, {}).setdefault(name, {}).update(why)
                for name, why in (part.get("missing") or {}).items():
                    missing.setdefault(site, {})[name] = why
        results[GLOBAL] = {name: self._global(name, request.get(name, {}), wanted) for name in self.features}
        for name in self.features:
            if not any(name in results.get(site, {}) for site in self.sites):
                self.notes.setdefault(name, []).append("no site released it")
        out: dict[str, Any] = {
            "kind": "statistics", "sites": self.sites, "features": self.features,
            "statistics": [s for s in wanted if s != "cohort"], "results": results, "refused": refused,
            "missing": missing, "notes": self.notes, "failed": dict(self.failed), "policy": self.policy,
            "sketch_bins": self.args.sketch_bins,
        }
        if self.args.statistics.cohort:
            out["cohorts"] = _cohort_table(self.args.statistics.cohort, cohorts, self.sites)
        return out

    def _global(self, name: str, request: dict[str, Any], wanted: list[str]) -> dict[str, Any]:
        merged = dict(self.global_first.get(name, {}))
        by_site = {site: s["features"][name] for site, s in self.summaries_second.items()
                   if name in (s.get("features") or {})}
        seconds = list(by_site.values())
        if "mean" in request:
            left_out = self._incomplete(name, "sq_dev", by_site)
            if left_out:
                self.notes.setdefault(name, []).append(f"no global variance: {', '.join(left_out)} gave no second "
                                                       "pass")
            else:
                merged["variance"] = merge.variance([f["sq_dev"] for f in seconds], merged["count"])
                merged["stddev"] = merge.stddev(merged["variance"])
        if "histogram" in request and not any("histogram" in f for f in seconds):
            self.notes.setdefault(name, []).append("no global histogram: no site released one")
            request = {k: v for k, v in request.items() if k != "histogram"}
        elif "histogram" in request and self._incomplete(name, "histogram", by_site):
            self.notes.setdefault(name, []).append("global histogram without "
                                                   f"{', '.join(self._incomplete(name, 'histogram', by_site))}")
        if "sketch" in request and self._incomplete(name, "sketch", by_site):
            self.notes.setdefault(name, []).append("no global quantiles: "
                                                   f"{', '.join(self._incomplete(name, 'sketch', by_site))} "
                                                   "released no quantile sketch")
            request = {k: v for k, v in request.items() if k != "sketch"}
        if "histogram" in request:
            bins = request["histogram"]["bins"]
            counts, suppressed = merge.merge_counts((f["histogram"] for f in seconds if "histogram" in f), bins)
            merged["histogram"] = {"range": request["histogram"]["range"], "counts": counts,
                                   "suppressed_bins": suppressed}
        if "sketch" in request:
            low, high = request["sketch"]["range"]
            held = sum(int(f.get("sketch_suppressed_bins") or 0) for f in seconds)
            if held:
                self.notes.setdefault(name, []).append(
                    f"quantiles leave out {held} sketch bins the sites held back (under their min_count): they may "
                    "be off by more than quantile_error")
            counts, _ = merge.merge_counts((f["sketch"] for f in seconds if "sketch" in f), request["sketch"]["bins"])
            merged["quantile"] = merge.sketch_quantiles(counts, low, high, self.args.quantiles_of(name))
            merged["quantile_error"] = merge.sketch_error(low, high, request["sketch"]["bins"])
        return _shown(merged, wanted)


def _site_figures(name: str, first: dict[str, Any], second: dict[str, Any], request: dict[str, Any],
                  wanted: list[str], quantiles: list[float]) -> dict[str, Any]:
    """One site's figures of one feature, as it released them."""
    fig = dict(first["features"][name])
    fig["stddev"] = merge.stddev(merge.site_variance(fig))
    more = (second.get("features") or {}).get(name, {})
    if "histogram" in more and "histogram" in request:
        fig["histogram"] = {"range": request["histogram"]["range"], "counts": more["histogram"],
                            "suppressed_bins": more.get("histogram_suppressed_bins", 0)}
    if "sketch" in more and "sketch" in request:
        low, high = request["sketch"]["range"]
        counts = [c or 0 for c in more["sketch"]]
        fig["quantile"] = merge.sketch_quantiles(counts, low, high, quantiles)
        fig["quantile_error"] = merge.sketch_error(low, high, len(counts))
    return _shown(fig, wanted)


def _shown(fig: dict[str, Any], wanted: list[str]) -> dict[str, Any]:
    """The figures asked for (and, with quantiles, their error bound; with a categorical feature, that it is)."""
    keep = set(wanted) | ({"quantile_error"} if "quantile" in wanted else set()) | {"categorical"}
    return {k: v for k, v in fig.items() if k in keep and v is not None}


def _cohort_table(filters: dict[str, str], answers: dict[str, dict[str, Any]], sites: list[str]) -> dict[str, Any]:
    """Per cohort: its filter, each site's count (null: not released), the global sum of what was released."""
    table: dict[str, Any] = {}
    for name, text in filters.items():
        counts = {site: (answers[site].get("cohorts") or {}).get(name) for site in sites if site in answers}
        reasons = {site: ((answers[site].get("refused") or {}).get(name) or {}).get("cohort")
                   or (answers[site].get("errors") or {}).get(name) for site in counts if counts[site] is None}
        table[name] = {"filter": text, "sites": counts, "refused": {s: r for s, r in reasons.items() if r},
                       "global": sum(c for c in counts.values() if isinstance(c, int)),
                       "complete": all(isinstance(c, int) for c in counts.values())}
    return table
