"""A PEFT model's adapter (LoRA...) as a job's params: only the adapter travels, the base model stays at the site.

A site fine-tuning a large language model with LoRA trains a few hundred thousand adapter values over a base of
millions or billions that never change; sending the adapter alone (`adapter_params`) is what makes the job's
traffic small. The names are those of a PEFT adapter file (`get_peft_model_state_dict`: `...q_proj.lora_A.weight`,
no adapter name), so the server's model (`models/final.safetensors`) is the tensors of an `adapter_model.safetensors`
as they are, and `save_adapter` makes it a PEFT adapter folder that `PeftModel.from_pretrained` loads.

Needs the llm extra (transformers, peft); imported only by the scripts that use it (`flctl.client.peft`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ADAPTER_FILE = "adapter_model.safetensors"
"""The weights file of a PEFT adapter folder (beside `adapter_config.json`)."""


def adapter_params(model: Any, adapter_name: str = "default") -> dict[str, Any]:
    """The adapter of a PEFT model (`get_peft_model(...)`) as name -> CPU tensor, in its own dtype: what a site
    sends. The base model's weights are not in it. The tensors are copies: loading another adapter into the model
    later (the next global one) leaves them as they are."""
    from peft import get_peft_model_state_dict

    state = get_peft_model_state_dict(model, adapter_name=adapter_name)
    return {name: tensor.detach().to("cpu", copy=True).contiguous() for name, tensor in state.items()}


def load_adapter(model: Any, params: Mapping[str, Any], adapter_name: str = "default") -> None:
    """Set the adapter of PEFT `model` to `params` (torch tensors or numpy arrays, named as `adapter_params` names
    them), cast to each weight's dtype and device; ValueError naming the tensors when the names are not exactly the
    model's adapter's (a job whose sites use another LoRA rank or other target modules)."""
    import torch
    from peft import get_peft_model_state_dict, set_peft_model_state_dict

    own = get_peft_model_state_dict(model, adapter_name=adapter_name)
    missing, unexpected = sorted(set(own) - set(params)), sorted(set(params) - set(own))
    if missing or unexpected:
        raise ValueError("the adapter received does not fit this model's"
                         + (f"; missing {_some(missing)}" if missing else "")
                         + (f"; not in this model: {_some(unexpected)}" if unexpected else "")
                         + " (do all sites use the same base model, LoRA rank and target modules?)")
    tensors: dict[str, Any] = {}
    for name, value in params.items():
        tensor = value if isinstance(value, torch.Tensor) else _tensor(value)
        if tuple(tensor.shape) != tuple(own[name].shape):
            raise ValueError(f"adapter tensor {name}: shape {tuple(tensor.shape)} received, this model's is "
                             f"{tuple(own[name].shape)} (another LoRA rank?)")
        tensors[name] = tensor.to(device=own[name].device, dtype=own[name].dtype)
    set_peft_model_state_dict(model, tensors, adapter_name=adapter_name)


def save_adapter(source: Any, folder: str | os.PathLike[str], config: Any = None,
                 adapter_name: str = "default") -> Path:
    """Write a PEFT adapter folder (`adapter_config.json`, `adapter_model.safetensors`) at `folder`; its path.

    `source` is a PEFT model (its adapter and config; `config` unused), or the adapter's params (name -> tensor or
    array, as `adapter_params` or `fl.load_model` give them) or a path to them (a job's `models/final.safetensors`)
    with `config`: the PEFT config they were trained with (a `LoraConfig`, or its dict). Load it back with
    `PeftModel.from_pretrained(base_model, folder)`."""
    from peft import PeftConfig
    from safetensors.torch import save_file

    out = Path(folder)
    if hasattr(source, "peft_config"):
        source.save_pretrained(str(out), selected_adapters=[adapter_name])
        return out
    if config is None:
        raise ValueError("save_adapter(params, folder, config): give the PEFT config the adapter was trained with "
                         "(a LoraConfig or its dict)")
    if isinstance(source, (str, os.PathLike)):
        from flctl.node.client.api import load_model

        source = load_model(source)
    if isinstance(config, Mapping):
        config = PeftConfig.from_peft_type(**config)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {name: (value if hasattr(value, "detach") else _tensor(value)).detach().to("cpu").contiguous()
               for name, value in source.items()}
    save_file(tensors, str(out / ADAPTER_FILE), metadata={"format": "pt"})
    config.save_pretrained(str(out))
    return out


def wire_bytes(params: Mapping[str, Any]) -> int:
    """The bytes `params` take on the wire: their safetensors encoding (each tensor at its own dtype's size), as
    flctl sends them when the job quantizes nothing."""
    from flctl.node.wire.tensors import layout

    return layout(params).size


def is_adapter_name(name: str) -> bool:
    """Whether a tensor name is a LoRA adapter's (`lora_A`, `lora_B`, `lora_embedding_*`, `lora_magnitude_*`)."""
    return any(part.startswith("lora_") for part in name.split("."))


def _tensor(array: Any) -> Any:
    """A torch tensor of a numpy array (bfloat16 ones too, bit for bit)."""
    from flctl.node.client.api import _as_torch

    return _as_torch({"t": array})["t"]


def _some(names: list[str]) -> str:
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
