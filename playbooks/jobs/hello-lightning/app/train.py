"""A Lightning script under flctl: patch(trainer), then the usual validate / fit, once per task."""

import pytorch_lightning as pl
from flctl.client.lightning import patch
from model import make_data, make_model

import flctl.client as fl


def main() -> None:
    fl.init()
    train, val = make_data(fl.site_name())
    model = make_model()
    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    patch(trainer)
    while fl.running():
        task = fl.receive()
        print(f"round {task.round}: {task.task}")
        if task.task == "evaluate":
            trainer.validate(model, val, verbose=False)      # answered with loss and accuracy
            continue
        if task.task == "submit_model":
            fl.send(fl.Model(params=model.state_dict(), num_examples=1))
            continue
        trainer.validate(model, val, verbose=False)          # the global model's figures (initial_metrics)
        trainer.fit(model, train, val)                       # answered when training ends


if __name__ == "__main__":
    main()
