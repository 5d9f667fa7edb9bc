"""A model split over several concurrent streams: which bytes each stream carries, and checking that the parts that
came tile the model exactly.

One gRPC stream is a sequence of messages handled one after another by one thread at each end; several streams
over the same connection let gRPC's threads (and the kernel's) work on several parts at once. A model of `size`
bytes sent over `parts` streams is cut into contiguous ranges on chunk boundaries (`ranges`), the same cut at both
ends, so a part is named by its index alone: nothing a peer sends says where its bytes go but the index, which is
checked. How many streams a node asks for is `model_streams` in its `local/resources.yml`.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field

MIN_PART_BYTES = 4 * 1024 * 1024
"""A part is at least this big: below it another stream costs more (a call, a thread) than it brings."""
MAX_PARTS = 16
"""The most streams one model is split over (`model_streams` allows no more)."""


def streams_for(size: int, wanted: int) -> int:
    """How many streams a model of `size` bytes goes over when `wanted` are asked for: at most `MAX_PARTS`, and no
    more than keeps every part at least `MIN_PART_BYTES`; 1 for anything small."""
    return max(1, min(wanted, MAX_PARTS, size // MIN_PART_BYTES))


def ranges(size: int, parts: int, chunk: int) -> list[tuple[int, int]]:
    """The [begin, end) of each of `parts` parts of `size` bytes, in order, each starting on a multiple of `chunk`
    and as even as whole chunks allow; together they cover [0, size) exactly."""
    if parts < 1:
        raise ValueError(f"a model is sent in 1 or more parts, not {parts}")
    chunks = -(-size // chunk)
    cuts = [min(size, (i * chunks // parts) * chunk) for i in range(parts)] + [size]
    return list(itertools.pairwise(cuts))


def check_part(size: int, part: int, parts: int) -> str:
    """Why a part numbered `part` of `parts` of a model of `size` bytes cannot be one ('' when it can): `parts` is
    not what `streams_for` could give for that size, or `part` is not one of them."""
    if parts < 1 or parts > streams_for(size, MAX_PARTS):
        return (f"a model of {size} bytes is sent in 1 to {streams_for(size, MAX_PARTS)} parts "
                f"(each at least {MIN_PART_BYTES} bytes), not {parts}")
    if not 0 <= part < parts:
        return f"part {part} of a model sent in {parts} parts (numbered 0 to {parts - 1})"
    return ""


@dataclass
class Assembly:
    """The parts of one model arriving on several streams, each written where it belongs: which have come whole.
    Thread-safe: each stream's handler reports its own part."""

    size: int
    parts: int
    done: set[int] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def matches(self, size: int, parts: int) -> bool:
        """Whether another part's header says the same model (the same size, cut into as many parts)."""
        return (size, parts) == (self.size, self.parts)

    def finish(self, part: int) -> bool:
        """Record `part` as come whole; True once, for the call that completes the model (every part come)."""
        with self._lock:
            complete_before = len(self.done) == self.parts
            self.done.add(part)
            return not complete_before and len(self.done) == self.parts
