"""`flctl.client.peft`: fine-tune a language model with LoRA (Hugging Face PEFT) and send only the adapter.

    import flctl.client as fl
    from flctl.client import peft as flp
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(base_model, LoraConfig(r=8, target_modules="all-linear"))
    while fl.running():
        task = fl.receive()
        if task.params:
            flp.load_adapter(model, task.params)          # the global adapter; the base model never travels
        ...train...
        fl.send(fl.Model(params=flp.adapter_params(model), num_examples=n))

    flp.save_adapter("ws/my-job/models/final.safetensors", "my-adapter", config=lora_config)  # a PEFT folder

See `flctl.node.client.peft_adapter`; needs the llm extra (transformers, peft). The example job is
playbooks/jobs/llm-lora.
"""

from __future__ import annotations

from flctl.node.client.peft_adapter import adapter_params, is_adapter_name, load_adapter, save_adapter, wire_bytes

__all__ = ["adapter_params", "is_adapter_name", "load_adapter", "save_adapter", "wire_bytes"]
