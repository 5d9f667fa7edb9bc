"""Pausing Python's cycle collector while many kits are made (a speed measure, nothing else).

Making kits allocates millions of short-lived objects and no cyclic garbage; left running, the cycle collector
takes a fifth of the CPU time (measured with `bench/provision.py`) walking everything imported so far. Pausing it
changes no result: reference counting still frees every object at once.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def paused() -> Iterator[None]:
    """The cycle collector off inside the block, back on after it (if it was on before)."""
    running = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if running:
            gc.enable()
