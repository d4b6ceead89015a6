"""The mllmrec family base: score a user's candidate list (1 positive + sampled negatives) and evaluate as
MLLM-MSR's test script does.

A model implements `score(batch) -> [B, C]` logits, one per candidate ("would the user interact with it next?").
Training is binary cross-entropy over every candidate (the positive labelled 1, its negatives 0), which is the
paper's yes/no supervised fine-tuning objective restricted to the answer token. Evaluation:
- AUC pointwise over every (user, candidate) pair of the split (torchmetrics' BinaryAUROC, synced across processes);
- Recall@k, MRR@k, NDCG@k for k in `eval_ks` (3, 5, 10 as in the official test) from the positive's rank among
  the user's candidates, ties counting against it (a model that scores every candidate alike ranks it last).

Item text vectors (the datamodule's `item_text_embeddings()`, frozen) are a buffer of every model that takes
`text_dim`, filled in Lightning's `setup` from the datamodule and saved with the checkpoint.
"""
from __future__ import annotations

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.classification import BinaryAUROC

from contracts.batch import mllmrec as B

DEFAULT_KS = (3, 5, 10)


def candidate_metrics(scores: torch.Tensor, ks: tuple[int, ...]) -> dict[str, torch.Tensor]:
    """Per-user Recall@k, MRR@k, NDCG@k [B] of the positive (column 0) among the columns of `scores` [B, C].
    Its rank counts every candidate scoring >= it; a non-finite score counts against the positive."""
    positive = scores[:, :1]
    beats = (scores >= positive) | ~torch.isfinite(scores) | ~torch.isfinite(positive)
    beats[:, B.POSITIVE_COLUMN] = True
    rank = beats.sum(dim=1).float()
    out = {}
    for k in ks:
        hit = (rank <= k).float()
        out[f"recall@{k}"] = hit
        out[f"mrr@{k}"] = hit / rank
        out[f"ndcg@{k}"] = hit / torch.log2(rank + 1.0)
    return out


class CandidateRecModule(pl.LightningModule):
    def __init__(self, num_items: int, max_history: int = 10, text_dim: int = 0, lr: float = 1e-3,
                 weight_decay: float = 0.0, eval_ks: tuple[int, ...] = DEFAULT_KS):
        super().__init__()
        if num_items < 1 or max_history < 1:
            raise ValueError(f"num_items and max_history must be >= 1, got {num_items} and {max_history}")
        self.num_items, self.max_history, self.text_dim = num_items, max_history, text_dim
        self.lr, self.weight_decay, self.eval_ks = lr, weight_decay, tuple(eval_ks)
        self.register_buffer("item_text", torch.zeros(num_items + 1, text_dim))
        names = [f"{m}@{k}" for k in self.eval_ks for m in ("recall", "mrr", "ndcg")]
        self.metrics = nn.ModuleDict({stage: nn.ModuleDict({n.replace("@", "_at_"): MeanMetric() for n in names})
                                      for stage in ("val", "test")})
        self.auc = nn.ModuleDict({stage: BinaryAUROC() for stage in ("val", "test")})

    # ----- data the model reads -------------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if self.text_dim and datamodule is not None and hasattr(datamodule, "item_text_embeddings"):
            table = datamodule.item_text_embeddings()
            if tuple(table.shape) != tuple(self.item_text.shape):
                raise ValueError(f"the datamodule's item text table is {tuple(table.shape)}, this model was built "
                                 f"for {tuple(self.item_text.shape)} (num_items + 1, text_dim)")
            self.item_text.copy_(table.to(self.item_text.device))

    # ----- what a model implements ----------------------------------------------------------------------------------
    def score(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    # ----- training and evaluation ------------------------------------------------------------------------------------
    def training_step(self, batch, batch_idx):
        logits = self.score(batch)
        labels = torch.zeros_like(logits)
        labels[:, B.POSITIVE_COLUMN] = 1.0
        loss = F.binary_cross_entropy_with_logits(logits, labels)
        self.log("train/loss", loss, prog_bar=True, batch_size=logits.shape[0])
        return loss

    def _evaluate(self, batch, stage: str) -> None:
        scores = self.score(batch).float()
        labels = torch.zeros_like(scores, dtype=torch.long)
        labels[:, B.POSITIVE_COLUMN] = 1
        finite = torch.nan_to_num(scores, nan=-1e9, posinf=-1e9, neginf=-1e9)  # a NaN never ranks first
        self.auc[stage].update(finite.flatten(), labels.flatten())
        for name, values in candidate_metrics(scores, self.eval_ks).items():
            self.metrics[stage][name.replace("@", "_at_")].update(values)

    def _log_epoch(self, stage: str) -> None:
        values = {f"{stage}/auc": self.auc[stage].compute()}
        self.auc[stage].reset()
        for key, metric in self.metrics[stage].items():
            values[f"{stage}/{key.replace('_at_', '@')}"] = metric.compute()
            metric.reset()
        self.log_dict(values, sync_dist=False)  # torchmetrics already synced them

    def validation_step(self, batch, batch_idx):
        self._evaluate(batch, "val")

    def test_step(self, batch, batch_idx):
        self._evaluate(batch, "test")

    def on_validation_epoch_end(self):
        self._log_epoch("val")

    def on_test_epoch_end(self):
        self._log_epoch("test")

    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        return torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)


class TextItemEncoder(nn.Module):
    """An item's vector from its frozen text vector: Linear + LayerNorm (the offline stand-in for the item
    summariser's text), optionally plus a learned ID embedding; padding ids give zeros."""

    def __init__(self, text_dim: int, dim: int, num_items: int, item_ids: bool):
        super().__init__()
        self.projection = nn.Linear(max(text_dim, 1), dim)
        self.norm = nn.LayerNorm(dim)
        self.ids = nn.Embedding(num_items + 1, dim, padding_idx=B.PAD) if item_ids else None

    def forward(self, item_text: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.projection(item_text[ids]))
        if self.ids is not None:
            x = x + self.ids(ids)
        return x * (ids != B.PAD).unsqueeze(-1)
