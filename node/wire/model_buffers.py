"""Model-sized byte buffers a process fills again and again, kept between uses instead of made new each time.

A site's job process receives each round's model into one buffer and the script's answer into another, both the
model's size. Made new each time, every page of them is memory the kernel must find and zero on first touch: 0.65
CPU-seconds per GB on the 2-core machine flctl is measured on (`clear_page_erms`, the largest single item in a
`perf record` of a 1 GB round: a fifth of all its CPU), against 0.08 s to fill a buffer whose pages are already
there. Kept, the round's download and the script's answer land in memory that is already mapped.

A buffer is given out again only when nothing holds it any more: each `take` hands out a view of a kept array,
and every view, slice or numpy array made from that view keeps a reference to the array, so while any of them
lives the array's reference count is above the pool's own and `take` makes a new buffer instead. Reuse is then
never a question of the caller remembering to give a buffer back: a filter or workflow that keeps a view of last
round's model keeps its bytes. `keep` bounds how many buffers stay (the least recently used free one goes first):
a site job process keeps one, the model's size, which serves the download and the answer in turn.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

import numpy as np

MIN_BYTES = 1 << 20
"""Smaller requests are made new each time: their pages cost little, and a pool of them would only grow."""


class ModelBuffers:
    """Buffers of at least MIN_BYTES, reused once nothing refers to them; thread-safe."""

    def __init__(self, keep: int = 1) -> None:
        if keep < 0:
            raise ValueError(f"keep must be >= 0, not {keep}")
        self._keep = keep
        self._arrays: list[np.ndarray] = []  # least recently taken first
        self._lock = threading.Lock()
        self.reused = 0
        self.made = 0

    def take(self, size: int) -> memoryview:
        """`size` writable bytes, not zeroed: a kept buffer no one holds when one fits (at least `size`, at most an
        eighth more), else a new one, kept when there is room for it."""
        if size < MIN_BYTES or self._keep == 0:
            return _view(np.empty(max(0, size), np.uint8))
        with self._lock:
            for index in range(len(self._arrays)):
                if size <= self._arrays[index].nbytes <= size + size // 8 and _unheld(self._arrays, index):
                    self._arrays.append(self._arrays.pop(index))
                    self.reused += 1
                    return _view(self._arrays[-1])[:size]
            self.made += 1
            array = np.empty(size, np.uint8)
            if len(self._arrays) >= self._keep:
                free = [index for index in range(len(self._arrays)) if _unheld(self._arrays, index)]
                if not free:
                    return _view(array)  # every kept one is in use: this one is not kept
                del self._arrays[free[0]]
            self._arrays.append(array)
            return _view(array)

    def kept_bytes(self) -> int:
        """The bytes the pool holds (in use or not)."""
        with self._lock:
            return sum(array.nbytes for array in self._arrays)

    def clear(self) -> None:
        """Forget every kept buffer (those in use live on with their users)."""
        with self._lock:
            self._arrays.clear()


def _view(array: np.ndarray) -> memoryview:
    return memoryview(array)  # type: ignore[arg-type]  # numpy arrays are buffers


def held_only_by(container: list[Any] | dict[Any, Any], key: Any) -> bool:
    """Whether nothing but `container` refers to `container[key]` (an array, here: every view, slice or array made
    from it refers to it too). Never bind the item to a local name before asking: that is one more reference."""
    return sys.getrefcount(container[key]) <= _ONLY_CONTAINER


def _unheld(arrays: list[np.ndarray], index: int) -> bool:
    return held_only_by(arrays, index)


_ONLY_CONTAINER = sys.getrefcount([np.empty(0)][0]) + 1
"""What `sys.getrefcount` counts for an item only its container holds: the call's own reference (measured on an
array nothing else holds, since Python versions differ in it) and the container's."""
