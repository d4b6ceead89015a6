"""The seqrec family base: what every sequential recommender shares.

A model subclasses `SeqRecModule` and implements `forward(input_ids, timestamps, next_timestamps) -> [B, L, d]`
(one user vector per position). The base owns the item embedding table (also the output table), the
training loss, the optimiser and full-ranking evaluation, so a paper's file holds only what the paper adds.

Losses (`loss=`):
  "ce"              full softmax cross-entropy over every item, at every position;
  "sampled_softmax" softmax over the positive and `num_negatives` uniform negatives per position, logits / `temperature`,
                    accidental hits masked (HSTU's SampledSoftmaxLoss, which draws each position's negatives
                    independently); `shared_negatives=True` draws one set of `num_negatives` for the whole batch
                    instead, a different (correlated) estimator that scores with one small matrix product;
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
from torch.autograd.function import once_differentiable
from torchmetrics import MeanMetric

from contracts.batch import seqrec as B
from lightning_modules.layers import using_reference_kernels
from lightning_modules.seqrec.metrics import ranking_metrics, target_rank

LOSSES = ("ce", "sampled_softmax", "bce")
DEFAULT_KS = (10, 20)

# ----- the loss over items, fused ----------------------------------------------------------------------------------
# The loss over items dominates a training step at ML-1M shape (128 x 200 positions against 3,706 items): scored
# unfused it allocates [positions, items] logits, their softmax and their gradient (hundreds of MB) every step, and
# the page faults of those allocations cost as much CPU as the arithmetic. The fused kernels below walk the rows in
# chunks that stay in cache and compute the loss and its gradients with respect to the user vectors and the item
# table in one pass (the gradients are kept for `backward`, which only scales them), so nothing of size
# [positions, items] or [positions, negatives, d] ever exists. Same maths, same random draws; only the summation
# order differs (float rounding). `lightning_modules.layers.reference_kernels()` switches back to the unfused code,
# kept as the reference that the equivalence tests and the speed benchmark compare against.
# Chunks are a CPU cache matter. On a GPU the same loops only multiply kernel launches (a seqrec step there is bound
# by launches, not by memory traffic), so a GPU chunk is as large as memory comfortably allows: one chunk per batch.
CHUNK_FLOATS = 1 << 22  # ~16 MB of scores per chunk of the full-softmax loss on CPU
GATHER_FLOATS = 1 << 20  # ~4 MB gather buffer of the sampled scores on CPU
GPU_CHUNK_FLOATS = 1 << 28  # ~1 GB on a GPU


def _chunk_floats(device: torch.device, cpu_floats: int) -> int:
    return cpu_floats if device.type == "cpu" else GPU_CHUNK_FLOATS


def _chunk_rows(per_row: int, device: torch.device) -> int:
    return max(64, _chunk_floats(device, CHUNK_FLOATS) // max(per_row, 1))


def _row_dots(u: torch.Tensor, table: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """[N, m]: <u[n], table[columns[n, j]]>. The rows are gathered into one small reused buffer (~4 MB, cache-sized)
    per chunk of users, multiplied in place and summed: no [N, m, d] tensor and no allocation per chunk."""
    n, m = columns.shape
    d = u.shape[1]
    step = max(16, _chunk_floats(u.device, GATHER_FLOATS) // (m * d))
    buffer = u.new_empty(min(step, n), m, d)
    out = u.new_empty(n, m)
    for start in range(0, n, step):  # chunks of rows, not a loop over samples
        stop = min(start + step, n)
        gathered = buffer[:stop - start]
        torch.index_select(table, 0, columns[start:stop].reshape(-1), out=gathered.view(-1, d))
        gathered.mul_(u[start:stop].unsqueeze(1))
        torch.sum(gathered, dim=-1, out=out[start:stop])
    return out


def _scatter_rows(u: torch.Tensor, columns: torch.Tensor, weights: torch.Tensor, num_rows: int) -> torch.Tensor:
    """[num_rows, d]: row i = sum over (n, j) with columns[n, j] == i of weights[n, j] * u[n] (the item table's
    gradient). Pairs are sorted by item within chunks of rows and summed as bags, which is several times faster on
    CPU than index_add_ or the embedding backward over the [N * m] pairs."""
    n, m = columns.shape
    out = u.new_zeros(num_rows, u.shape[1])
    step = _chunk_rows(m * 32, u.device)
    for start in range(0, n, step):  # chunks of rows, not a loop over samples
        flat = columns[start:start + step].reshape(-1)
        # int32 keys sort about twice as fast as int64 on CPU; item ids fit
        _, order = torch.sort(flat.int() if num_rows < 2**31 else flat, stable=True)
        counts = torch.bincount(flat, minlength=num_rows)
        offsets = torch.cumsum(counts, 0) - counts
        out += F.embedding_bag(order.div(m, rounding_mode="floor"), u[start:start + step], offsets,
                               per_sample_weights=weights[start:start + step].reshape(-1).index_select(0, order),
                               mode="sum")
    return out


class _FusedItemSoftmax(torch.autograd.Function):
    """Mean softmax cross-entropy of user vectors u [N, d] against item rows of `table` [V, d], logits / temperature.

    negatives=None: over every item but the padding column (the "ce" loss), in chunks of rows. negatives [N, k]: over
    the positive and the row's k negatives, a negative equal to the positive masked to -5e4 (the "sampled_softmax"
    loss), scored as sampled dot products. The gradients are computed in the forward pass and only scaled in
    `backward` (no double backward)."""

    @staticmethod
    def forward(ctx, u, table, positives, negatives, temperature: float):
        with torch.autocast(u.device.type, enabled=False):  # the loss in float32 even under mixed precision
            return _FusedItemSoftmax._forward(ctx, u, table, positives, negatives, temperature)

    @staticmethod
    def _forward(ctx, u, table, positives, negatives, temperature: float):
        need_grad = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        uf, tf = u.float(), table.float()
        n = uf.shape[0]
        scale = 1.0 / (n * temperature)
        if negatives is None:
            total = uf.new_zeros(())
            grad_u = torch.empty_like(uf) if need_grad else None
            grad_table = torch.zeros_like(tf) if need_grad else None
            step = _chunk_rows(tf.shape[0], uf.device)
            for start in range(0, n, step):  # chunks of rows, not a loop over samples
                uc, pc = uf[start:start + step], positives[start:start + step]
                rows = torch.arange(uc.shape[0], device=uc.device)
                logits = (uc @ tf.T).div_(temperature)
                logits[:, 0] = float("-inf")  # the padding id is never a class
                lse = torch.logsumexp(logits, dim=1)
                total += (lse - logits[rows, pc]).sum()
                if need_grad:
                    prob = logits.sub_(lse.unsqueeze(1)).exp_()
                    prob[rows, pc] -= 1.0
                    prob.mul_(scale)
                    grad_u[start:start + step] = prob @ tf
                    grad_table.addmm_(prob.T, uc)
        else:
            columns = torch.cat([positives.unsqueeze(1), negatives], dim=1)  # [N, 1 + k], the positive first
            hit = negatives == positives.unsqueeze(1)
            logits = _row_dots(uf, tf, columns)
            logits[:, 1:].masked_fill_(hit, -5e4 * temperature)
            logits.div_(temperature)
            lse = torch.logsumexp(logits, dim=1)
            total = (lse - logits[:, 0]).sum()
            if need_grad:
                prob = logits.sub_(lse.unsqueeze(1)).exp_()
                prob[:, 0] -= 1.0
                prob.mul_(scale)
                prob[:, 1:].masked_fill_(hit, 0.0)
                grad_u = F.embedding_bag(columns, tf, per_sample_weights=prob, mode="sum")
                grad_table = _scatter_rows(uf, columns, prob, tf.shape[0])
        if need_grad:
            ctx.save_for_backward(grad_u.to(u.dtype), grad_table.to(table.dtype))
        return total / n

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        grad_u, grad_table = ctx.saved_tensors
        return grad * grad_u, grad * grad_table, None, None, None


def fused_item_softmax(u: torch.Tensor, table: torch.Tensor, positives: torch.Tensor,
                       negatives: torch.Tensor | None, temperature: float) -> torch.Tensor:
    """See `_FusedItemSoftmax`; equals the unfused "ce" / "sampled_softmax" losses of `SeqRecModule`."""
    return _FusedItemSoftmax.apply(u, table, positives, negatives, float(temperature))


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
        shared_negatives: bool = False,
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
        self.shared_negatives = shared_negatives
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
        # rank-based values are never NaN, and the NaN check would sync the host with a GPU twice per metric and batch
        keys = self._metric_keys.values()
        self.val_metrics = nn.ModuleDict({key: MeanMetric(nan_strategy="disable") for key in keys})
        self.test_metrics = nn.ModuleDict({key: MeanMetric(nan_strategy="disable") for key in keys})

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
        loss = self.sequence_loss(self.user_vectors(batch), batch) * batch.get(B.LOSS_SCALE, 1.0)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch[B.INPUT_IDS].shape[0])
        return loss

    def sequence_loss(self, user: torch.Tensor, batch: dict, items: torch.Tensor | None = None) -> torch.Tensor:
        """The configured loss over every position that has a next item. `items`: the full candidate table
        (`item_vectors()`) when the caller already computed it for this step."""
        table = lambda: self.item_vectors() if items is None else items
        targets = batch[B.TARGET_IDS]
        valid = targets != B.PAD
        u = self._norm_user(user[valid])  # [N, d]
        pos = targets[valid]  # [N]
        if self.loss_name == "ce":
            if not using_reference_kernels():
                return fused_item_softmax(u, table(), pos, None, self.temperature)
            logits = u @ table().T / self.temperature
            logits[:, B.PAD] = float("-inf")
            return F.cross_entropy(logits, pos)
        if self.loss_name == "sampled_softmax":
            if self.shared_negatives:
                return self._shared_negatives_loss(u, pos, table())
            neg = torch.randint(1, self.num_items + 1, (pos.shape[0], self.num_negatives), device=pos.device)
            if not using_reference_kernels():
                return fused_item_softmax(u, table(), pos, neg, self.temperature)
            pos_logit = (u * self.item_vectors(pos)).sum(-1, keepdim=True)
            if self.num_items + 1 <= self.num_negatives * u.shape[1]:
                # Same numbers, cheaper: score the (normalised) table once and pick the negatives' columns, instead
                # of gathering [N, k, d] negative vectors, whose backward is a slow scatter on CPU. Used while the
                # [N, items] scores are no larger than the gathered vectors.
                neg_logit = (u @ table().T).gather(1, neg)
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

    def _shared_negatives_loss(self, u: torch.Tensor, pos: torch.Tensor, table: torch.Tensor | None = None
                               ) -> torch.Tensor:
        """Sampled softmax with one set of `num_negatives` uniform negatives for every position of the batch (a
        different estimator from the per-position draws: negatives are correlated across positions), accidental hits
        masked as in the per-position loss. Scores are one [N, d] x [d, k] product."""
        neg = torch.randint(1, self.num_items + 1, (self.num_negatives,), device=pos.device)
        table = self.item_vectors() if table is None else table
        pos_logit = (u * table[pos]).sum(-1, keepdim=True)
        neg_logit = (u @ table[neg].T).masked_fill(neg.unsqueeze(0) == pos.unsqueeze(1), -5e4 * self.temperature)
        logits = torch.cat([pos_logit, neg_logit], dim=1) / self.temperature
        return F.cross_entropy(logits, torch.zeros_like(pos))

    def _negatives_outside_sequence(self, input_ids: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """One uniform negative per position outside the user's training sequence: draws that hit it are redrawn
        (vectorised) until none does. A sequence of L ids leaves at least one item free when the catalogue is larger
        than L, so the loop ends; a tiny catalogue a sequence can cover is sampled plainly."""
        seq = torch.cat([input_ids, targets[:, -1:]], dim=1)  # every item of the user's training sequence
        neg = torch.randint(1, self.num_items + 1, targets.shape, device=targets.device)
        if self.num_items <= seq.shape[1]:
            return neg
        hit = (neg.unsqueeze(-1) == seq.unsqueeze(1)).any(-1)
        while hit.any():
            neg = torch.where(hit, torch.randint_like(neg, 1, self.num_items + 1), neg)
            hit = (neg.unsqueeze(-1) == seq.unsqueeze(1)).any(-1)
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
