"""The model side of llm-lora: a causal language model, its tokenizer, LoRA through PEFT, training and perplexity.

The model is a Llama configuration with random weights (presets `tiny`, `small`, `100m`, or any size through
--layers/--hidden/--heads/--intermediate): nothing is downloaded. A site that holds a pretrained model passes its
local folder or its hub name (`--model HuggingFaceTB/SmolLM2-135M`, read from the site's own Hugging Face cache,
offline). Random weights are made from a seed with a generator of their own, so every site (and every thread of
the simulator) builds the same base model: in LoRA mode the base never travels, so it must be the same everywhere.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

BOS, EOS = 256, 257
BYTE_VOCAB = 258
"""The byte tokenizer's vocabulary: the 256 byte values, then BOS and EOS."""

PRESETS: dict[str, dict[str, int]] = {
    "tiny": {"layers": 2, "hidden": 64, "heads": 4, "intermediate": 128},         # ~0.1M parameters: tests, CPU
    "small": {"layers": 4, "hidden": 256, "heads": 4, "intermediate": 688},       # ~3M
    "100m": {"layers": 14, "hidden": 768, "heads": 12, "intermediate": 2048},     # ~99M: a GPU
}
"""Model sizes by name; --layers, --hidden, --heads and --intermediate override any of them."""


@dataclass
class Settings:
    """The job's knobs (train.py's command line, the same for every site)."""

    mode: str = "lora"
    model: str = "tiny"
    layers: int = 0
    hidden: int = 0
    heads: int = 0
    intermediate: int = 0
    dtype: str = "float32"
    device: str = "auto"
    threads: int = 1
    seed: int = 0
    chars: int = 40_000
    seq_len: int = 64
    batch: int = 8
    steps: int = 20
    eval_batches: int = 4
    lr: float = 3e-3
    lora_r: int = 8
    lora_alpha: int = 16
    target_modules: str = "all-linear"
    save: str = "global-model"


def parser() -> argparse.ArgumentParser:
    """train.py's options (export.py takes the same, so that it rebuilds the same model)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    d = Settings()
    p.add_argument("--mode", choices=("lora", "full"), default=d.mode,
                   help="lora: train and send LoRA adapters only; full: train and send the whole model")
    p.add_argument("--model", default=d.model, help=f"a preset ({', '.join(PRESETS)}) of random weights, or a "
                                                    "pretrained model's local folder or hub name (offline)")
    for knob in ("layers", "hidden", "heads", "intermediate"):
        p.add_argument(f"--{knob}", type=int, default=0, help=f"override the preset's {knob}")
    p.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default=d.dtype,
                   help="the model's weights (and so the tensors that travel)")
    p.add_argument("--device", default=d.device, help="auto: cuda when torch sees a GPU (the site's "
                                                      "CUDA_VISIBLE_DEVICES), else cpu; or cpu, cuda, cuda:1")
    p.add_argument("--threads", type=int, default=d.threads, help="torch CPU threads (0: torch's default)")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of the random base model and initial adapter")
    p.add_argument("--chars", type=int, default=d.chars, help="characters of text each site makes for itself")
    p.add_argument("--seq-len", type=int, default=d.seq_len, help="tokens per training sequence")
    p.add_argument("--batch", type=int, default=d.batch, help="sequences per step")
    p.add_argument("--steps", type=int, default=d.steps, help="local optimizer steps per round")
    p.add_argument("--eval-batches", type=int, default=d.eval_batches, help="held-out batches for perplexity")
    p.add_argument("--lr", type=float, default=d.lr, help="AdamW learning rate")
    p.add_argument("--lora-r", type=int, default=d.lora_r, help="LoRA rank")
    p.add_argument("--lora-alpha", type=int, default=d.lora_alpha, help="LoRA alpha (scale alpha / r)")
    p.add_argument("--target-modules", default=d.target_modules,
                   help="LoRA's target modules: all-linear, or names separated by commas (q_proj,v_proj)")
    p.add_argument("--save", default=d.save, help="folder, in the site's fl.output_dir() (kept at the site), where "
                                                  "it saves the final global model: a PEFT adapter folder in lora "
                                                  "mode, a transformers model folder in full mode; '' not to save")
    return p


def settings(argv: Sequence[str] | None = None) -> Settings:
    """The Settings of a command line."""
    values = vars(parser().parse_args(argv))
    return Settings(**values)


def pick_device(choice: str) -> torch.device:
    """`auto`: the first GPU torch sees (a site gives a job its GPUs through CUDA_VISIBLE_DEVICES), else the CPU."""
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(choice)


# ------------------------------------------------------------------------------------------------- tokenizers
class ByteTokenizer:
    """UTF-8 bytes as tokens, BOS first: a tokenizer made here, no vocabulary file."""

    vocab_size = BYTE_VOCAB

    def encode(self, text: str) -> list[int]:
        return [BOS, *text.encode("utf-8")]

    def decode(self, ids: list[int]) -> str:
        """The text of `ids` (BOS and EOS left out; bytes that are no UTF-8 read as U+FFFD)."""
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")


class HubTokenizer:
    """A pretrained model's own tokenizer (transformers' AutoTokenizer)."""

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer

    def encode(self, text: str) -> list[int]:
        return list(self._tokenizer(text)["input_ids"])

    def decode(self, ids: list[int]) -> str:
        return str(self._tokenizer.decode(ids, skip_special_tokens=True))


# ------------------------------------------------------------------------------------------------- models
def is_preset(settings: Settings) -> bool:
    return settings.model in PRESETS


def llama_config(settings: Settings) -> Any:
    """The transformers LlamaConfig of a preset with the overrides."""
    from transformers import LlamaConfig

    size = {**PRESETS[settings.model], **{k: v for k, v in (("layers", settings.layers), ("hidden", settings.hidden),
                                                           ("heads", settings.heads),
                                                           ("intermediate", settings.intermediate)) if v}}
    return LlamaConfig(vocab_size=BYTE_VOCAB, hidden_size=size["hidden"], intermediate_size=size["intermediate"],
                       num_hidden_layers=size["layers"], num_attention_heads=size["heads"],
                       num_key_value_heads=size["heads"], max_position_embeddings=max(settings.seq_len, 128),
                       bos_token_id=BOS, eos_token_id=EOS, tie_word_embeddings=False)


def base_model(settings: Settings) -> tuple[Any, ByteTokenizer | HubTokenizer]:
    """(the base model on the CPU in the job's dtype, its tokenizer): a preset's random weights from `seed`, or a
    pretrained model read offline from a local folder or the site's Hugging Face cache."""
    dtype = getattr(torch, settings.dtype)
    if not is_preset(settings):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        try:
            model = AutoModelForCausalLM.from_pretrained(settings.model, local_files_only=True,
                                                         **{_dtype_keyword(): dtype})
        except (OSError, ValueError) as exc:
            raise SystemExit(f"--model {settings.model}: neither a preset ({', '.join(PRESETS)}) nor a model folder "
                             f"or a hub model in this site's Hugging Face cache ({exc})") from None
        try:
            tokenizer: ByteTokenizer | HubTokenizer = HubTokenizer(
                AutoTokenizer.from_pretrained(settings.model, local_files_only=True))
        except (OSError, ValueError):  # a folder with weights but no tokenizer: bytes, when they fit its vocabulary
            if model.config.vocab_size < BYTE_VOCAB:
                raise
            tokenizer = ByteTokenizer()
        return model, tokenizer
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM(llama_config(settings))
    seeded_init(model, settings.seed)
    return model.to(dtype), ByteTokenizer()


def _dtype_keyword() -> str:
    """from_pretrained's dtype argument: `dtype` from transformers 4.56, `torch_dtype` before (4.45 is the llm
    extra's oldest)."""
    import transformers

    major, minor = (int(part) for part in transformers.__version__.split(".")[:2])
    return "dtype" if (major, minor) >= (4, 56) else "torch_dtype"


def seeded_init(model: Any, seed: int) -> None:
    """Every weight from a generator of its own (normal, std 0.02; norms 1): the same model at every site, whatever
    else uses torch's global generator meanwhile (the simulator runs several sites as threads of one process)."""
    generator = torch.Generator().manual_seed(seed)
    std = float(getattr(model.config, "initializer_range", 0.02))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name:
                param.fill_(1.0)
            elif name.endswith("bias"):
                param.zero_()
            else:
                param.copy_(torch.randn(param.shape, generator=generator) * std)


def lora_config(settings: Settings, base_name: str | None = None) -> Any:
    """The job's LoraConfig (the same at every site, and for export.py)."""
    from peft import LoraConfig

    targets: str | list[str] = (settings.target_modules if settings.target_modules == "all-linear"
                                else [t.strip() for t in settings.target_modules.split(",") if t.strip()])
    return LoraConfig(r=settings.lora_r, lora_alpha=settings.lora_alpha, lora_dropout=0.0, target_modules=targets,
                      task_type="CAUSAL_LM", base_model_name_or_path=base_name)


def with_lora(model: Any, settings: Settings) -> Any:
    """`model` wrapped by PEFT with the job's LoRA adapter: lora_A from the seed's own generator (Kaiming-uniform,
    as PEFT draws it), lora_B zero, so every site starts from the same adapter; only the adapter trains."""
    from peft import get_peft_model

    name = None if is_preset(settings) else settings.model
    wrapped = get_peft_model(model, lora_config(settings, name))
    generator = torch.Generator().manual_seed(settings.seed + 1)
    with torch.no_grad():
        for param_name, param in wrapped.named_parameters():
            if "lora_A" in param_name:
                bound = 1.0 / param.shape[1] ** 0.5
                param.copy_((torch.rand(param.shape, generator=generator) * 2 - 1) * bound)
    return wrapped


def build(settings: Settings, device: torch.device) -> tuple[Any, ByteTokenizer | HubTokenizer, int]:
    """(the model to train, on `device`, its tokenizer, the bytes the whole base model takes as safetensors)."""
    from flctl.client.peft import wire_bytes

    base, tokenizer = base_model(settings)
    full_bytes = wire_bytes(base.state_dict())  # on the CPU still: nothing copied
    model = with_lora(base, settings) if settings.mode == "lora" else base
    return model.to(device), tokenizer, full_bytes


def exchanged(model: Any, settings: Settings) -> dict[str, Any]:
    """What a site sends: the adapter (lora), or the whole state_dict (full), as CPU tensors in their dtype; copies,
    which the next global model loaded into `model` leaves as they are."""
    if settings.mode == "lora":
        from flctl.client.peft import adapter_params

        return adapter_params(model)
    return {name: tensor.detach().to("cpu", copy=True).contiguous() for name, tensor in model.state_dict().items()}


def load_global(model: Any, settings: Settings, params: dict[str, Any]) -> None:
    """Load the global model the task carries (adapter or whole model) into `model`."""
    if settings.mode == "lora":
        from flctl.client.peft import load_adapter

        load_adapter(model, params)
        return
    own = model.state_dict()
    missing = sorted(set(own) - set(params))
    if missing:
        raise ValueError(f"the global model lacks {len(missing)} of this model's tensors, e.g. {missing[0]} (a "
                         "lora-mode model sent to a full-mode job?)")
    model.load_state_dict({name: torch.as_tensor(value) for name, value in params.items()})


# ------------------------------------------------------------------------------------------------- data
def blocks(ids: list[int], seq_len: int) -> torch.Tensor:
    """Token ids cut into rows of `seq_len` (the tail that does not fill a row is dropped)."""
    rows = len(ids) // seq_len
    return torch.tensor(ids[:rows * seq_len], dtype=torch.long).view(rows, seq_len)


# ------------------------------------------------------------------------------------------------- training
@dataclass
class RoundStats:
    """One round of local training."""

    loss: float
    tokens: int
    seconds: float

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


def train(model: Any, data: torch.Tensor, settings: Settings, order_seed: int) -> RoundStats:
    """`settings.steps` AdamW steps over batches of `data` in an order drawn from `order_seed`; the mean loss, the
    tokens trained on and the seconds it took (the GPU synchronised)."""
    device = next(model.parameters()).device
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=settings.lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(order_seed)
    order = torch.randperm(len(data), generator=generator)
    model.train()
    losses: list[torch.Tensor] = []
    synchronize(device)
    start = time.perf_counter()
    for step in range(settings.steps):
        rows = order[(torch.arange(settings.batch) + step * settings.batch) % len(data)]
        batch = data[rows].to(device)
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.detach())
    synchronize(device)
    seconds = time.perf_counter() - start
    mean = float(torch.stack(losses).float().mean()) if losses else float("nan")
    return RoundStats(mean, settings.steps * settings.batch * data.shape[1], seconds)


def perplexity(model: Any, data: torch.Tensor, settings: Settings) -> tuple[float, float]:
    """(mean loss per token, perplexity = exp of it) of `model` over the first `eval_batches` batches of `data`."""
    device = next(model.parameters()).device
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, min(len(data), settings.eval_batches * settings.batch), settings.batch):
            batch = data[start:start + settings.batch].to(device)
            predicted = batch.shape[0] * (batch.shape[1] - 1)
            total += float(model(input_ids=batch, labels=batch).loss.float()) * predicted
            count += predicted
    loss = total / count
    return loss, float(torch.exp(torch.tensor(loss)))


def synchronize(device: torch.device) -> None:
    """Wait for the GPU's queued work (timings); nothing on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
