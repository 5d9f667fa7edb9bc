"""SCAFFOLD's site side (Karimireddy et al. 2020, option II) for torch models: the gradient correction and the
control-variate update. The server's control variate `c` comes with each task (the Client API keeps it apart
from the model the script receives); the site's own `c_i` lives in the Client API's session across tasks.

    after each loss.backward():   grad += c - c_i                              (correct)
    after K local steps of lr:    c_i+ = c_i - c + (x - y) / (K * lr)            (update)
                                  the answer: y and dc = c_i+ - c_i (as `@scaffold_dc/<name>` tensors)

torch is imported only when a script calls these.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any

from flctl.node.jobs.tasks import SCAFFOLD_DC


def correct(module: Any, control: Mapping[str, Any], own: Mapping[str, Any]) -> None:
    """Add c - c_i to the gradient of each of the module's parameters that has one (c_i 0 before the first update;
    nothing is added before the server's first control variate)."""
    import torch

    with torch.no_grad():
        for name, param in module.named_parameters():
            if param.grad is None or name not in control:
                continue
            c = torch.as_tensor(control[name], dtype=param.grad.dtype, device=param.grad.device)
            param.grad.add_(c)
            if name in own:
                param.grad.sub_(own[name].to(param.grad.device))


def update(module: Any, start: Mapping[str, Any], control: Mapping[str, Any], own: MutableMapping[str, Any],
           steps: int, lr: float) -> dict[str, Any]:
    """The answer's params: the module's state_dict and, for each parameter, dc = c_i+ - c_i with
    c_i+ = c_i - c + (x - y) / (K * lr), x the model the task started from (`start`) and y the module now; `own`
    (c_i) is updated to c_i+ in place. ValueError when steps or lr cannot be a step count and a learning rate."""
    import torch

    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1 or not lr > 0:
        raise ValueError(f"fl.scaffold_params(): steps must be a whole number >= 1 and lr a number > 0, not "
                         f"steps={steps!r}, lr={lr!r}")
    out: dict[str, Any] = {name: tensor.detach().clone() for name, tensor in module.state_dict().items()}
    with torch.no_grad():
        for name, param in module.named_parameters():
            y = param.detach()
            x = torch.as_tensor(start[name], dtype=y.dtype, device=y.device) if name in start else torch.zeros_like(y)
            c = torch.as_tensor(control[name], dtype=y.dtype, device=y.device) if name in control \
                else torch.zeros_like(y)
            before = own.get(name, torch.zeros_like(y))
            after = before - c + (x - y) / (steps * lr)
            out[SCAFFOLD_DC + name] = (after - before).clone()
            own[name] = after
    return out
