"""llm-lora's inference job (generate.yml): each site generates text with the model it is sent, on prompts of its own.

The model sent is what an llm-lora job trained: its adapter (lora mode; the base is built at each site from the
same seed, as in training, and never travels) or the whole model (--mode full, generate-full.yml). Give a trained
job's result with `flctl job submit playbooks/jobs/llm-lora/generate.yml --model-from JOB_ID`; simulated, name the
job's models/final.safetensors (copied into app/) as job.yml's `initial_model`. The options are train.py's (they
must be those the training job ran with: the same base model, LoRA rank and target modules) and --prompts and
--new-tokens.

Each site's prompts come from a seed of its name (its own requests, which never leave it); what it generates is
written, one JSON line a prompt, to generations.jsonl in fl.output_dir(), kept at the site. Only what generate.yml's
`returns` declares goes back: how many prompts, how many tokens were generated and how fast.

    flctl job submit playbooks/jobs/llm-lora/generate.yml --model-from JOB_ID --watch
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

import llm  # llm.py and site_text.py sit beside this script, in app/
import numpy as np
import torch
from site_text import SUBJECTS, VERBS, seed_of

PROMPT_SALT = 0x70726F6D
"""Salt of the prompts' seed: another stream than the site's training and held-out text."""


class Generation(NamedTuple):
    """What to generate: the job's model (train.py's Settings) and how many prompts and tokens. (A NamedTuple, not
    a dataclass: the server imports this file by path for initial_model, without a sys.modules entry.)"""

    settings: llm.Settings
    prompts: int = 6
    new_tokens: int = 12


def parser() -> argparse.ArgumentParser:
    """train.py's options (the model to rebuild) with --prompts and --new-tokens."""
    p = llm.parser()
    p.description = __doc__.splitlines()[0]
    defaults = Generation._field_defaults
    p.add_argument("--prompts", type=int, default=defaults["prompts"], help="prompts each site makes for itself")
    p.add_argument("--new-tokens", type=int, default=defaults["new_tokens"], help="tokens generated a prompt")
    return p


def generation(argv: Sequence[str] | None = None) -> Generation:
    """The Generation of a command line."""
    values = vars(parser().parse_args(argv))
    prompts, new_tokens = values.pop("prompts"), values.pop("new_tokens")
    if prompts < 1 or new_tokens < 1:
        raise SystemExit("--prompts and --new-tokens must be at least 1")
    return Generation(llm.Settings(**values), prompts, new_tokens)


def site_prompts(site: str, count: int) -> list[str]:
    """`count` prompts of `site` (a subject and a verb of site_text's grammar), from a seed of its name."""
    rng = np.random.default_rng(seed_of(site, PROMPT_SALT))
    return [f"{SUBJECTS[rng.integers(len(SUBJECTS))].capitalize()} {VERBS[rng.integers(len(VERBS))]}"
            for _ in range(count)]


def model_for(settings: llm.Settings, params: dict[str, Any], device: torch.device) -> tuple[Any, Any]:
    """(the job's model with `params` loaded, in eval mode on `device`, its tokenizer): the seeded base with the
    adapter (lora), or the whole model (full)."""
    model, tokenizer, _ = llm.build(settings, device)
    llm.load_global(model, settings, params)
    return model.eval(), tokenizer


def generate(model: Any, tokenizer: Any, prompts: list[str], new_tokens: int) -> tuple[list[str], int, float]:
    """(each prompt's continuation, tokens generated, seconds taken): greedy, exactly `new_tokens` tokens a prompt."""
    device = next(model.parameters()).device
    eos = getattr(model.config, "eos_token_id", None)
    eos = eos if isinstance(eos, int) else llm.EOS
    outputs: list[str] = []
    tokens = 0
    llm.synchronize(device)
    started = time.perf_counter()
    with torch.no_grad():
        for prompt in prompts:
            ids = torch.tensor([tokenizer.encode(prompt)], device=device)
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
                                 min_new_tokens=new_tokens, do_sample=False, pad_token_id=eos, eos_token_id=eos)
            new = out[0, ids.shape[1]:].tolist()
            tokens += len(new)
            outputs.append(tokenizer.decode(new))
    llm.synchronize(device)
    return outputs, tokens, time.perf_counter() - started


def seeded_adapter() -> dict[str, Any]:
    """generate.yml's initial_model when no trained job is named: the seeded adapter every llm-lora site starts
    from (train.py's defaults: the tiny preset, rank 8; lora_B zero, so the base model as it is)."""
    model, _, _ = llm.build(llm.Settings(), torch.device("cpu"))
    return llm.exchanged(model, llm.Settings())


def seeded_model() -> dict[str, Any]:
    """generate-full.yml's initial_model when no trained job is named: the tiny preset's seeded weights in bfloat16
    (full.yml's model before training)."""
    settings = llm.Settings(mode="full", dtype="bfloat16")
    model, _, _ = llm.build(settings, torch.device("cpu"))
    return llm.exchanged(model, settings)


def main(argv: list[str]) -> None:
    import flctl.client as fl  # imported here so tests can load this module without a running job

    chosen = generation(argv)
    if chosen.settings.threads:
        torch.set_num_threads(chosen.settings.threads)
    device = llm.pick_device(chosen.settings.device)
    fl.init()
    site = fl.site_name()
    while fl.running():
        task = fl.receive()
        if task is None:
            break
        model, tokenizer = model_for(chosen.settings, task.params, device)
        prompts = site_prompts(site, chosen.prompts)
        outputs, tokens, seconds = generate(model, tokenizer, prompts, chosen.new_tokens)
        with (fl.output_dir() / "generations.jsonl").open("w") as out:  # stays at the site
            for prompt, text in zip(prompts, outputs, strict=True):
                out.write(json.dumps({"prompt": prompt, "output": text}) + "\n")
        rate = tokens / seconds if seconds > 0 else 0.0
        fl.send(fl.Model(metrics={"count": len(prompts), "tokens": tokens, "tokens_per_s": rate},
                         num_examples=len(prompts)))
        print(f"{site}: generated {tokens} tokens for {len(prompts)} prompts on {device} ({chosen.settings.mode}, "
              f"model {chosen.settings.model}) at {rate:.0f} tokens/s; kept in {fl.output_dir() / 'generations.jsonl'}")


if __name__ == "__main__":
    main(sys.argv[1:])
