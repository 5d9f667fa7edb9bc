"""XGBoost's `hist` tree method split between sites and a server (horizontal federated XGBoost, histogram-based):
the sites bin their rows by the agreed cuts and send gradient/hessian histograms per tree node; the server adds
them and picks each split exactly as XGBoost's depth-wise `hist` grower does on the pooled histograms. With the
pooled data's cuts (every feature with at most `max_bin` distinct values: the cuts are then the values themselves)
the trees are XGBoost's on the pooled data, up to the order floating-point sums are taken in.

What is mirrored from XGBoost 3 (`src/tree/hist/evaluate_splits.h`, `src/tree/param.h`): float32 features, cuts and
gradients; double histograms; a bin b of feature f holds cut[b-1] <= x < cut[b], so the split at b sends x <
cut[b] left; the gain G²/(H+λ) (no L1, no max_delta_step); a split needs both sides' hessian >= min_child_weight and
a loss change > 1e-6 (kRtEps), ties going to the lower feature, then the lower bin; leaf value eta·(-G/(H+λ)).
Not covered: missing values, categorical features, alpha, gamma, max_delta_step, subsampling, lossguide.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

RT_EPS = 1e-6
"""XGBoost's kRtEps: a split must lower the loss by more than this."""
SUMMARY_PER_BIN = 8
"""A site's summary of a feature holds up to SUMMARY_PER_BIN * max_bin values (its distinct values when fewer)."""
OBJECTIVES = ("binary:logistic", "reg:squarederror")


@dataclass(frozen=True)
class BoostParams:
    """The booster parameters the histogram mode supports (XGBoost's names and defaults)."""

    objective: str = "binary:logistic"
    eta: float = 0.3
    max_depth: int = 6
    reg_lambda: float = 1.0
    min_child_weight: float = 1.0
    max_bin: int = 256
    base_score: float = 0.5

    def xgboost_params(self) -> dict[str, object]:
        """The same parameters for `xgboost.train` (the pooled reference)."""
        return {"objective": self.objective, "eta": self.eta, "max_depth": self.max_depth, "lambda": self.reg_lambda,
                "min_child_weight": self.min_child_weight, "max_bin": self.max_bin, "base_score": self.base_score,
                "tree_method": "hist"}

    def base_margin(self) -> float:
        if self.objective == "binary:logistic":
            return float(np.log(self.base_score / (1 - self.base_score)))
        return self.base_score


# ---- cuts -------------------------------------------------------------------------------------------------------

def summary(x: np.ndarray, max_bin: int) -> tuple[np.ndarray, np.ndarray]:
    """A site's summary of each feature: (values, weights), each (features, L), NaN/0 padded. A feature with at most
    SUMMARY_PER_BIN * max_bin distinct values sends them with their counts (exact); else that many evenly spaced
    order statistics, each weighing rows / that many."""
    x = as_features(x)
    size = SUMMARY_PER_BIN * max_bin
    columns = []
    for f in range(x.shape[1]):
        values, counts = np.unique(x[:, f], return_counts=True)
        if len(values) > size:
            ordered = np.sort(x[:, f])
            values = ordered[np.linspace(0, len(ordered) - 1, size).round().astype(np.int64)]
            columns.append((values, np.full(size, len(ordered) / size)))
        else:
            columns.append((values, counts.astype(np.float64)))
    width = max((len(v) for v, _ in columns), default=0)
    values_out = np.full((x.shape[1], width), np.nan, np.float32)
    weights_out = np.zeros((x.shape[1], width), np.float64)
    for f, (values, counts) in enumerate(columns):
        values_out[f, :len(values)] = values
        weights_out[f, :len(values)] = counts
    return values_out, weights_out


def merge_cuts(summaries: list[tuple[np.ndarray, np.ndarray]], max_bin: int) -> list[np.ndarray]:
    """Each feature's cuts (upper bounds of its bins, float32, the last above the max) from every site's summary: the
    distinct values after the smallest when they are at most max_bin (XGBoost's cuts on the pooled data), else the
    weighted quantiles i/max_bin of the merged summaries."""
    features = summaries[0][0].shape[0]
    cuts = []
    for f in range(features):
        values = np.concatenate([np.asarray(v[f], np.float32) for v, _ in summaries])
        weights = np.concatenate([np.asarray(w[f], np.float64) for _, w in summaries])
        keep = ~np.isnan(values) & (weights > 0)
        distinct, inverse = np.unique(values[keep], return_inverse=True)
        if len(distinct) == 0:
            raise ValueError(f"feature {f} has no values at any site")
        mass = np.bincount(inverse, weights=weights[keep])
        top = distinct[-1]
        upper = np.float32(float(top) + (abs(float(top)) + 1e-5))  # in double, as XGBoost
        if len(distinct) <= max_bin:
            inner = distinct[1:]
        else:
            ranks = np.cumsum(mass)
            wanted = ranks[-1] * np.arange(1, max_bin) / max_bin
            inner = np.unique(distinct[np.minimum(np.searchsorted(ranks, wanted, side="left") + 1, len(distinct) - 1)])
        cuts.append(np.concatenate([inner, [upper]]).astype(np.float32))
    return cuts


def pack_cuts(cuts: list[np.ndarray]) -> np.ndarray:
    """Cuts as one (features, max bins) float32 array, +inf padded, for a task."""
    width = max(len(c) for c in cuts)
    out = np.full((len(cuts), width), np.inf, np.float32)
    for f, c in enumerate(cuts):
        out[f, :len(c)] = c
    return out


def unpack_cuts(packed: np.ndarray) -> list[np.ndarray]:
    return [row[np.isfinite(row)].astype(np.float32) for row in np.asarray(packed, np.float32)]


def as_features(x: np.ndarray) -> np.ndarray:
    """Rows as float32 (XGBoost's DMatrix); ValueError for missing values, which this mode does not handle."""
    out = np.asarray(x, np.float32)
    if out.ndim != 2:
        raise ValueError(f"the features must be a (rows, features) table, not shape {out.shape}")
    if not np.isfinite(out).all():
        raise ValueError("the features hold NaN or infinite values; histogram mode does not handle missing values")
    return out


def bin_rows(x: np.ndarray, cuts: list[np.ndarray]) -> np.ndarray:
    """Each value's bin: the first cut above it (a value above the last cut goes to the last bin)."""
    x = as_features(x)
    if x.shape[1] != len(cuts):
        raise ValueError(f"the rows have {x.shape[1]} features; the job's cuts are for {len(cuts)}")
    out = np.empty(x.shape, np.int32)
    for f, c in enumerate(cuts):
        out[:, f] = np.minimum(np.searchsorted(c, x[:, f], side="right"), len(c) - 1)
    return out


# ---- gradients and histograms at a site -------------------------------------------------------------------------

def gradients(margin: np.ndarray, y: np.ndarray, objective: str) -> tuple[np.ndarray, np.ndarray]:
    """First and second derivatives of the loss at `margin`, float32 as XGBoost's GradientPair."""
    m = np.asarray(margin, np.float32)
    label = np.asarray(y, np.float32)
    if objective == "binary:logistic":
        p = (np.float32(1) / (np.float32(1) + np.exp(-m))).astype(np.float32)
        return (p - label).astype(np.float32), np.maximum(p * (np.float32(1) - p), np.float32(1e-16)).astype(np.float32)
    if objective == "reg:squarederror":
        return (m - label).astype(np.float32), np.ones_like(m, np.float32)
    raise ValueError(f"objective {objective!r} is not one of {', '.join(OBJECTIVES)}")


def positions(binned: np.ndarray, feature: np.ndarray, split_bin: np.ndarray, left: np.ndarray,
              right: np.ndarray) -> np.ndarray:
    """The node each row reaches in a (partial) tree: feature -1 marks a node not split (a leaf, or not yet)."""
    pos = np.zeros(len(binned), np.int64)
    rows = np.arange(len(binned))
    while True:
        f = feature[pos]
        inner = f >= 0
        if not inner.any():
            return pos
        goes_left = binned[rows, np.maximum(f, 0)] <= split_bin[pos]
        pos = np.where(inner, np.where(goes_left, left[pos], right[pos]), pos)


def histograms(binned: np.ndarray, g: np.ndarray, h: np.ndarray, pos: np.ndarray, nodes: np.ndarray,
               bins: int) -> np.ndarray:
    """(len(nodes), features, bins, 2): per node, feature and bin the sums of g and h of the rows there (double)."""
    nodes = np.asarray(nodes, np.int64)
    slot_of = np.full(max(int(pos.max(initial=0)), int(nodes.max(initial=0))) + 1, -1, np.int64)
    slot_of[nodes] = np.arange(len(nodes))
    slot = slot_of[pos]
    mask = slot >= 0
    out = np.zeros((len(nodes), binned.shape[1], bins, 2), np.float64)
    gm, hm, sm = g[mask].astype(np.float64), h[mask].astype(np.float64), slot[mask]
    for f in range(binned.shape[1]):
        index = sm * bins + binned[mask, f]
        out[:, f, :, 0] = np.bincount(index, weights=gm, minlength=len(nodes) * bins).reshape(len(nodes), bins)
        out[:, f, :, 1] = np.bincount(index, weights=hm, minlength=len(nodes) * bins).reshape(len(nodes), bins)
    return out


# ---- trees at the server ----------------------------------------------------------------------------------------

@dataclass
class Tree:
    """A tree as it grows: parallel lists indexed by node id (root 0, children numbered as they are made)."""

    feature: list[int] = field(default_factory=lambda: [-1])
    split_bin: list[int] = field(default_factory=lambda: [0])
    left: list[int] = field(default_factory=lambda: [-1])
    right: list[int] = field(default_factory=lambda: [-1])
    parent: list[int] = field(default_factory=lambda: [2147483647])
    condition: list[float] = field(default_factory=lambda: [0.0])
    weight: list[float] = field(default_factory=lambda: [0.0])   # -G/(H+λ), float32
    loss_change: list[float] = field(default_factory=lambda: [0.0])
    hessian: list[float] = field(default_factory=lambda: [0.0])
    depth: list[int] = field(default_factory=lambda: [0])
    leaf: list[float] = field(default_factory=lambda: [0.0])   # eta * weight for leaves

    def arrays(self) -> dict[str, np.ndarray]:
        """What a task carries for the sites to place their rows and apply the tree."""
        return {"tree/feature": np.array(self.feature, np.int32), "tree/bin": np.array(self.split_bin, np.int32),
                "tree/left": np.array(self.left, np.int32), "tree/right": np.array(self.right, np.int32),
                "tree/value": np.array(self.leaf, np.float32)}

    def add_children(self, node: int, feature: int, split_bin: int, condition: float, loss_change: float,
                     sides: tuple[tuple[float, float], tuple[float, float]], params: BoostParams) -> None:
        self.feature[node], self.split_bin[node], self.condition[node] = feature, split_bin, condition
        self.loss_change[node] = loss_change
        for side, (g, h) in zip(("left", "right"), sides, strict=True):
            child = len(self.feature)
            getattr(self, side)[node] = child
            self.feature.append(-1)
            self.split_bin.append(0)
            self.left.append(-1)
            self.right.append(-1)
            self.parent.append(node)
            self.condition.append(0.0)
            self.loss_change.append(0.0)
            self.hessian.append(h)
            self.depth.append(self.depth[node] + 1)
            w = leaf_weight(g, h, params)
            self.weight.append(w)
            self.leaf.append(float(np.float32(params.eta) * np.float32(w)))

    def set_root(self, g: float, h: float, params: BoostParams) -> None:
        self.hessian[0] = h
        self.weight[0] = leaf_weight(g, h, params)
        self.leaf[0] = float(np.float32(params.eta) * np.float32(self.weight[0]))


def leaf_weight(g: float, h: float, params: BoostParams) -> float:
    """XGBoost's CalcWeight: -G/(H+λ), 0 under min_child_weight; float32."""
    if h < params.min_child_weight or h <= 0:
        return 0.0
    return float(np.float32(-g / (h + params.reg_lambda)))


def best_split(hist: np.ndarray, cuts: list[np.ndarray], params: BoostParams
               ) -> tuple[float, int, int, tuple[float, float], tuple[float, float]] | None:
    """The best split of one node from its (features, bins, 2) histogram: (loss change, feature, bin, left (G, H),
    right (G, H)), or None when no split lowers the loss by more than kRtEps."""
    lam = params.reg_lambda
    gl = np.cumsum(hist[:, :, 0], axis=1)
    hl = np.cumsum(hist[:, :, 1], axis=1)
    g_total, h_total = float(hist[0, :, 0].sum()), float(hist[0, :, 1].sum())
    gr, hr = g_total - gl, h_total - hl
    parent = g_total * g_total / (h_total + lam)
    with np.errstate(divide="ignore", invalid="ignore"):
        change = (gl * gl / (hl + lam) + gr * gr / (hr + lam) - parent).astype(np.float32)
    valid = (hl >= params.min_child_weight) & (hr >= params.min_child_weight)
    for f, c in enumerate(cuts):
        valid[f, len(c):] = False
    change = np.where(valid, change, -np.inf)
    index = int(np.argmax(change))  # the first maximum: lower feature, then lower bin (XGBoost's tie rule)
    f, b = divmod(index, change.shape[1])
    best = float(change[f, b])
    if not best > RT_EPS:
        return None
    return best, f, b, (float(gl[f, b]), float(hl[f, b])), (float(gr[f, b]), float(hr[f, b]))


def tree_json(tree: Tree, tree_id: int, features: int) -> dict[str, object]:
    """The tree in XGBoost's JSON model format (a member of `learner.gradient_booster.model.trees`)."""
    n = len(tree.feature)
    is_leaf = [tree.feature[i] < 0 for i in range(n)]
    return {
        "base_weights": [tree.leaf[i] if is_leaf[i] else tree.weight[i] for i in range(n)],
        "categories": [], "categories_nodes": [], "categories_segments": [], "categories_sizes": [],
        "default_left": [0] * n,
        "id": tree_id,
        "left_children": [tree.left[i] for i in range(n)],
        "loss_changes": [tree.loss_change[i] for i in range(n)],
        "parents": list(tree.parent),
        "right_children": [tree.right[i] for i in range(n)],
        "split_conditions": [tree.leaf[i] if is_leaf[i] else tree.condition[i] for i in range(n)],
        "split_indices": [max(tree.feature[i], 0) for i in range(n)],
        "split_type": [0] * n,
        "sum_hessian": list(tree.hessian),
        "tree_param": {"num_deleted": "0", "num_feature": str(features), "num_nodes": str(n),
                       "size_leaf_vector": "1"},
    }


def site_metrics(margin: np.ndarray, y: np.ndarray, objective: str) -> dict[str, float]:
    """The model's figures on a site's rows: log loss and AUC (binary:logistic) or RMSE."""
    m = np.asarray(margin, np.float64)
    label = np.asarray(y, np.float64)
    if objective != "binary:logistic":
        return {"rmse": float(np.sqrt(np.mean((m - label) ** 2)))}
    p = np.clip(1 / (1 + np.exp(-m)), 1e-15, 1 - 1e-15)
    out = {"logloss": float(-np.mean(label * np.log(p) + (1 - label) * np.log(1 - p)))}
    positives = int(label.sum())
    if 0 < positives < len(label):
        out["auc"] = auc(label, m)
    return out


def auc(label: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties counted half)."""
    order = np.argsort(score, kind="mergesort")
    s = np.asarray(score, np.float64)[order]
    ranks = (np.searchsorted(s, s, side="left") + np.searchsorted(s, s, side="right") + 1) / 2
    pos = np.asarray(label, np.float64)[order] > 0.5
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
