"""The seqrec family base: what every sequential recommender shares.

A model subclasses `SeqRecModule` and implements `forward(input_ids, timestamps, next_timestamps) -> [B, L, d]`
(one user vector per position). The base owns the item embedding table (also the output table), the
training loss, the optimiser and full-ranking evaluation, so a paper's file holds only what the paper adds.

Losses (`loss=`):
  "ce"              full softmax cross-entropy over every item, at every position;
  "sampled_softmax" softmax over the positive and `num_negatives` uniform negatives per position, logits / `temperature`,
                    accidental hits masked (HSTU's SampledSoftmaxLoss);
  "bce"             binary cross-entropy with one negative per position, drawn outside the user's sequence
                    (SASRec, Kang & McAuley 2018, Sec. III-E).
Evaluation ranks the target among all items (full ranking); with `filter_seen` the items of the history are
removed from the candidates (the target itself never is). Per-sample values are averaged with torchmetrics
`MeanMetric`, which syncs sums and counts across processes, so N processes give the 1-process numbers as long
as the eval sampler does not duplicate samples (see `datamodules.base.UnpaddedDistributedSampler`).
"""
from __future__ import annotations

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric

from contracts.batch import seqrec as B
from lightning_modules.seqrec.metrics import ranking_metrics, target_rank

LOSSES = ("ce", "sampled_softmax", "bce")
DEFAULT_KS = (10, 20)


class SeqRecModule(pl.LightningModule):
    """Shared training and evaluation for sequential recommenders. Subclasses call `save_hyperparameters()`."""

    # Models whose vectors are L2-normalised (HSTU) pass l2_norm=True; the base then normalises both sides.
    def __init__(
        self,
        num_items: int,
        max_len: int,
        embed_dim: int,
        loss: str = "ce",
        num_negatives: int = 128,
        temperature: float = 1.0,
        l2_norm: bool = False,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.98),
        filter_seen: bool = True,
        eval_ks: tuple[int, ...] = DEFAULT_KS,
    ):
        super().__init__()
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; choose one of {', '.join(LOSSES)}")
        if num_items < 1:
            raise ValueError(f"num_items must be >= 1, got {num_items}")
        self.num_items = num_items
        self.max_len = max_len
        self.embed_dim = embed_dim
        self.loss_name = loss
        self.num_negatives = num_negatives
        self.temperature = temperature
        self.l2_norm = l2_norm
        self.lr = lr
        self.weight_decay = weight_decay
        self.betas = tuple(betas)
        self.filter_seen = filter_seen
        self.eval_ks = tuple(int(k) for k in eval_ks)
        self.item_embedding = nn.Embedding(num_items + 1, embed_dim, padding_idx=B.PAD)
        nn.init.xavier_normal_(self.item_embedding.weight.data[1:])
        metric_names = list(ranking_metrics(torch.ones(1), self.eval_ks))
        # ModuleDict keys may not contain "@"; the logged names keep it.
        self._metric_keys = {name: name.replace("@", "_at_") for name in metric_names}
        self.val_metrics = nn.ModuleDict({key: MeanMetric() for key in self._metric_keys.values()})
        self.test_metrics = nn.ModuleDict({key: MeanMetric() for key in self._metric_keys.values()})

    # ----- what a model provides -------------------------------------------------------------------------
    def forward(self, input_ids, timestamps=None, next_timestamps=None) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def user_vectors(self, batch: dict) -> torch.Tensor:
        """[B, L, d] user vectors for every position of a training batch."""
        return self(batch[B.INPUT_IDS], batch.get(B.TIMESTAMPS), batch.get(B.NEXT_TIMESTAMPS))

    def last_user_vector(self, batch: dict) -> torch.Tensor:
        """[B, d] the user vector after the whole history (left padding puts it at position L-1)."""
        return self.user_vectors(batch)[:, -1]

    # ----- scoring ---------------------------------------------------------------------------------------
    def item_vectors(self, ids: torch.Tensor | None = None) -> torch.Tensor:
        table = self.item_embedding.weight if ids is None else self.item_embedding(ids)
        return F.normalize(table, dim=-1, eps=1e-6) if self.l2_norm else table

    def _norm_user(self, u: torch.Tensor) -> torch.Tensor:
        return F.normalize(u, dim=-1, eps=1e-6) if self.l2_norm else u

    def score_all(self, batch: dict) -> torch.Tensor:
        """[B, num_items + 1] scores of every item (column 0 is padding) after each history."""
        return self._norm_user(self.last_user_vector(batch)) @ self.item_vectors().T

    # ----- training ----------------------------------------------------------------------------------------
    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self.sequence_loss(self.user_vectors(batch), batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch[B.INPUT_IDS].shape[0])
        return loss

    def sequence_loss(self, user: torch.Tensor, batch: dict) -> torch.Tensor:
        """The configured loss over every position that has a next item."""
        targets = batch[B.TARGET_IDS]
        valid = targets != B.PAD
        u = self._norm_user(user[valid])  # [N, d]
        pos = targets[valid]  # [N]
        if self.loss_name == "ce":
            logits = u @ self.item_vectors().T / self.temperature
            logits[:, B.PAD] = float("-inf")
            return F.cross_entropy(logits, pos)
        if self.loss_name == "sampled_softmax":
            neg = torch.randint(1, self.num_items + 1, (pos.shape[0], self.num_negatives), device=pos.device)
            pos_logit = (u * self.item_vectors(pos)).sum(-1, keepdim=True)
            if self.num_items + 1 <= self.num_negatives * u.shape[1]:
                # Same numbers, cheaper: score the (normalised) table once and pick the negatives' columns, instead
                # of gathering [N, k, d] negative vectors, whose backward is a slow scatter on CPU. Used while the
                # [N, items] scores are no larger than the gathered vectors.
                neg_logit = (u @ self.item_vectors().T).gather(1, neg)
            else:
                neg_logit = torch.einsum("nd,nkd->nk", u, self.item_vectors(neg))
            neg_logit = neg_logit.masked_fill(neg == pos.unsqueeze(1), -5e4 * self.temperature)
            logits = torch.cat([pos_logit, neg_logit], dim=1) / self.temperature
            return F.cross_entropy(logits, torch.zeros_like(pos))
        # "bce": one negative per position, outside the user's sequence (SASRec's sampler).
        neg = self._negatives_outside_sequence(batch[B.INPUT_IDS], targets)[valid]
        pos_logit = (u * self.item_vectors(pos)).sum(-1)
        neg_logit = (u * self.item_vectors(neg)).sum(-1)
        return F.binary_cross_entropy_with_logits(
            torch.cat([pos_logit, neg_logit]), torch.cat([torch.ones_like(pos_logit), torch.zeros_like(neg_logit)])
        )

    def _negatives_outside_sequence(self, input_ids: torch.Tensor, targets: torch.Tensor, tries: int = 4) -> torch.Tensor:
        """One uniform negative per position, redrawn (vectorised, a few rounds) where it hits the sequence."""
        seq = torch.cat([input_ids, targets[:, -1:]], dim=1)  # every item of the user's training sequence
        neg = torch.randint(1, self.num_items + 1, targets.shape, device=targets.device)
        if self.num_items <= seq.shape[1]:
            return neg  # tiny catalogues: a sequence can cover every item
        for _ in range(tries):
            hit = (neg.unsqueeze(-1) == seq.unsqueeze(1)).any(-1)
            if not hit.any():
                break
            neg = torch.where(hit, torch.randint_like(neg, 1, self.num_items + 1), neg)
        return neg

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.lr, betas=self.betas, weight_decay=self.weight_decay)

    # ----- evaluation --------------------------------------------------------------------------------------
    def candidate_exclusions(self, batch: dict, num_columns: int) -> torch.Tensor:
        """[B, N] True where an item is not a candidate: the padding id, and the history if `filter_seen`."""
        history = batch[B.INPUT_IDS]
        exclude = torch.zeros(history.shape[0], num_columns, dtype=torch.bool, device=history.device)
        if self.filter_seen:
            exclude.scatter_(1, history, True)
        exclude[:, B.PAD] = True
        return exclude

    def _evaluate(self, batch: dict, metrics: nn.ModuleDict, stage: str) -> None:
        scores = self.score_all(batch).float()
        rank = target_rank(scores, batch[B.TARGET], self.candidate_exclusions(batch, scores.shape[1]))
        n = rank.shape[0]
        for name, values in ranking_metrics(rank, self.eval_ks).items():
            metric = metrics[self._metric_keys[name]]
            metric.update(values)
            self.log(f"{stage}/{name}", metric, on_step=False, on_epoch=True, batch_size=n)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, self.val_metrics, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, self.test_metrics, "test")
