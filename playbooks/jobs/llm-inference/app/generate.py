"""llm-inference: each site runs the model it is sent over prompts of its own and keeps what it generates.

The prompts are made from a seed of the site's name (a site's own requests, which never leave it); the generated
text is written, one JSON line a prompt, to `generations.jsonl` in `fl.output_dir()`, at the site. Only what
job.yml's `returns` declares goes back: how many prompts, how many tokens were generated and how fast.
"""

from __future__ import annotations

import json
import time
import zlib

import numpy as np
from tiny_lm import EOS, PAD, decode, encode, new_model

PROMPTS = 6
NEW_TOKENS = 12
SUBJECTS = ("the nurse", "a doctor", "the patient", "our team", "the lab", "the surgeon", "the clerk", "a student")
VERBS = ("checks", "records", "moves", "prepares", "reviews", "orders", "carries", "measures")


def site_prompts(site: str, count: int = PROMPTS) -> list[str]:
    """`count` prompts of `site`, from a seed of its name (the same on every machine)."""
    rng = np.random.default_rng(zlib.crc32(site.encode()))
    return [f"{SUBJECTS[rng.integers(len(SUBJECTS))]} {VERBS[rng.integers(len(VERBS))]}" for _ in range(count)]


def generate(model: object, prompts: list[str], device: str) -> tuple[list[str], int, float]:
    """(each prompt's continuation, tokens generated, seconds taken): greedy, NEW_TOKENS tokens a prompt."""
    import torch

    outputs: list[str] = []
    tokens = 0
    started = time.perf_counter()
    with torch.no_grad():
        for prompt in prompts:
            ids = torch.tensor([encode(prompt)], device=device)
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=NEW_TOKENS,  # type: ignore[attr-defined]
                                 min_new_tokens=NEW_TOKENS, do_sample=False, pad_token_id=PAD, eos_token_id=EOS)
            new = out[0, ids.shape[1]:].tolist()
            tokens += len(new)
            outputs.append(decode(new))
    return outputs, tokens, time.perf_counter() - started


def main() -> None:
    import torch

    import flctl.client as fl

    torch.set_num_threads(1)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    fl.init()
    while fl.running():
        task = fl.receive()
        if task is None:
            break
        model = new_model()
        model.load_state_dict(task.params)
        model.to(device)
        prompts = site_prompts(fl.site_name())
        outputs, tokens, seconds = generate(model, prompts, device)
        with (fl.output_dir() / "generations.jsonl").open("w") as out:  # stays at the site
            for prompt, text in zip(prompts, outputs, strict=True):
                out.write(json.dumps({"prompt": prompt, "output": text}) + "\n")
        fl.send(fl.Model(metrics={"count": len(prompts), "tokens": tokens, "tokens_per_s": tokens / seconds},
                         num_examples=len(prompts)))


if __name__ == "__main__":
    main()
