"""Make a llm-lora job's final model (the server's models/final.safetensors) a folder transformers and PEFT load.

    python export.py FINAL.safetensors OUT [train.py's options, as the job ran]

lora mode: OUT is a PEFT adapter folder (adapter_config.json, adapter_model.safetensors), loaded over the same base
model with `PeftModel.from_pretrained(base, OUT)`; full mode: OUT is a transformers model folder
(`AutoModelForCausalLM.from_pretrained(OUT)`). The options must be those the job's sites ran with (job.yml's
app.command): they rebuild the same LoRA configuration or model.
"""

from __future__ import annotations

import sys
from pathlib import Path

import llm  # beside this script, in app/


def export(final: Path, out: Path, settings: llm.Settings) -> Path:
    """Write `final` (the job's final model) as a PEFT adapter folder (lora) or a transformers model folder (full)."""
    from flctl.client.peft import save_adapter

    import flctl.client as fl

    if settings.mode == "lora":
        name = None if llm.is_preset(settings) else settings.model
        return save_adapter(final, out, config=llm.lora_config(settings, name))
    model, _ = llm.base_model(settings)
    fl.load_model(final, into=model)  # strict: every tensor of the model, cast to its dtype
    model.save_pretrained(str(out))
    return out


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[0].startswith("-"):
        sys.exit(f"usage: python export.py FINAL.safetensors OUT [train.py's options]\n{__doc__}")
    final, out = Path(argv[0]), Path(argv[1])
    if not final.is_file():
        sys.exit(f"export.py: {final} is not a file; give the job's models/final.safetensors")
    print(f"wrote {export(final, out, llm.settings(argv[2:]))}")


if __name__ == "__main__":
    main(sys.argv[1:])
