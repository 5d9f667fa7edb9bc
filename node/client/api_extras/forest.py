"""`flctl.client.forest`: a site's part of the `forest` workflow (random forests pooled across sites).

    import flctl.client as fl
    from flctl.client.forest import serve
    from sklearn.ensemble import RandomForestClassifier

    fl.init()
    serve(RandomForestClassifier(n_estimators=20, random_state=0), features, labels)

`serve` fits the forest on the site's rows and sends its trees as arrays (`params_of`); asked to evaluate, it
answers the pooled forest's accuracy and AUC on the same rows (`predict_proba`, no scikit-learn needed).
"""

from __future__ import annotations

from typing import Any

__all__ = ["params_of", "predict_proba", "serve"]


def params_of(forest: Any) -> dict[str, Any]:
    """A fitted RandomForestClassifier's trees as the arrays the workflow pools (class probabilities per node)."""
    import numpy as np

    out: dict[str, Any] = {"classes": np.asarray(forest.classes_)}
    for i, estimator in enumerate(forest.estimators_):
        tree = estimator.tree_
        value = np.asarray(tree.value[:, 0, :], np.float64)
        out[f"tree/{i}/left"] = np.asarray(tree.children_left, np.int64)
        out[f"tree/{i}/right"] = np.asarray(tree.children_right, np.int64)
        out[f"tree/{i}/feature"] = np.asarray(tree.feature, np.int64)
        out[f"tree/{i}/threshold"] = np.asarray(tree.threshold, np.float64)
        out[f"tree/{i}/value"] = value / value.sum(axis=1, keepdims=True)
    return out


def predict_proba(params: dict[str, Any], x: Any) -> Any:
    """The pooled forest's class probabilities for rows `x`."""
    from flctl.node.frameworks.forest import predict_proba as predict

    return predict(params, x)


def serve(forest: Any, x: Any, y: Any) -> None:
    """Fit `forest` on (x, y) when asked to train, evaluate the pooled forest when asked to; until the job ends."""
    import numpy as np

    import flctl.client as fl
    from flctl.node.frameworks.xgb_hist import auc

    while fl.running():
        model = fl.receive()
        if model is None:
            break
        if fl.is_evaluate():
            proba = predict_proba(model.params, x)
            classes = np.asarray(model.params["classes"])
            truth = np.asarray(y)
            metrics = {"accuracy": float(np.mean(classes[proba.argmax(axis=1)] == truth))}
            if len(classes) == 2 and len(np.unique(truth)) == 2:
                metrics["auc"] = auc(truth == classes[1], proba[:, 1])
            fl.send(fl.Model(metrics=metrics, num_examples=len(truth)))
            continue
        forest.fit(x, y)
        fl.send(fl.Model(params=params_of(forest), num_examples=len(y),
                         metrics={"trees": float(len(forest.estimators_))}))
