"""A tiny causal language model from a `transformers` config (a Llama of 2 layers, about 0.2 M parameters), with
random weights from a fixed seed: nothing is downloaded. Its tokenizer is characters: each printable ASCII
character is one id after the three special ones (any other character reads as '?'), so no vocabulary file is
needed and whatever it generates prints.

`make_model` is job.yml's `initial_model` (called once at the server, confined); the sites build the same
architecture (`new_model`) and load the weights the server sends.
"""

from __future__ import annotations

from typing import Any

PAD, BOS, EOS = 0, 1, 2
SPECIAL = 3
FIRST, LAST = 32, 126  # printable ASCII
VOCAB = SPECIAL + LAST - FIRST + 1
SEED = 0


def config() -> Any:
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256,
                       pad_token_id=PAD, bos_token_id=BOS, eos_token_id=EOS, tie_word_embeddings=False)


def new_model() -> Any:
    """The model with its seeded random weights, in eval mode."""
    import torch
    from transformers import LlamaForCausalLM

    torch.manual_seed(SEED)
    return LlamaForCausalLM(config()).eval()


def make_model() -> Any:
    """job.yml's initial_model: the model the server sends every site."""
    return new_model()


def encode(text: str) -> list[int]:
    """BOS, then one id a character."""
    return [BOS, *(SPECIAL + (ord(c) if FIRST <= ord(c) <= LAST else ord("?")) - FIRST for c in text)]


def decode(ids: list[int]) -> str:
    """The characters of `ids`, special ids left out."""
    return "".join(chr(i - SPECIAL + FIRST) for i in ids if SPECIAL <= i < VOCAB)
