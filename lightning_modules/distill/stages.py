"""Training stages of the distill family inside Lightning: a seqrec model trained on the real training rows (the
full-data references, TD3's pretraining and its expert trajectory) runs as its own `RealDataStage`, and a fresh
target trained on a summary as a `SummaryStage`, each under its own Trainer (`lightning_modules.stages.run_stage`, with the outer run's accelerator, precision, devices and strategy),
so DDP, mixed precision and the accelerator reach these stages as they reach the outer fit.

The stage does what a plain loop over the real rows did, step for step, so a seed gives the same model:
- each epoch one `torch.randperm(rows)` from the global generator (`EpochBatches`), consecutive `batch_size`
  slices of it as minibatches; the loaders carry a private generator, so creating their iterators draws nothing
  from the global one;
- the model's own loss (`sequence_loss`) and optimiser (`configure_optimizers`), zero_grad / backward / step;
- after every epoch the selection metric on the whole validation split (contiguous batches of `eval_batch_size`),
  the best epoch's weights kept, states saved after the `snapshot_epochs`, and a stop once `patience` epochs
  passed without improvement (never before the last snapshot epoch).
Under DDP every rank draws the same permutation (Lightning seeds every rank alike) and takes every world-th row of
it; validation sums are reduced over ranks.
"""
from __future__ import annotations

import copy
import math
import time
from typing import Callable

import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, Sampler


def _as_batch(batch):
    return batch  # the dataset's __getitems__ already returns a whole batch


class EpochBatches(Sampler):
    """Batches of indices: per epoch a fresh `torch.randperm(rows)` (global generator) cut into consecutive slices,
    or, with `shuffle=False`, 0..rows-1 in order. A rank takes every `world`-th index of the order."""

    def __init__(self, rows: int, batch_size: int, shuffle: bool, rank: int = 0, world: int = 1):
        self.rows, self.batch_size, self.shuffle, self.rank, self.world = rows, batch_size, shuffle, rank, world

    def __iter__(self):
        order = torch.randperm(self.rows) if self.shuffle else torch.arange(self.rows)
        order = order[self.rank::self.world]
        for i in range(0, len(order), self.batch_size):
            yield order[i:i + self.batch_size].tolist()

    def __len__(self) -> int:
        return math.ceil(len(range(self.rank, self.rows, self.world)) / self.batch_size)


class RealDataStage(pl.LightningModule):
    """Train `model` (a registered seqrec model) on the real training rows with its own loss and optimiser, select
    the best epoch on `score`: `score(model, batch) -> per-user values` of the selection metric, whose mean over
    the validation split decides. After fit: `model` holds the best epoch's weights (eval mode); `best_epoch`,
    `train_seconds` (training batches only, validation excluded), `epochs` and `snapshots` {epoch: state_dict}."""

    def __init__(self, model: nn.Module, train_set, val_set, batch_size: int, eval_batch_size: int,
                 score: Callable[[nn.Module, dict], torch.Tensor], patience: int, snapshot_epochs: tuple[int, ...] = ()):
        super().__init__()
        self.model = model
        self._sets = (train_set, val_set)  # not attributes Lightning would inspect or save
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self._score = score
        self.patience = patience
        self.snapshot_epochs = tuple(snapshot_epochs)
        self.best, self.best_state, self.best_epoch, self.waited = -1.0, None, 0, 0
        self.train_seconds, self.epochs = 0.0, 0
        self.snapshots: dict[int, dict] = {}

    # ----- data ------------------------------------------------------------------------------------------------
    def _loader(self, dataset, batch_size: int, shuffle: bool) -> DataLoader:
        sampler = EpochBatches(len(dataset), batch_size, shuffle, self.global_rank, self.trainer.world_size)
        return DataLoader(dataset, batch_sampler=sampler, collate_fn=_as_batch, generator=torch.Generator())

    def train_dataloader(self) -> DataLoader:
        return self._loader(self._sets[0], self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self._sets[1], self.eval_batch_size, shuffle=False)

    # ----- training --------------------------------------------------------------------------------------------
    def configure_optimizers(self):
        return self.model.configure_optimizers()

    def on_train_epoch_start(self) -> None:
        self._epoch_start = time.perf_counter()

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self.model.sequence_loss(self.model.user_vectors(batch), batch)

    # ----- selection -------------------------------------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        if self.trainer.sanity_checking:
            return
        self.train_seconds += time.perf_counter() - self._epoch_start
        self.epochs = self.current_epoch + 1
        if self.epochs in self.snapshot_epochs:
            self.snapshots[self.epochs] = copy.deepcopy(self.model.state_dict())
        self._sum, self._count = 0.0, 0

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        values = self._score(self.model, batch)
        self._sum += float(values.sum())
        self._count += len(values)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        totals = torch.tensor([self._sum, self._count], dtype=torch.float64, device=self.device)
        totals = self.trainer.strategy.reduce(totals, reduce_op="sum")
        score = float(totals[0] / totals[1])
        if score > self.best:
            self.best, self.best_state, self.best_epoch, self.waited = \
                score, copy.deepcopy(self.model.state_dict()), self.epochs, 0
        else:
            self.waited += 1
            if self.waited >= self.patience and self.epochs >= max(self.snapshot_epochs, default=0):
                self.trainer.should_stop = True

    def on_fit_end(self) -> None:
        self.model.load_state_dict(self.best_state)
        self.model.eval()


class SummaryStage(pl.LightningModule):
    """Train a fresh target for `steps` optimiser steps on a fixed (detached) summary: step s trains on
    `batch_for(s)` (the summary's soft sequences of the code's cyclic minibatch s, computed without grad) with
    `loss(model, dist, valid)`, the optimiser from `make_optimizer(parameters)`. One epoch of `steps` batches whose
    batch is the step index, so it is the plain loop (zero_grad / backward / step) step for step. After fit: `model`
    in eval mode and `train_seconds` (the training steps only, the Trainer's set-up excluded)."""

    def __init__(self, model: nn.Module, steps: int, batch_for: Callable[[torch.Tensor], tuple],
                 loss: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor],
                 make_optimizer: Callable[..., torch.optim.Optimizer]):
        super().__init__()
        self.model = model
        self.steps = steps
        self._batch_for, self._loss, self._make_optimizer = batch_for, loss, make_optimizer
        self.train_seconds = 0.0

    def train_dataloader(self) -> DataLoader:
        # a private generator: creating the iterator draws nothing from the global one, which the loss uses
        return DataLoader(torch.arange(self.steps), batch_size=None, generator=torch.Generator())

    def configure_optimizers(self):
        return self._make_optimizer(self.model.parameters())

    def on_train_start(self) -> None:
        self._start = time.perf_counter()

    def training_step(self, step: torch.Tensor, batch_idx: int) -> torch.Tensor:
        with torch.no_grad():
            dist, valid = self._batch_for(step)
        return self._loss(self.model, dist, valid)

    def on_train_end(self) -> None:
        self.train_seconds = time.perf_counter() - self._start
        self.model.eval()
