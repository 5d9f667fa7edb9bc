"""`flctl.client.xgb.serve(x, y)`: a site's part of the `xgboost` workflow (both modes), the whole script loop.

    import flctl.client as fl
    from flctl.client.xgb import serve

    fl.init()
    serve(features, labels)            # a (rows, features) table and its labels; answers until the job ends

histogram mode: the site bins its rows by the agreed cuts, keeps its margins, and answers each level of each tree
with the gradient/hessian histograms of its rows in the nodes being split (`flctl.node.frameworks.xgb_hist`); its
rows and gradients stay here. bagging mode: it boosts from the global model with its own XGBoost and sends the new
trees. Each round it reports its figures of the model so far (log loss and AUC, or RMSE) on its rows.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["XGBoostSite", "load_booster", "serve"]


def load_booster(model: Any) -> Any:
    """The `xgboost.Booster` of an xgboost job's model: a path to its `models/final.safetensors` (or any round's),
    or the params `fl.load_model` gave (with the uint8 tensor `model_json`)."""
    import numpy as np
    import xgboost as xgb

    import flctl.client as fl

    params = model if isinstance(model, dict) else fl.load_model(model)
    if "model_json" not in params:
        raise ValueError(f"not an xgboost job's model: no tensor model_json (it has {', '.join(sorted(params))})")
    booster = xgb.Booster()
    booster.load_model(bytearray(np.asarray(params["model_json"], np.uint8).tobytes()))
    return booster


def serve(x: Any, y: Any) -> None:
    """Answer the job's xgboost tasks from the table `x` and labels `y` until the job ends."""
    import flctl.client as fl

    site = XGBoostSite(x, y)
    while fl.running():
        model = fl.receive()
        if model is None:
            break
        fl.send(site.answer(model))


class XGBoostSite:
    """One site's state across a job's tasks: its rows, their bins and margins (histogram mode)."""

    def __init__(self, x: Any, y: Any) -> None:
        import numpy as np

        from flctl.node.frameworks.xgb_hist import as_features

        self.x = as_features(x)
        self.y = np.asarray(y, np.float32).reshape(-1)
        if len(self.y) != len(self.x):
            raise ValueError(f"{len(self.x)} rows but {len(self.y)} labels")
        self.binned: Any = None
        self.bins = 0
        self._matrix: Any = None
        self.margin: Any = None
        self.grad: Any = None

    def answer(self, task: Any) -> Any:
        """The answer to one xgboost task (`task`, from `fl.receive()`)."""
        import numpy as np

        import flctl.client as fl
        from flctl.node.frameworks import xgb_hist
        from flctl.node.frameworks.xgb_hist import BoostParams

        step = task.meta.get("xgboost")
        params = BoostParams(**task.meta["params"])
        n = len(self.y)
        if step == "info":
            out = {"template": _to_array(self._template(params))}
            if task.meta.get("mode") == "histogram":
                out["summary_values"], out["summary_weights"] = xgb_hist.summary(self.x, params.max_bin)
            return fl.Model(params=out, num_examples=n)
        if step == "bin":
            cuts = xgb_hist.unpack_cuts(task.params["cuts"])
            self.binned, self.bins = xgb_hist.bin_rows(self.x, cuts), max(len(c) for c in cuts)
            self.margin = self._margins(task.params["model_json"], params)
            return fl.Model(metrics=xgb_hist.site_metrics(self.margin, self.y, params.objective), num_examples=n)
        if step in ("histograms", "finish") and task.meta.get("mode") == "histogram":
            if self.binned is None:
                raise RuntimeError("a histograms task before the bin step: this site's script restarted in the "
                                   "middle of the job; run the job again")
            self._apply_last(task.params)
            if step == "finish":
                return fl.Model(metrics=xgb_hist.site_metrics(self.margin, self.y, params.objective), num_examples=n)
            if task.meta.get("level") == 0:
                self.grad = xgb_hist.gradients(self.margin, self.y, params.objective)
            p = task.params
            pos = xgb_hist.positions(self.binned, np.asarray(p["tree/feature"]), np.asarray(p["tree/bin"]),
                                     np.asarray(p["tree/left"]), np.asarray(p["tree/right"]))
            g, h = self.grad
            hist = xgb_hist.histograms(self.binned, g, h, pos, np.asarray(p["expand"]), self.bins)
            metrics = (xgb_hist.site_metrics(self.margin, self.y, params.objective)
                       if task.meta.get("level") == 0 else {})
            return fl.Model(params={"hist": hist}, metrics=metrics, num_examples=n)
        if step in ("bagging", "finish"):
            booster = self._booster(task.params["model_json"])
            margin = booster.predict(self._dmatrix(), output_margin=True)
            metrics = xgb_hist.site_metrics(margin, self.y, params.objective)
            if step == "finish":
                return fl.Model(metrics=metrics, num_examples=n)
            return fl.Model(params={"trees_json": _to_array(self._boost(booster, params, task.meta))},
                            metrics=metrics, num_examples=n)
        raise ValueError(f"not an xgboost task (meta xgboost={step!r}): run this script in a job of workflow.type "
                         "xgboost")

    def _dmatrix(self) -> Any:
        """The site's rows as one DMatrix, made once: XGBoost keeps its bins with it across rounds."""
        import xgboost as xgb

        if self._matrix is None:
            self._matrix = xgb.DMatrix(self.x, label=self.y)
        return self._matrix

    def _template(self, params: Any) -> Any:
        import xgboost as xgb

        return json.loads(bytes(xgb.train(params.xgboost_params(), self._dmatrix(), 0).save_raw("json")))

    def _booster(self, model_json: Any) -> Any:
        import numpy as np
        import xgboost as xgb

        booster = xgb.Booster()
        booster.load_model(bytearray(np.asarray(model_json, np.uint8).tobytes()))
        return booster

    def _margins(self, model_json: Any, params: Any) -> Any:
        import numpy as np

        from flctl.node.frameworks import xgb_json

        if not xgb_json.trees(xgb_json.from_array(model_json)):
            return np.full(len(self.y), np.float32(params.base_margin()), np.float32)
        return self._booster(model_json).predict(self._dmatrix(), output_margin=True).astype(np.float32)

    def _apply_last(self, p: dict[str, Any]) -> None:
        import numpy as np

        from flctl.node.frameworks import xgb_hist

        if "last/feature" not in p:
            return
        pos = xgb_hist.positions(self.binned, np.asarray(p["last/feature"]), np.asarray(p["last/bin"]),
                                 np.asarray(p["last/left"]), np.asarray(p["last/right"]))
        self.margin = (self.margin + np.asarray(p["last/value"], np.float32)[pos]).astype(np.float32)

    def _boost(self, booster: Any, params: Any, meta: dict[str, Any]) -> list[Any]:
        """Boost from the global model on this site's rows, eta scaled by its share of all rows; the new trees."""
        import xgboost as xgb

        from flctl.node.frameworks import xgb_json

        before = booster.num_boosted_rounds()  # one tree per iteration in the workflow's models
        settings = {**params.xgboost_params(), "eta": params.eta * len(self.y) / float(meta["total_examples"])}
        trained = xgb.train(settings, self._dmatrix(), int(meta.get("local_rounds", 1)),
                            xgb_model=booster if before else None)
        return xgb_json.trees(json.loads(bytes(trained.save_raw("json"))))[before:]


def _to_array(value: Any) -> Any:
    import numpy as np

    return np.frombuffer(json.dumps(value, separators=(",", ":")).encode(), np.uint8).copy()
