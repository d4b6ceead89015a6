"""Training stages inside Lightning: a model trained before or inside another model's fit (a full-data reference,
a pretraining stage, SAFER's stage 1 and refinement) runs as a LightningModule of its own under its own Trainer,
built by `stage_trainer` with the outer run's accelerator, precision, devices and strategy, so DDP, mixed precision
and the accelerator reach it as they reach the outer fit. Families write the stage module; this is how it runs.
"""
from __future__ import annotations

import contextlib
import logging
import warnings

import lightning.pytorch as pl
import torch


@contextlib.contextmanager
def _quiet_lightning():
    """A stage's Trainer would announce its devices each time; the outer run already did."""
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def stage_trainer(outer: pl.Trainer | None, max_epochs: int) -> pl.Trainer:
    """A Trainer for one stage with `outer`'s accelerator, precision, devices and strategy (DDP stays DDP: inside
    the processes `outer` launched, the stage joins the existing process group). Without an outer Trainer (a
    module used on its own) the stage runs on the CPU in full precision. The stage keeps its best epoch in
    memory and its caller caches it, so it writes no checkpoints and logs nothing."""
    kwargs = dict(max_epochs=max_epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                  enable_model_summary=False, num_sanity_val_steps=0, use_distributed_sampler=False,
                  callbacks=[], limit_train_batches=1.0, limit_val_batches=1.0, check_val_every_n_epoch=1,
                  val_check_interval=1.0, inference_mode=False)  # kept states must be ordinary tensors
    if outer is None:
        kwargs.update(accelerator="cpu", devices=1, precision="32-true")
    else:
        root = outer.strategy.root_device
        if outer.world_size > 1:
            devices, strategy = outer.num_devices, "ddp"
        else:
            devices, strategy = ([root.index] if root.index is not None else 1), "auto"
        # the device type, not the outer Accelerator object: Lightning picks the autocast device from the name
        kwargs.update(accelerator=root.type, devices=devices, num_nodes=outer.num_nodes, strategy=strategy,
                      precision=outer.precision)
    with _quiet_lightning():
        return pl.Trainer(**kwargs)


def run_stage(stage: pl.LightningModule, outer: pl.Trainer | None, max_epochs: int,
              device: torch.device) -> pl.LightningModule:
    """Fit `stage` (a LightningModule whose trained network is `stage.model`) under its own Trainer; its model
    ends on `device` (a Trainer's teardown moves it to the CPU)."""
    trainer = stage_trainer(outer, max_epochs)
    with _quiet_lightning(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        trainer.fit(stage)
    stage.model.to(device)
    return stage
