"""llm-lora: each site fine-tunes a causal language model on its own text with LoRA; only the adapter travels.

Every round a site loads the global adapter (none in round 0: every site starts from the same seeded one), trains
--steps AdamW steps on its own text and sends its adapter back; the server averages the adapters (FedAvg, weighted
by each site's training sequences). The base model is built at each site and never leaves it. Asked to evaluate
(job.yml's evaluate_every), a site answers the global adapter's loss and perplexity on its held-out text, recorded
per site and round as val_loss and val_perplexity. With --mode full, the whole model trains and travels instead.

Each round's answer also says what travelled and how fast the site trained: bytes_sent (the safetensors bytes of
the answer), bytes_received (of the task's model), full_model_bytes (what the whole model would take),
tokens_per_s; and a log line says the same. At the last round's evaluation each site saves the final global model
in fl.output_dir()/global-model/ (--save), kept at the site: a PEFT adapter folder in lora mode.

    flctl simulate playbooks/jobs/llm-lora -n 2
    python train.py --help       # the knobs: model size, dtype, device, LoRA rank, steps...
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import llm  # llm.py and site_text.py sit beside this script, in app/
import torch
from site_text import seed_of, site_text


class Site:
    """One site's part of the job: its model, its text, the rounds it has seen."""

    def __init__(self, name: str, settings: llm.Settings) -> None:
        self.name = name
        self.settings = settings
        self.device = llm.pick_device(settings.device)
        self.model, tokenizer, self.full_bytes = llm.build(settings, self.device)
        train_text, held_out = site_text(name, settings.chars)
        self.train_data = llm.blocks(tokenizer.encode(train_text), settings.seq_len)
        self.eval_data = llm.blocks(tokenizer.encode(held_out), settings.seq_len)
        if not len(self.train_data) or not len(self.eval_data):
            raise SystemExit(f"--chars {settings.chars} makes too little text for one training and one held-out "
                             f"sequence of --seq-len {settings.seq_len} tokens; raise --chars")
        self.rounds = 0
        self.own: dict[str, Any] = {}  # this site's model after its last training (cross-site evaluation asks it)

    def train_round(self, params: dict[str, Any], round_no: int) -> tuple[dict[str, Any], dict[str, float], int]:
        """Train from the global `params` (empty: the seeded start); (what to send, metrics, training sequences)."""
        from flctl.client.peft import wire_bytes

        if params:
            llm.load_global(self.model, self.settings, params)
        stats = llm.train(self.model, self.train_data, self.settings, seed_of(self.name, round_no + 1))
        sent = self.own = llm.exchanged(self.model, self.settings)
        metrics = {"train_loss": stats.loss, "tokens_per_s": stats.tokens_per_s, "bytes_sent": wire_bytes(sent),
                   "bytes_received": wire_bytes(params) if params else 0, "full_model_bytes": self.full_bytes}
        return sent, metrics, len(self.train_data)

    def evaluate(self, params: dict[str, Any]) -> dict[str, float]:
        """The global model's loss and perplexity on this site's held-out text."""
        llm.load_global(self.model, self.settings, params)
        loss, ppl = llm.perplexity(self.model, self.eval_data, self.settings)
        return {"loss": loss, "perplexity": ppl}

    def save(self, folder: Path) -> Path:
        """Save the model as it is (the global one, just loaded) in `folder`: a PEFT adapter folder (lora), or a
        transformers model folder (full)."""
        self.model.save_pretrained(str(folder))
        return folder


def main(argv: list[str]) -> None:
    import flctl.client as fl  # imported here so tests can load Site without a running job

    settings = llm.settings(argv)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    fl.init()
    site = Site(fl.site_name(), settings)
    trainable = sum(p.numel() for p in site.model.parameters() if p.requires_grad)
    print(f"{site.name}: {settings.mode} on {site.device}, model {settings.model} ({settings.dtype}), "
          f"{trainable} of {sum(p.numel() for p in site.model.parameters())} parameters train; "
          f"{len(site.train_data)} training sequences of {settings.seq_len} tokens, {len(site.eval_data)} held out")
    while fl.running():
        task = fl.receive()
        if task is None:
            break
        if task.task == "evaluate":
            metrics = site.evaluate(task.params)
            fl.send(fl.Model(metrics=metrics, num_examples=len(site.eval_data)))
            print(f"round {task.round + 1}: global model's perplexity {metrics['perplexity']:.3f} on held-out text")
            if settings.save and task.round + 1 == site.rounds:
                print(f"saved the final global model in {site.save(fl.output_dir() / settings.save)}")
            continue
        if task.task == "submit_model":  # cross_site_eval: this site's own model, as its last round left it
            fl.send(fl.Model(params=site.own or llm.exchanged(site.model, settings), num_examples=len(site.train_data)))
            continue
        site.rounds = int(task.meta.get("rounds", 0))
        params, metrics, n = site.train_round(task.params, task.round)
        fl.send(fl.Model(params=params, metrics=metrics, num_examples=n))
        print(f"round {task.round + 1}: trained at {metrics['tokens_per_s']:.0f} tokens/s on {site.device}, loss "
              f"{metrics['train_loss']:.4f}; sent {metrics['bytes_sent']:.0f} bytes ({settings.mode}: {len(params)} "
              f"tensors), received {metrics['bytes_received']:.0f}; the full model is {site.full_bytes} bytes")


if __name__ == "__main__":
    main(sys.argv[1:])
