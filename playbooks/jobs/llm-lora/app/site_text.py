"""Each site's own text, made from a seed: short sentences of one small grammar, the words each site favours its own.

The sites share the language (the grammar and the word lists) but not its use: a site draws every word from its
own skewed distribution over each list (a Dirichlet draw seeded by the site's name), so their texts differ the way
two hospitals' notes do. The held-out text comes from the same distribution, later in the same stream.
"""

from __future__ import annotations

import zlib

import numpy as np

SUBJECTS = ("the nurse", "a doctor", "the patient", "our team", "the lab", "a visitor", "the surgeon", "the clerk",
            "my sister", "the pharmacist", "a student", "the driver")
VERBS = ("checks", "records", "moves", "cleans", "prepares", "reviews", "orders", "carries", "measures", "finds",
         "labels", "returns")
OBJECTS = ("the chart", "a sample", "the bed", "two forms", "the results", "a tray", "the schedule", "fresh water",
           "the medicine", "a report", "the notes", "clean sheets")
ENDINGS = ("before noon", "after lunch", "every morning", "at night", "on friday", "without delay", "again",
           "by hand", "with care", "in room four")
SKEW = 0.3
"""Dirichlet concentration of each site's word preferences: small, so each site favours a few words of each list."""


def seed_of(site: str, salt: int = 0) -> int:
    """A stable seed from a site's name (the same on every machine and Python, unlike hash())."""
    return zlib.crc32(site.encode()) ^ salt


def site_text(site: str, chars: int, salt: int = 0) -> tuple[str, str]:
    """(training text, held-out text) of `site`: about `chars` characters, a tenth of them held out."""
    rng = np.random.default_rng(seed_of(site, salt))
    lists = (SUBJECTS, VERBS, OBJECTS, ENDINGS)
    weights = [rng.dirichlet(np.full(len(words), SKEW)) for words in lists]
    sentences: list[str] = []
    size = 0
    while size < chars:
        words = [words[rng.choice(len(words), p=p)] for words, p in zip(lists, weights, strict=True)]
        sentence = " ".join(words) + ". "
        sentences.append(sentence[0].upper() + sentence[1:])
        size += len(sentence)
    text = "".join(sentences)
    cut = len(text) - len(text) // 10
    return text[:cut], text[cut:]
