"""A site's part in split learning (the `split_nn` workflow), done by the Client API in the site's script process
(`fl.split_nn`): each site runs a bottom model over its own feature columns of the shared rows (the intersection a
`psi` job found); the site holding the labels also runs the top model over all bottom models' outputs.

Per batch, a feature site answers `split_forward` with its bottom model's activations for the batch's rows; the
label site answers `split_step` with the gradient of the loss with respect to each feature site's activations,
after stepping its own bottom and top models; the feature site applies that gradient at its next `split_forward`,
before computing the next batch, so every model is updated with batch b's gradient before batch b+1, as one model
trained on the joined table would be. What leaves a site: activations (feature sites), gradients and the batch's
loss and accuracy (the label site). Raw features and labels never do.

Torch is imported only here, when a split task arrives.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ACTIVATIONS = "activations"
GRADIENT = "gradient"


class SplitError(ValueError):
    """A split task this site cannot answer (rows out of range, activations of the wrong shape…)."""


@dataclass
class SplitParty:
    """One site's models and data: `bottom` over `features` (rows in the order of the shared intersection); at the
    label site also `top`, `labels` and `loss_fn`; `optimizer` steps every model of this site."""

    bottom: Any
    features: Any
    optimizer: Any
    top: Any = None
    labels: Any = None
    loss_fn: Any = None
    _pending: Any = None  # a feature site's last training activations, waiting for their gradient

    def answer(self, kind: str, params: dict[str, Any], meta: dict[str, Any]
               ) -> tuple[dict[str, Any], dict[str, float], dict[str, Any]]:
        """The answer (params, metrics, meta) to a split task of `kind`."""
        phase = meta.get("phase")
        if phase == "setup":
            if kind == "split_step" and self.top is None:
                raise SplitError("this site was sent the label site's step, but fl.split_nn() was given no top model "
                                 "and labels here")
            return {}, {}, {"rows": len(self.features)}
        if kind == "split_forward":
            return self._forward(params, meta, phase)
        if kind == "split_step":
            return self._step(params, meta, phase)
        raise SplitError(f"fl.split_nn() got a {kind!r} task; it answers split tasks only")

    def _rows(self, meta: dict[str, Any]) -> list[int]:
        rows = meta.get("rows")
        if not isinstance(rows, list) or not rows or not all(
                isinstance(r, int) and 0 <= r < len(self.features) for r in rows):
            raise SplitError(f"a split task's rows must be indices below {len(self.features)}")
        return rows

    def _forward(self, params: dict[str, Any], meta: dict[str, Any], phase: Any
                 ) -> tuple[dict[str, Any], dict[str, float], dict[str, Any]]:
        import torch

        if GRADIENT in params:
            if self._pending is None:
                raise SplitError("a gradient arrived for activations this site did not send")
            gradient = torch.as_tensor(params[GRADIENT], dtype=self._pending.dtype)
            if gradient.shape != self._pending.shape:
                raise SplitError(f"the gradient has shape {tuple(gradient.shape)}, the activations "
                                 f"{tuple(self._pending.shape)}")
            self.optimizer.zero_grad()
            self._pending.backward(gradient)
            self.optimizer.step()
            self._pending = None
        if phase == "apply":
            return {}, {}, {}
        rows = self._rows(meta)
        if phase == "train":
            self.bottom.train()
            out = self.bottom(self.features[rows])
            self._pending = out
            return {ACTIVATIONS: out.detach().numpy()}, {}, {}
        self.bottom.eval()
        with torch.no_grad():
            return {ACTIVATIONS: self.bottom(self.features[rows]).numpy()}, {}, {}

    def _step(self, params: dict[str, Any], meta: dict[str, Any], phase: Any
              ) -> tuple[dict[str, Any], dict[str, float], dict[str, Any]]:
        import torch

        if self.top is None or self.labels is None:
            raise SplitError("this site has no top model and labels (fl.split_nn(..., top=, labels=))")
        rows = self._rows(meta)
        order = meta.get("feature_sites", [])
        if not isinstance(order, list) or sorted(order) != sorted(params):
            raise SplitError(f"the step carries activations of {sorted(params)}, expected {order}")
        training = phase == "train"
        received = {}
        for site in order:
            value = torch.as_tensor(params[site])
            if value.ndim != 2 or value.shape[0] != len(rows) or not bool(torch.isfinite(value).all()):
                raise SplitError(f"{site}'s activations are not {len(rows)} finite rows")
            received[site] = value.clone().requires_grad_(training)
        self.bottom.train(training)
        self.top.train(training)
        with torch.set_grad_enabled(training):
            joined = torch.cat([self.bottom(self.features[rows]), *(received[site] for site in order)], dim=1)
            logits = self.top(joined)
            target = self.labels[rows]
            loss = self.loss_fn(logits, target)
        if training:
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
        metrics = {"loss": float(loss.detach()), "accuracy": accuracy(logits.detach(), target)}
        gradients = {site: _grad(received[site]) for site in order} if training else {}
        return gradients, metrics, {}


def _grad(value: Any) -> Any:
    """The gradient the backward pass left on `value`, as numpy (zeros when the top model does not use it)."""
    import torch

    return (value.grad if value.grad is not None else torch.zeros_like(value)).numpy()


def accuracy(logits: Any, target: Any) -> float:
    """The share of rows predicted right: one logit, above 0 means 1; several, the largest is the class."""
    if logits.ndim == 1 or logits.shape[-1] == 1:
        predicted = (logits.reshape(-1) > 0).to(target.dtype)
        return float((predicted == target.reshape(-1)).float().mean())
    return float((logits.argmax(dim=-1) == target).float().mean())
