"""Popularity: score every item by how often it is a next item in the training data. The floor every
sequential model must clear. Counts are accumulated from the training batches themselves (no separate
statistics pass, nothing learned by gradient) and summed across processes at the end of each epoch."""
from __future__ import annotations

import optuna
import torch

from contracts.batch import seqrec as B
from contracts.registry import register_model
from lightning_modules.seqrec.base import SeqRecModule


@register_model("pop", family="seqrec")
class Popularity(SeqRecModule):
    def __init__(self, num_items: int, max_len: int = 50, filter_seen: bool = True,
                 eval_ks: tuple[int, ...] = (10, 20)):
        super().__init__(num_items, max_len, embed_dim=1, filter_seen=filter_seen, eval_ks=eval_ks)
        self.save_hyperparameters()
        self.item_embedding.weight.requires_grad_(False)
        # DistributedDataParallel refuses a module with nothing to train; this scalar is never used or stepped.
        self.ddp_anchor = torch.nn.Parameter(torch.zeros(1))
        self.automatic_optimization = False
        self.register_buffer("counts", torch.zeros(num_items + 1))
        self.register_buffer("epoch_counts", torch.zeros(num_items + 1), persistent=False)
        self.counted_epochs = 0

    def training_step(self, batch, batch_idx):
        targets = batch[B.TARGET_IDS].flatten()
        self.epoch_counts.index_add_(0, targets, torch.ones_like(targets, dtype=self.epoch_counts.dtype))

    def on_train_epoch_end(self):
        # Count the training data once; later epochs see the same data and would only rescale.
        total = self.trainer.strategy.reduce(self.epoch_counts, reduce_op="sum")
        if self.counted_epochs == 0:
            self.counts += total
        self.counted_epochs += 1
        self.epoch_counts.zero_()
        # nothing changes after the first epoch: further epochs would only repeat the evaluation (101 times on a
        # board with a 101-epoch cap); Lightning still honours a min_epochs
        self.trainer.should_stop = True

    def score_all(self, batch):
        scores = self.counts.clone()
        scores[B.PAD] = 0
        return scores.unsqueeze(0).expand(batch[B.INPUT_IDS].shape[0], -1)

    def configure_optimizers(self):
        return None

    @staticmethod
    def search_space(trial: optuna.Trial) -> dict:
        return {}  # nothing to tune
