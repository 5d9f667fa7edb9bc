"""flctl.node.wire.model_buffers: a buffer is given out again only once nothing refers to it."""

from __future__ import annotations

import gc

import numpy as np
import pytest

from flctl.node.wire import tensors
from flctl.node.wire.model_buffers import MIN_BYTES, ModelBuffers

SIZE = 4 * MIN_BYTES


def address(view: memoryview) -> int:
    return int(np.frombuffer(view, np.uint8).ctypes.data)


def test_a_buffer_nothing_holds_is_given_out_again() -> None:
    pool = ModelBuffers(keep=1)
    first = pool.take(SIZE)
    where = address(first)
    first[:3] = b"abc"
    del first
    again = pool.take(SIZE - 100)  # a little smaller fits: the same buffer, cut to size
    assert address(again) == where and len(again) == SIZE - 100
    assert bytes(again[:3]) == b"abc"  # not zeroed: the caller fills it
    assert (pool.made, pool.reused) == (1, 1)


def holding(view: memoryview, hold: str, size: int) -> object:
    if hold == "view":
        return view
    if hold == "slice":
        return view[10:20]
    if hold == "array":
        return np.frombuffer(view, np.uint8)
    if hold == "params":
        return tensors.views(view[:size])
    return view.cast("B")


@pytest.mark.parametrize("hold", ["view", "slice", "array", "params", "cast"])
def test_a_buffer_still_referred_to_is_not_given_out(hold: str) -> None:
    """Whatever was made from the view keeps the bytes: a new buffer is made instead, and the held bytes stay."""
    pool = ModelBuffers(keep=1)
    view = pool.take(SIZE)
    model = tensors.encode({"w": np.arange(SIZE // 8, dtype=np.float32)})
    view[:len(model)] = model
    held = holding(view, hold, len(model))
    where = address(view)
    del view
    gc.collect()
    other = pool.take(SIZE)
    assert address(other) != where
    assert (pool.made, pool.reused) == (2, 0)
    other[:] = b"\xff" * len(other)
    if isinstance(held, dict):
        assert np.array_equal(held["w"], np.arange(SIZE // 8, dtype=np.float32))  # untouched by the new buffer
    del held, other
    assert address(pool.take(SIZE)) == where  # released: the kept one serves again
    assert pool.reused == 1


def test_keep_bounds_the_buffers_held_and_the_least_recent_free_one_goes() -> None:
    pool = ModelBuffers(keep=2)
    a, b = pool.take(SIZE), pool.take(2 * SIZE)
    where_b = address(b)
    del a, b
    c = pool.take(8 * SIZE)  # fits neither: made, and the least recently taken free one (a) makes room for it
    assert pool.kept_bytes() == 2 * SIZE + 8 * SIZE
    assert address(pool.take(2 * SIZE)) == where_b
    assert (pool.made, pool.reused) == (3, 1)
    pool.take(SIZE)  # fits neither kept one: made; b (free) goes, c (held) stays
    assert pool.kept_bytes() == SIZE + 8 * SIZE and pool.made == 4
    del c


def test_every_kept_buffer_in_use_means_a_new_one_that_is_not_kept() -> None:
    pool = ModelBuffers(keep=1)
    first = pool.take(SIZE)
    second = pool.take(SIZE)
    assert address(first) != address(second)
    assert pool.kept_bytes() == SIZE
    del second
    assert pool.take(SIZE) is not None and pool.reused == 0  # `first` still held, `second` was never kept
    del first


def test_sizes_that_do_not_fit_are_made_new() -> None:
    pool = ModelBuffers(keep=1)
    pool.take(SIZE)
    pool.take(SIZE // 2)  # the kept buffer is more than an eighth too big: a new one, which replaces it
    assert (pool.made, pool.reused, pool.kept_bytes()) == (2, 0, SIZE // 2)
    pool.take(SIZE // 2 + 1)  # too small by a byte
    assert (pool.made, pool.reused) == (3, 0)
    small = pool.take(100)  # below MIN_BYTES: never kept, never counted
    assert len(small) == 100 and (pool.made, pool.kept_bytes()) == (3, SIZE // 2 + 1)


def test_no_keeping_means_a_new_buffer_each_time() -> None:
    pool = ModelBuffers(keep=0)
    view = pool.take(SIZE)
    del view
    pool.take(SIZE)
    assert (pool.made, pool.reused, pool.kept_bytes()) == (0, 0, 0)
    with pytest.raises(ValueError, match="keep must be >= 0"):
        ModelBuffers(keep=-1)
