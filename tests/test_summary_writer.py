"""fl.summary_writer(): TensorBoard's SummaryWriter calls become fl.log values (name, value, step)."""

from __future__ import annotations

import numpy as np
import pytest

import flctl.client as fl
from flctl.node.client.summary_writer import SummaryWriter


def test_scalars_become_logged_values_with_their_steps():
    """add_scalar logs the tag at the step (a numpy step made an int); add_scalars logs main_tag/name each."""
    # Prepare
    logged: list[tuple[str, object, int | None]] = []
    writer = SummaryWriter(lambda name, value, step: logged.append((name, value, step)))
    # Execute
    with writer:
        writer.add_scalar("loss", 0.5, global_step=np.int64(3), walltime=12.0)
        writer.add_scalar("lr", 0.1)
        writer.add_scalars("acc", {"train": 0.9, "val": 0.8}, 4)
        writer.flush()
    # Assert
    assert logged == [("loss", 0.5, 3), ("lr", 0.1, None), ("acc/train", 0.9, 4), ("acc/val", 0.8, 4)]
    assert all(type(step) in (int, type(None)) for _, _, step in logged)


def test_the_client_api_s_writer_logs_through_fl_log():
    """fl.summary_writer() outside a job fails as fl.log does: the values go nowhere else."""
    # Execute
    writer = fl.summary_writer()
    # Assert
    with pytest.raises(RuntimeError) as via_writer:
        writer.add_scalar("loss", 1.0, 0)
    with pytest.raises(RuntimeError) as via_log:
        fl.log("loss", 1.0, 0)
    assert str(via_writer.value) == str(via_log.value)
