"""The ctr family base: what every click-through-rate model shares, composed of named stages (TorchRec style).

    sparse stage   `embedding`        categorical field indices [B, N] -> embeddings [B, N, K]
    dense stage    `dense_embedding`  numeric fields [B, M] -> value * v_m, [B, M, K] (FuxiCTR's numeric embedding),
                                      or kept as the raw vector when the model sets `embed_dense = False` (XCrossNet)
    interaction    `interaction`      (dense [B, M], fields [B, F, K]) -> features [B, D]   (the paper's part)
    head           `head`             features -> logit [B, 1] (an MLP, a linear layer, or the sum of logits)
    first order    `linear`           optional w_0 + sum w_f (LR / the "wide" part), added to the logit

A model file builds `interaction` and `head` and nothing else. The base owns the loss, the optimiser and the
metrics:
  loss  = mean BCE + embedding_l2 / 2 * ||E||^2 (every nn.Embedding table, whole, as FuxiCTR's
          `embedding_regularizer`) + net_l2 / 2 * ||W||^2 (every other weight and bias, FuxiCTR's
          `net_regularizer`). The papers write lambda * ||Theta||^2; FuxiCTR's (lambda / p) * ||.||_p^p form is
          used so BARS configs transfer unchanged. FuxiCTR visits nested modules' parameters once per ancestor
          (a quirk that multiplies net_l2); here each parameter counts once.
  optimiser: Adam (PyTorch's fused kernel on CPU and CUDA); with `lr_decay_on_plateau` the learning rate is divided by 10 after every epoch whose
          validation AUC does not improve (FuxiCTR's `lr_decay`, min 1e-6).
  metrics: AUC (torchmetrics BinaryAUROC with thresholds=None: exact, over all samples of the split, gathered
          across processes) and logloss (MeanMetric of the per-sample BCE, synced as sum and count), on the full
          evaluation set; the eval sampler never duplicates samples under DDP. A non-finite logit counts as the
          worst prediction for its label (see `_evaluate`).
"""
from __future__ import annotations

from typing import Sequence

import lightning.pytorch as pl
import optuna
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.classification import BinaryAUROC

from contracts.batch import ctr as B
from lightning_modules.ctr.layers import FieldEmbedding, LinearLogit, NumericEmbedding

METRICS = ("auc", "logloss")


class CTRModule(pl.LightningModule):
    """Shared input stages, loss, optimiser and evaluation of CTR models. Subclasses set `interaction` and `head`."""

    embed_dense: bool = True  # numeric fields enter as embedded fields; XCrossNet sets False (raw dense vector)
    uses_embeddings: bool = True  # LR sets False: it has only the first-order term

    def __init__(self, field_dims: Sequence[int], num_dense: int, embed_dim: int = 10, use_linear: bool = False,
                 lr: float = 1e-3, embedding_l2: float = 0.0, net_l2: float = 0.0,
                 lr_decay_on_plateau: bool = True, embedding_init_std: float = 1e-4):
        super().__init__()
        self.field_dims = [int(d) for d in field_dims]
        if any(d < 1 for d in self.field_dims):
            raise ValueError(f"every field needs cardinality >= 1 (the OOV bucket), got {self.field_dims}")
        self.num_sparse = len(self.field_dims)
        self.num_dense = int(num_dense)
        if self.num_sparse + self.num_dense == 0:
            raise ValueError("a CTR model needs at least one field")
        self.embed_dim = embed_dim
        self.lr = lr
        self.embedding_l2 = embedding_l2
        self.net_l2 = net_l2
        self.lr_decay_on_plateau = lr_decay_on_plateau
        self.embedding = FieldEmbedding(self.field_dims, embed_dim, embedding_init_std) if self.uses_embeddings else None
        self.dense_embedding = (NumericEmbedding(self.num_dense, embed_dim)
                                if self.uses_embeddings and self.embed_dense and self.num_dense else None)
        self.linear = LinearLogit(self.field_dims, self.num_dense, embedding_init_std) if use_linear else None
        self.interaction: nn.Module = nn.Identity()
        self.head: nn.Module = nn.Identity()
        self.val_auc, self.test_auc = BinaryAUROC(), BinaryAUROC()
        self.val_logloss, self.test_logloss = MeanMetric(), MeanMetric()

    @property
    def num_fields(self) -> int:
        """F: the fields the interaction stage sees as embeddings (sparse, then dense when embedded)."""
        if self.embedding is None:
            return 0
        return self.num_sparse + (self.num_dense if self.dense_embedding is not None else 0)

    # ----- stages --------------------------------------------------------------------------------------------
    def fields(self, dense: torch.Tensor, sparse: torch.Tensor) -> torch.Tensor:
        """[B, F, K]: sparse field embeddings, then the numeric fields' embeddings if `embed_dense`."""
        if self.embedding is None:
            return sparse.new_zeros((sparse.shape[0], 0, self.embed_dim), dtype=torch.float32)
        emb = self.embedding(sparse)
        if self.dense_embedding is not None:
            emb = torch.cat([emb, self.dense_embedding(dense)], dim=1)
        return emb

    def forward(self, dense: torch.Tensor, sparse: torch.Tensor) -> torch.Tensor:
        """Logits [B]."""
        logit = self.head(self.interaction(dense, self.fields(dense, sparse))).squeeze(-1)
        if self.linear is not None:
            logit = logit + self.linear(dense, sparse)
        return logit

    # ----- training ------------------------------------------------------------------------------------------
    def l2_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(embedding tables, every other trainable parameter), each parameter once; found once, then reused."""
        groups = self.__dict__.get("_l2_groups")
        if groups is None:
            tables, net = [], []
            for module in self.modules():
                for param in module.parameters(recurse=False):
                    if param.requires_grad:
                        (tables if isinstance(module, nn.Embedding) else net).append(param)
            groups = self.__dict__["_l2_groups"] = (tables, net)  # a plain attribute: not registered, not saved
        return groups

    def regularization(self) -> torch.Tensor:
        tables, net = self.l2_groups()
        reg = torch.zeros((), device=self.device)
        for weight, params in ((self.embedding_l2, tables), (self.net_l2, net)):
            if weight and params:
                reg = reg + weight / 2 * torch.stack([p.pow(2).sum() for p in params]).sum()
        return reg

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        logits = self(batch[B.DENSE], batch[B.SPARSE])
        bce = F.binary_cross_entropy_with_logits(logits, batch[B.LABEL])
        loss = bce + self.regularization()
        self.log("train/loss", loss, prog_bar=True, batch_size=logits.shape[0])
        self.log("train/bce", bce, batch_size=logits.shape[0])
        return loss

    def configure_optimizers(self):
        params = list(self.parameters())
        # The fused kernel (one pass per tensor instead of a dozen elementwise ops) on the devices that have it; the
        # same update up to float rounding.
        fused = all(p.device.type in ("cpu", "cuda") for p in params)
        optimizer = torch.optim.Adam(params, lr=self.lr, fused=fused)
        if not self.lr_decay_on_plateau:
            return optimizer
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.1, patience=0,
                                                               min_lr=1e-6)
        # strict=False: a run without validation (tests, --trainer.limit_val_batches 0) simply never decays.
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "monitor": "val/auc", "interval": "epoch", "strict": False}}

    # ----- evaluation ----------------------------------------------------------------------------------------
    def _evaluate(self, batch: dict, auc: BinaryAUROC, logloss: MeanMetric, stage: str) -> None:
        logits = self(batch[B.DENSE], batch[B.SPARSE]).float()
        label = batch[B.LABEL].float()
        # A non-finite logit is a failed prediction and scores as the worst one for its label (probability 0 for a
        # click, 1 for a non-click; infinite logloss): NaN would otherwise win every AUC pair (and make
        # BinaryAUROC re-squash the batch) and drop silently out of the logloss mean.
        finite = torch.isfinite(logits)
        auc.update(torch.where(finite, torch.sigmoid(logits), 1.0 - label), label.long())
        bce = F.binary_cross_entropy_with_logits(logits, label, reduction="none")
        logloss.update(torch.where(finite, bce, torch.inf))
        n = logits.shape[0]
        self.log(f"{stage}/auc", auc, on_step=False, on_epoch=True, batch_size=n)
        self.log(f"{stage}/logloss", logloss, on_step=False, on_epoch=True, batch_size=n)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, self.val_auc, self.val_logloss, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, self.test_auc, self.test_logloss, "test")

    @torch.no_grad()
    def predict_proba(self, dense: torch.Tensor, sparse: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self(dense, sparse))


def suggest_units(trial: optuna.Trial, name: str, choices: Sequence[str]) -> list[int]:
    """An MLP shape as a categorical over strings ("400-400-400"), which every Optuna storage can persist."""
    return [int(u) for u in trial.suggest_categorical(name, list(choices)).split("-")]


def common_space(trial: optuna.Trial) -> dict:
    """The knobs every CTR model shares (BARS tunes these for every model alike)."""
    return {
        "lr": trial.suggest_float("lr", 3e-4, 3e-3, log=True),
        "embedding_l2": trial.suggest_float("embedding_l2", 1e-7, 1e-3, log=True),
        "embed_dim": trial.suggest_categorical("embed_dim", [8, 10, 16, 20]),
    }
