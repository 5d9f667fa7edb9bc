"""Federated XGBoost, horizontal (every site the same columns, its own rows), in two modes (NVIDIA FLARE's
`xgboost` histogram-based and tree-based bagging; the sites' side is `flctl.client.xgb.serve(x, y)`):

    workflow:
      type: xgboost
      args: {mode: histogram, rounds: 50, params: {objective: "binary:logistic", eta: 0.3, max_depth: 6}}

histogram: the server grows each tree as XGBoost's `hist` method does (`flctl.node.frameworks.xgb_hist`). The sites
first send a summary of each feature (their distinct values and counts, or order statistics when there are many)
and the server agrees the cuts; then, level by level, each site sends the gradient/hessian histograms of its rows
in the nodes being split, the server adds them and picks every split and leaf weight. Of two siblings only the
lighter one's histograms are built and sent; the server takes the other's as the parent's less it (XGBoost's
subtraction trick). Rows and gradients never
leave a site; the histograms do. Every message goes over flctl's own connections (no second network, no XGBoost
tracker). When every feature has at most `max_bin` distinct values over all sites, the cuts are those of XGBoost
on the pooled data and so is the model (tested: predictions within 1e-6); otherwise the cuts come from merged
quantile summaries and the model is close to the pooled one (bench/frameworks.py measures how close).

bagging: each round every site boosts `local_rounds` trees from the global model on its own rows with its own
XGBoost, its eta scaled by its share of the rows, and the server adds every site's new trees to the one forest.

The model is an XGBoost JSON model, held by `models/final.safetensors` as the uint8 tensor `model_json`
(`flctl.client.xgb.load_booster(path)` gives the `xgboost.Booster`); the report `xgboost` (small: it goes with
`flctl job show`) says the trees and each site's figures of the final model (log loss and AUC, or RMSE).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal, cast

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from flctl.node.jobs.tasks import Params, Task, TaskKind, TaskResult
from flctl.node.workflows.base import Federation, Workflow, WorkflowArgs, WorkflowError

REPORT = "xgboost"
STEP = "xgboost"
"""The meta key that names the step of an xgboost task (info, bin, histograms, finish, bagging)."""


class BoosterParams(BaseModel):
    """XGBoost's booster parameters the workflow supports (XGBoost's names; `lambda` and `learning_rate` too)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    objective: Literal["binary:logistic", "reg:squarederror"] = "binary:logistic"
    eta: float = Field(0.3, gt=0, validation_alias=AliasChoices("eta", "learning_rate"))
    max_depth: int = Field(6, ge=1, le=16)
    reg_lambda: float = Field(1.0, ge=0, validation_alias=AliasChoices("reg_lambda", "lambda"))
    min_child_weight: float = Field(1.0, ge=0)
    max_bin: int = Field(256, ge=2, le=65_536)
    base_score: float = Field(0.5, description="The starting prediction (a probability for binary:logistic)")

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump()


class XGBoostArgs(WorkflowArgs):
    """`workflow.args` of an `xgboost` job."""

    mode: Literal["histogram", "bagging"] = Field(
        "histogram", description="histogram: the server grows each tree from the sites' summed histograms; "
                                 "bagging: each site's trees are added to one forest")
    rounds: int = Field(ge=1, le=10_000, description="Boosting rounds (histogram: one tree each; bagging: "
                                                      "local_rounds trees per site each)")
    params: BoosterParams = Field(default_factory=BoosterParams, description="XGBoost's booster parameters")
    local_rounds: int = Field(1, ge=1, le=1000, description="bagging: the boosting rounds each site runs per round")
    round_timeout_s: float = Field(300.0, gt=0, description="Seconds each step waits for every site")


class XGBoost(Workflow):
    """Federated XGBoost: histogram-based (exact against pooled training with the pooled cuts) or bagging."""

    type_name: ClassVar[str] = "xgboost"
    Args: ClassVar[type[WorkflowArgs]] = XGBoostArgs

    def __init__(self, args: WorkflowArgs, min_sites: int = 1) -> None:
        super().__init__(args, min_sites)
        self.settings = cast(XGBoostArgs, args)  # checked by Workflow.__init__

    def run(self, fed: Federation, initial: Params | None, start_round: int = 0) -> Params:
        from flctl.node.frameworks import xgb_json

        sites = fed.sites()
        if len(sites) < self.min_sites:
            raise WorkflowError(f"{self.min_sites} sites are required but the job has {len(sites)}")
        info = self._ask(fed, sites, "info", -1, {}, _info_fits)
        widths = {xgb_json.num_features(_template(a)) for a in info.values()}
        if len(widths) > 1:
            raise WorkflowError("the sites' tables have different numbers of features: "
                                + ", ".join(f"{s} {xgb_json.num_features(_template(a))}" for s, a in info.items()))
        if initial and "model_json" in initial:
            try:
                model = xgb_json.from_array(initial["model_json"])
            except ValueError as exc:
                raise WorkflowError(f"the initial model: {exc}") from None
        else:
            model = xgb_json.empty(_template(info[sites[0]]))
        total = sum(a.num_examples for a in info.values())
        fed.log(f"xgboost {self.settings.mode}: {len(sites)} sites, {total} rows, {widths.pop()} features")
        if self.settings.mode == "histogram":
            model, metrics = self._histogram(fed, sites, info, model, start_round)
        else:
            model, metrics = self._bagging(fed, sites, total, model, start_round)
        final = {"model_json": xgb_json.to_array(model)}
        fed.save_model("final", final)
        fed.save_report(REPORT, {"mode": self.settings.mode, "rounds": self.settings.rounds,
                                 "trees": len(xgb_json.trees(model)), "params": self.settings.params.as_dict(),
                                 "sites": metrics})
        return final

    # ---- histogram mode -------------------------------------------------------------------------------------

    def _histogram(self, fed: Federation, sites: list[str], info: dict[str, TaskResult], model: dict[str, Any],
                   start_round: int) -> tuple[dict[str, Any], dict[str, dict[str, float]]]:
        import numpy as np

        from flctl.node.frameworks import xgb_hist, xgb_json

        params = self._boost_params()
        summaries = [(np.asarray(a.params["summary_values"]), np.asarray(a.params["summary_weights"]))
                     for a in info.values()]
        try:
            cuts = xgb_hist.merge_cuts(summaries, params.max_bin)
        except ValueError as exc:
            raise WorkflowError(f"the sites' feature summaries: {exc}") from None
        bins = max(len(c) for c in cuts)
        fed.log(f"cuts agreed: {sum(len(c) for c in cuts)} bins over {len(cuts)} features"
                + (" (every feature's distinct values)" if all(len(c) <= params.max_bin for c in cuts) else ""))
        self._ask(fed, sites, "bin", start_round, {"cuts": xgb_hist.pack_cuts(cuts),
                                                    "model_json": xgb_json.to_array(model)})
        last: dict[str, Any] = {}
        metrics: dict[str, dict[str, float]] = {}
        for round_no in range(start_round, self.settings.rounds):
            tree, level0 = self._tree(fed, sites, round_no, cuts, bins, last)
            if round_no > start_round:
                metrics = level0
                fed.record_round(round_no - 1, metrics)
            model = xgb_json.append(model, [xgb_hist.tree_json(tree, 0, len(cuts))])
            last = tree.arrays()
            self.checkpoint(fed, round_no, {"model_json": xgb_json.to_array(model)})
            fed.log(f"round {round_no + 1} of {self.settings.rounds}: a tree of {len(tree.feature)} nodes")
        answers = self._ask(fed, sites, "finish", self.settings.rounds,
                            {f"last/{k[5:]}": v for k, v in last.items()})
        metrics = {s: dict(a.metrics) for s, a in answers.items()}
        if self.settings.rounds > start_round:
            fed.record_round(self.settings.rounds - 1, metrics)
        return model, metrics

    def _tree(self, fed: Federation, sites: list[str], round_no: int, cuts: list[Any], bins: int,
              last: dict[str, Any]) -> tuple[Any, dict[str, dict[str, float]]]:
        """Grow round `round_no`'s tree level by level from the sites' histograms (the first level's task also
        carries the previous tree, `last`); the tree and the sites' figures of the model before it."""
        import numpy as np

        from flctl.node.frameworks import xgb_hist

        params = self._boost_params()
        tree = xgb_hist.Tree()
        level0: dict[str, dict[str, float]] = {}
        frontier = [0]
        built: list[int] = [0]  # the nodes whose histograms the sites build; their siblings are subtracted
        parents: dict[int, Any] = {}  # node -> its parent's summed histogram, for the sibling not built
        for level in range(params.max_depth + 1):
            if not frontier:
                break
            task_params = {**{f"last/{k[5:]}": v for k, v in last.items()}, **tree.arrays(),
                           "expand": np.array(built, np.int32)}
            answers = self._ask(fed, sites, "histograms", round_no, task_params,
                                _hist_fits(len(built), len(cuts), bins), {"level": level})
            if level == 0:
                level0 = {s: dict(a.metrics) for s, a in answers.items()}
                last = {}  # applied by the sites with the first level's task
            summed = sum((np.asarray(a.params["hist"], np.float64) for a in answers.values()),
                         np.zeros((len(built), len(cuts), bins, 2)))
            hists = dict(zip(built, summed, strict=True))
            for node in frontier:
                if node not in hists:  # XGBoost's subtraction trick: the parent's less the built sibling's
                    sibling = tree.right[tree.parent[node]] if tree.left[tree.parent[node]] == node else \
                        tree.left[tree.parent[node]]
                    hists[node] = parents[node] - hists[sibling]
            if level == 0:
                tree.set_root(float(summed[0, 0, :, 0].sum()), float(summed[0, 0, :, 1].sum()), params)
            grown: list[int] = []
            built, parents = [], {}
            for node in frontier:
                best = xgb_hist.best_split(hists[node], cuts, params) if level < params.max_depth else None
                if best is None:
                    continue
                change, feature, split_bin, left, right = best
                tree.add_children(node, feature, split_bin, float(cuts[feature][split_bin]), change,
                                  (left, right), params)
                children = [tree.left[node], tree.right[node]]
                grown += children
                built.append(children[0] if left[1] <= right[1] else children[1])  # the lighter child
                parents.update({child: hists[node] for child in children})
            frontier = grown
        return tree, level0

    def _boost_params(self) -> Any:
        from flctl.node.frameworks.xgb_hist import BoostParams

        return BoostParams(**self.settings.params.as_dict())

    # ---- bagging mode ---------------------------------------------------------------------------------------

    def _bagging(self, fed: Federation, sites: list[str], total: int, model: dict[str, Any],
                 start_round: int) -> tuple[dict[str, Any], dict[str, dict[str, float]]]:
        from flctl.node.frameworks import xgb_json

        metrics: dict[str, dict[str, float]] = {}
        for round_no in range(start_round, self.settings.rounds):
            answers = self._ask(fed, sites, "bagging", round_no, {"model_json": xgb_json.to_array(model)},
                                _trees_fits, {"total_examples": total, "local_rounds": self.settings.local_rounds})
            new: list[dict[str, Any]] = []
            for site in sorted(answers):
                new += _trees(answers[site])
            try:
                model = xgb_json.append(model, new)
            except ValueError as exc:
                raise WorkflowError(f"round {round_no + 1}: {exc}") from None
            metrics = {s: dict(a.metrics) for s, a in answers.items()}
            self.checkpoint(fed, round_no, {"model_json": xgb_json.to_array(model)})
            fed.record_round(round_no, metrics)
            fed.log(f"round {round_no + 1} of {self.settings.rounds}: {len(new)} trees added, "
                    f"{len(xgb_json.trees(model))} in the forest")
        answers = self._ask(fed, sites, "finish", self.settings.rounds, {"model_json": xgb_json.to_array(model)})
        return model, {s: dict(a.metrics) for s, a in answers.items()}

    # ---- one step at every site -----------------------------------------------------------------------------

    def _ask(self, fed: Federation, sites: list[str], step: str, round_no: int, params: Params,
             check: Any = None, meta: dict[str, Any] | None = None) -> dict[str, TaskResult]:
        from flctl.node.workflows.gather import gather

        task = Task(TaskKind.TRAIN, max(round_no, 0), params,
                    meta={STEP: step, "mode": self.settings.mode, "rounds": self.settings.rounds,
                          "params": self.settings.params.as_dict(), **(meta or {})})
        what = f"xgboost {step}" + (f", round {round_no + 1}" if 0 <= round_no < self.settings.rounds else "")
        return gather(fed, task, sites, self.settings.round_timeout_s, what, check)


def _template(answer: TaskResult) -> dict[str, Any]:
    from flctl.node.frameworks import xgb_json

    return xgb_json.from_array(answer.params["template"])


def _info_fits(answer: TaskResult) -> None:
    if "template" not in answer.params:
        raise ValueError("no XGBoost model template: its script must answer xgboost tasks with "
                         "flctl.client.xgb.serve(x, y)")
    _template(answer)
    if answer.num_examples <= 0:
        raise ValueError("no rows")


def _hist_fits(nodes: int, features: int, bins: int) -> Any:
    def check(answer: TaskResult) -> None:
        import numpy as np

        hist = answer.params.get("hist")
        if hist is None or np.shape(hist) != (nodes, features, bins, 2):
            raise ValueError(f"histograms of shape {np.shape(hist) if hist is not None else None}, not "
                             f"{(nodes, features, bins, 2)}")
        if not np.isfinite(hist).all():
            raise ValueError("histograms that are not finite")
    return check


def _trees(answer: TaskResult) -> list[dict[str, Any]]:
    import json

    import numpy as np

    trees = json.loads(np.asarray(answer.params["trees_json"], np.uint8).tobytes().decode())
    if not isinstance(trees, list) or not all(isinstance(t, dict) for t in trees):
        raise ValueError("trees_json is not a list of XGBoost trees")
    return trees


def _trees_fits(answer: TaskResult) -> None:
    if "trees_json" not in answer.params:
        raise ValueError("no trees_json: its script must answer xgboost tasks with flctl.client.xgb.serve(x, y)")
    try:
        _trees(answer)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"unreadable trees: {exc}") from None
