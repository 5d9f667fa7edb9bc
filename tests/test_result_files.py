"""flctl.node.server.result_files: a result file becomes a spare only once nothing maps it, and is written over."""

from __future__ import annotations

import gc
from pathlib import Path

import numpy as np

from flctl.node.server import result_files
from flctl.node.server.result_files import MAX_SPARES, SPARE_PREFIX, recycle, take_spare
from flctl.node.wire import tensors


def spares(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.name.startswith(SPARE_PREFIX))


def result(folder: Path, name: str, value: float, n: int = 1000) -> Path:
    path = folder / name
    path.write_bytes(tensors.encode({"w": np.full(n, value, np.float32)}))
    return path


def test_a_mapped_result_becomes_a_spare_only_when_the_workflow_lets_go_of_it(tmp_path: Path) -> None:
    path = result(tmp_path, "site-1-a.safetensors", 1.0)
    params = tensors.map_file(path)
    recycle(path, params)
    weights = params["w"]  # what a workflow keeps while it sums
    del params
    gc.collect()
    assert path.exists() and not spares(tmp_path)  # still mapped: nobody may write over it
    assert take_spare(tmp_path, path.stat().st_size, tmp_path / "next.part") is False
    assert np.all(weights == 1.0)
    del weights
    gc.collect()
    assert not path.exists() and len(spares(tmp_path)) == 1


def test_a_spare_of_the_same_size_is_written_over_and_the_old_arrays_are_gone(tmp_path: Path) -> None:
    first = result(tmp_path, "site-1-a.safetensors", 1.0)
    size = first.stat().st_size
    params = tensors.map_file(first)
    total = params["w"].astype(np.float64)  # the running sum took what it needed
    recycle(first, params)
    del params
    gc.collect()
    into = tmp_path / ".site-2-b.safetensors.part"
    assert take_spare(tmp_path, size + 1, into) is False  # another size: no
    assert take_spare(tmp_path, size, into) is True and not spares(tmp_path)
    with open(into, "r+b") as out:  # as the daemon writes a result over it
        out.write(tensors.encode({"w": np.full(1000, 2.5, np.float32)}))
    assert np.all(tensors.read_file(into)["w"] == 2.5)
    assert np.all(total == 1.0)


def test_at_most_max_spares_are_kept_and_the_rest_deleted(tmp_path: Path) -> None:
    for index in range(MAX_SPARES + 2):
        path = result(tmp_path, f"r{index}.safetensors", float(index))
        recycle(path, tensors.map_file(path))
        gc.collect()
    assert len(spares(tmp_path)) == MAX_SPARES
    assert not list(tmp_path.glob("r*.safetensors"))


def test_a_result_with_no_bytes_to_map_is_deleted_at_once(tmp_path: Path) -> None:
    path = tmp_path / "empty.safetensors"
    path.write_bytes(tensors.encode({}))
    recycle(path, tensors.map_file(path))
    assert not path.exists() and not spares(tmp_path)


def test_a_spare_taken_by_another_caller_first_is_skipped(tmp_path: Path, monkeypatch) -> None:
    for index in range(2):
        path = result(tmp_path, f"r{index}.safetensors", 0.0)
        recycle(path, tensors.map_file(path))
        gc.collect()
    size = spares(tmp_path)[0].stat().st_size
    real_rename = result_files.os.rename
    tried: list[Path] = []

    def racing(src: Path, dst: Path) -> None:  # another thread renames the first spare tried just before this one
        if not tried:
            real_rename(src, tmp_path / "taken.part")
        tried.append(Path(src))
        real_rename(src, dst)

    monkeypatch.setattr(result_files.os, "rename", racing)
    assert take_spare(tmp_path, size, tmp_path / "mine.part")
    assert len(tried) == 2 and tried[0] != tried[1]
    assert (tmp_path / "mine.part").exists() and (tmp_path / "taken.part").exists() and not spares(tmp_path)
    assert take_spare(tmp_path / "no-such-folder", 10, tmp_path / "x") is False
