"""`flctl.client.lightning.patch(trainer)`: PyTorch Lightning trains in a flctl job with the script's own loop.

    import flctl.client as fl
    from flctl.client.lightning import patch

    trainer = Trainer(max_epochs=2)
    patch(trainer)
    while fl.running():
        trainer.validate(model, datamodule=dm)    # the global model's metrics; an evaluate task is answered here
        trainer.fit(model, datamodule=dm)         # the model trained this round is sent when training ends

See `flctl.node.client.lightning_patch` for what the callback does.
"""

from __future__ import annotations

from flctl.node.client.lightning_patch import FL_META, patch

__all__ = ["FL_META", "patch"]
