"""FedProx's proximal term (Li et al. 2020, "Federated Optimization in Heterogeneous Networks") for torch models:
(mu / 2) * sum over parameters of ||w - w_global||², added to a site's loss so that local training stays near the
global model it started from. `mu` comes from the task (`workflow.args.proximal_mu`); with mu 0 the term is 0
and training is FedAvg's.

torch is imported only when a script calls this (a numpy-only site never needs it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def proximal_term(module: Any, global_params: Mapping[str, Any], mu: float) -> Any:
    """(mu / 2) * sum_k ||module's k - global_params[k]||² over the module's trainable parameters, as a torch scalar
    that carries gradients (its gradient is mu * (w - w_global)). Parameters missing from `global_params` (a model
    received empty, before round 0's average) add nothing."""
    import torch

    first = next(iter(module.parameters()), None)
    total = torch.zeros((), dtype=first.dtype if first is not None else torch.float32,
                        device=first.device if first is not None else "cpu")
    if mu == 0:
        return total
    for name, param in module.named_parameters():
        if not param.requires_grad or name not in global_params:
            continue
        anchor = torch.as_tensor(global_params[name], dtype=param.dtype, device=param.device)
        total = total + torch.sum((param - anchor) ** 2)
    return total * (mu / 2)
