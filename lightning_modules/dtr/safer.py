"""SAFER: calibrated risk-aware tabular-language treatment recommendation (Shen, Ye, Xiong, Chen, ICML 2025,
arXiv 2506.06649; official code github.com/yishanssss/SAFER, `method/model.py::NextMedPredModel`, `train.py`).

Paper §4.1 (Eq. 2-4), as in the code:
  per-modality projections (vitals, previous meds, notes, demographics), sinusoidal positions on each stream;
  each of N layers: causal self-attention per stream -> cross-attention both ways notes<->vitals -> for notes
  and vitals, Linear(2d->d) over [cross, self];
  readout h_i = fuse2([fuse1([vitals_T, notes_T]), demographics]) (the unified embedding H_i^T (+) x_i^D);
  classifier MLP d -> d/2 -> 25 (p_theta).
Paper §4.2:
  stage 1: cross-entropy on ALL patients (survivors and deceased);
  refinement module f_phi (MLP d -> d/2 -> d/4 -> 25, ReLU) trained with CE on SURVIVORS only, f_theta frozen;
  uncertainty kappa_i = KL(p_theta(.|h_i) || p_phi(.|h_i)) (Eq. 5), min/max recorded by the check step;
  risk-aware fine-tuning of f_theta with Eq. 7 (see metrics.risk_aware_loss), f_phi frozen.
Paper §5: conformal selection of reliable recommendations with BH FDR control at alpha for H_j: kappa-hat_j >= c
  with the true kappa-hat of each point as its label. conformal_protocol="resplit" (default) measures the guarantee:
  the calibration and test patients (a split that no training or model selection touches when the datamodule has
  four split fractions) are re-split at random `conformal_repetitions` times, by patient, into test patients and the
  rest, the rest 70/30 into the ridge score predictor's fit and the calibration set (the paper's 70/30), one window
  per calibration/test patient; fdr and power are the means over the re-splits, with Monte-Carlo standard errors
  (metrics.conformal_resplits). "fixed" is the paper's protocol on one pool and one test split
  (metrics.conformal_selection). The threshold c is read on the normalised kappa-hat =
  (kappa - min)/(max - min) clamped to [0, 1], min/max over the training patients (the paper's "kappa normalised
  to [0, 1]", the scale of Eq. 7). The official code (`conformal_fdr.py`) writes kappa - min/(max - min) (an
  operator-precedence bug), which is close to the raw KL in nats clamped to [0, 1] when min ~ 0:
  conformal_score="code" reproduces that scale, "raw" tests the raw KL. The code's `logistic_regression.py`
  (the paper's Figs 3-4) also counts false and true discoveries with the PREDICTED kappa of the test points
  instead of their kappa; we count with the model's actual kappa-hat (the quantity H_j is about).

Why c = 0.3 had power 0 on dtr-icu-sepsis before (two causes, both fixed): (1) the refinement module trained 2
  epochs left f_phi far from f_theta, so kappa ~ 0.6 nats everywhere; f_phi is now trained on cached embeddings
  (cheap) for the paper's 30 epochs and kappa drops to ~0.05 nats; (2) fine-tuning with gradient through the
  weight (1 - kappa-hat) of Eq. 7 lowers the loss by RAISING kappa (loss_variant="paper_grad"): in two epochs
  every kappa-hat reached 1, so every test point was a null (FDR ~ alpha from BH on nulls, power 0). The weight
  is now a stop-gradient importance weight, as in the official code.

Stages in Lightning: stage 1 (`Stage1`) and the refinement (`RefineStage`) are each a Lightning fit of their own,
started from `on_train_start` under a Trainer with the outer run's accelerator, precision, devices and strategy
(`lightning_modules.stages.run_stage`), so DDP, mixed precision and the accelerator reach them; each has its own
Adam optimiser and epoch count and keeps the weights of its best validation loss (summed over
processes). The outer Lightning epochs are the fine-tuning epochs, so the runner's checkpointing and early stopping
select among fine-tuned models. At a fixed seed the stages draw the same batches as a plain loop would.

Differences from the official code, each behind a flag (defaults follow the paper where it is explicit):
  loss_variant: "paper" (default) = Eq. 7 with the weight (1 - kappa-hat) computed without gradient (as the
      code's no_grad weight) and gradient through the penalty gamma kappa^2; "paper_grad" = gradient through
      the weight too (degenerate, see above); "code" = no gradient through weight or penalty, w>0.6 -> 1,
      penalty gamma (1 - w) (train.py).
  refinement: the code trains f_phi batch by batch through the frozen f_theta in eval mode; we compute the
      (identical) frozen h once and train f_phi on it (same optimiser, epochs and batch size).
  self_attn_residual=False: the code's SelfAttnBlock drops the residual (x = attn_out); default True.
  meds_in_readout=True: use the meds stream in the readout (the code computes it and never uses it); default
      False, as the code (the paper's readout names vitals and notes only).
  finetune_lr: the code fine-tunes with Adam lr 1e-5; paper/code stage-1 and refinement lr 1e-4.
`finetune_epochs` caps the fine-tuning epochs (None: the trainer's max_epochs / early stopping decide).
Ablations as flags: use_notes=False (SAFER-N), finetune=False (SAFER-F), train_on="survivors" (SAFER-U).
"""
from __future__ import annotations

import copy
import math

import lightning.pytorch as pl
import optuna
import torch
import torch.nn.functional as F
from torch import nn

from contracts.batch import dtr as B
from contracts.registry import register_model, register_model_variant
from lightning_modules.dtr.base import DTRModule
from lightning_modules.dtr.metrics import (conformal_resplits, conformal_selection, kl_uncertainty, normalise_kappa,
                                           risk_aware_loss)
from lightning_modules.stages import run_stage
from lightning_modules.layers import MultiHeadAttention

CURVE_ALPHAS = (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.75, 0.95)
CURVE_CS = (0.1, 0.2, 0.3)
LOSS_VARIANTS = ("paper", "paper_grad", "code")
CONFORMAL_SCORES = ("normalized", "code", "raw")
CONFORMAL_PROTOCOLS = ("resplit", "fixed")


def projection(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, out_dim))


def sinusoidal_positions(length: int, dim: int) -> torch.Tensor:
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div)[:, : dim // 2]
    return pe


def causal_mask(mask: torch.Tensor) -> torch.Tensor:
    """[B,1,L,L] True where query i may attend key j: j <= i and (j is a real step or j == i), so that padded
    query rows attend only to themselves (never an all-masked row)."""
    L = mask.shape[1]
    lower = torch.ones(L, L, dtype=torch.bool, device=mask.device).tril()
    eye = torch.eye(L, dtype=torch.bool, device=mask.device)
    return (lower & (mask[:, None, :] | eye)).unsqueeze(1)


class FeedForward(nn.Sequential):
    def __init__(self, dim: int, hidden: int, dropout: float):
        super().__init__(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim))


class SelfAttnBlock(nn.Module):
    """Causal self-attention over one stream, then LN + FFN (GELU). `residual=False` = the official code."""

    def __init__(self, dim, num_heads, ffn_dim, dropout, residual: bool):
        super().__init__()
        self.attention = MultiHeadAttention(dim, num_heads, dropout)
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.ffn = FeedForward(dim, ffn_dim, dropout)
        self.dropout = nn.Dropout(dropout)
        self.residual = residual

    def forward(self, x, allowed):
        a = self.dropout(self.attention(x, x, allowed))
        x = self.norm1(x + a if self.residual else a)
        return self.norm2(x + self.dropout(self.ffn(x)))


class CrossAttnBlock(nn.Module):
    """Stream q attends (causally) to stream kv: residual + LN + FFN."""

    def __init__(self, dim, num_heads, ffn_dim, dropout):
        super().__init__()
        self.attention = MultiHeadAttention(dim, num_heads, dropout)
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.ffn = FeedForward(dim, ffn_dim, dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(self, q, kv, allowed):
        x = self.norm1(q + self.dropout(self.attention(q, kv, allowed)))
        return self.norm2(x + self.dropout(self.ffn(x)))


class TransformerLayer(nn.Module):
    """One SAFER layer (Eq. 2-3): self-attention per stream, cross-attention notes<->vitals, Linear(2d->d)."""

    def __init__(self, dim, num_heads, ffn_dim, dropout, use_notes: bool, residual: bool):
        super().__init__()
        self.use_notes = use_notes
        self.self_meds = SelfAttnBlock(dim, num_heads, ffn_dim, dropout, residual)
        self.self_vitals = SelfAttnBlock(dim, num_heads, ffn_dim, dropout, residual)
        if use_notes:
            self.self_notes = SelfAttnBlock(dim, num_heads, ffn_dim, dropout, residual)
            self.notes_to_vitals = CrossAttnBlock(dim, num_heads, ffn_dim, dropout)  # vitals query notes
            self.vitals_to_notes = CrossAttnBlock(dim, num_heads, ffn_dim, dropout)  # notes query vitals
            self.merge_vitals = nn.Linear(2 * dim, dim)
            self.merge_notes = nn.Linear(2 * dim, dim)

    def forward(self, meds, vitals, notes, allowed):
        meds = self.self_meds(meds, allowed)
        vitals_self = self.self_vitals(vitals, allowed)
        if not self.use_notes:
            return meds, vitals_self, notes
        notes_self = self.self_notes(notes, allowed)
        vitals_cross = self.notes_to_vitals(vitals_self, notes_self, allowed)
        notes_cross = self.vitals_to_notes(notes_self, vitals_self, allowed)
        vitals = self.merge_vitals(torch.cat([vitals_cross, vitals_self], -1))
        notes = self.merge_notes(torch.cat([notes_cross, notes_self], -1))
        return meds, vitals, notes


class RefinePrediction(nn.Sequential):
    """f_phi: d -> d/2 -> d/4 -> 25 with ReLU (`RefinePrediction`; the code's unused fc1 is left out)."""

    def __init__(self, dim: int, num_actions: int):
        super().__init__(nn.Linear(dim, dim // 2), nn.ReLU(), nn.Linear(dim // 2, dim // 4), nn.ReLU(),
                         nn.Linear(dim // 4, num_actions))


@register_model("safer", family="dtr")
class SAFER(DTRModule):
    def __init__(
        self,
        vitals_dim: int,
        meds_dim: int,
        notes_dim: int,
        demo_dim: int,
        history_len: int = 8,
        num_actions: int = B.NUM_ACTIONS,
        mdp: str | None = None,
        d_model: int = 128,
        num_heads: int = 8,
        num_layers: int = 2,
        ffn_dim: int = 128,
        dropout: float = 0.2,
        use_notes: bool = True,
        train_on: str = "all",
        finetune: bool = True,
        finetune_epochs: int | None = None,
        stage1_epochs: int = 30,
        refine_epochs: int = 30,
        stage1_lr: float = 1e-4,
        refine_lr: float = 1e-4,
        lr: float = 1e-5,  # fine-tuning lr (code: Adam 1e-5)
        gamma: float = 0.5,
        loss_variant: str = "paper",
        self_attn_residual: bool = True,
        meds_in_readout: bool = False,
        conformal_alpha: float = 0.1,
        conformal_c: float = 0.3,
        conformal_repetitions: int = 200,
        conformal_score: str = "normalized",
        conformal_protocol: str = "resplit",
        weight_decay: float = 0.0,
        topk: int = 3,
    ):
        super().__init__(vitals_dim, meds_dim, notes_dim, demo_dim, history_len, num_actions, mdp, use_notes,
                         train_on, lr, weight_decay, topk)
        self.save_hyperparameters()
        if conformal_score not in CONFORMAL_SCORES:
            raise ValueError(f"conformal_score must be one of {CONFORMAL_SCORES}, got {conformal_score!r}")
        if conformal_protocol not in CONFORMAL_PROTOCOLS:
            raise ValueError(f"conformal_protocol must be one of {CONFORMAL_PROTOCOLS}, got {conformal_protocol!r}")
        if loss_variant not in LOSS_VARIANTS:
            raise ValueError(f"loss_variant must be one of {LOSS_VARIANTS}, got {loss_variant!r}")
        d = d_model
        self.vitals_proj = projection(vitals_dim, d // 2, d)
        self.meds_proj = projection(meds_dim, d // 2, d)
        self.notes_proj = projection(notes_dim, 2 * d, d) if use_notes else None
        self.demo_proj = projection(demo_dim, d // 2, d)
        self.register_buffer("positions", sinusoidal_positions(history_len, d), persistent=False)
        self.layers = nn.ModuleList(TransformerLayer(d, num_heads, ffn_dim, dropout, use_notes, self_attn_residual)
                                    for _ in range(num_layers))
        readout_streams = 1 + int(use_notes) + int(meds_in_readout)
        self.fuse1 = nn.Linear(readout_streams * d, d)
        self.fuse2 = nn.Linear(2 * d, d)
        self.classifier = nn.Sequential(nn.Linear(d, d // 2), nn.GELU(), nn.Dropout(dropout), nn.Linear(d // 2, num_actions))
        self.refine = RefinePrediction(d, num_actions)
        self.register_buffer("kappa_range", torch.tensor([0.0, 1.0]))
        self.register_buffer("stages_done", torch.tensor(False))
        self.stage_log: dict = {}

    @staticmethod
    def search_space(trial: optuna.Trial) -> dict:
        return {"d_model": trial.suggest_categorical("d_model", [64, 128, 256]),
                "num_layers": trial.suggest_categorical("num_layers", [1, 2, 4]),
                "gamma": trial.suggest_float("gamma", 0.05, 0.6),
                "stage1_lr": trial.suggest_float("stage1_lr", 1e-5, 1e-3, log=True),
                "lr": trial.suggest_float("lr", 1e-6, 1e-4, log=True)}

    # ----- the network (Eq. 2-4) -----------------------------------------------------------------------------
    def embed(self, batch: dict) -> torch.Tensor:
        mask = batch[B.MASK]
        allowed = causal_mask(mask)
        pe = self.positions[: mask.shape[1]]
        meds = self.meds_proj(batch[B.MEDS]) + pe
        vitals = self.vitals_proj(batch[B.VITALS]) + pe
        notes = self.notes_proj(batch[B.NOTES]) + pe if self.use_notes else None
        for layer in self.layers:
            meds, vitals, notes = layer(meds, vitals, notes, allowed)
        last = [vitals[:, -1]] + ([notes[:, -1]] if self.use_notes else []) + \
               ([meds[:, -1]] if self.hparams.meds_in_readout else [])
        fused = self.fuse1(torch.cat(last, -1))
        return self.fuse2(torch.cat([fused, self.demo_proj(batch[B.DEMO])], -1))

    def forward(self, batch: dict) -> dict:
        h = self.embed(batch)
        return {"h": h, "logits": self.classifier(h), "refine_logits": self.refine(h)}

    def theta_parameters(self):
        return [p for n, p in self.named_parameters() if not n.startswith("refine.")]

    # ----- stages 1-2 and the check step, before the fine-tuning epochs ---------------------------------------
    def _loaders(self):
        dm = getattr(self.trainer, "datamodule", None)
        if dm is None:
            raise RuntimeError("SAFER's staged training needs a datamodule (trainer.fit(model, datamodule=...))")
        return dm.train_dataloader(), dm.val_dataloader()

    def _to_device(self, batch: dict) -> dict:
        return {k: v.to(self.device) for k, v in batch.items()}

    def _stage_rows(self, name: str, batch: dict) -> torch.Tensor:
        if name == "refine" or self.train_on == "survivors":
            return batch[B.DIED] == 0
        return torch.ones_like(batch[B.DIED], dtype=torch.bool)

    def _stage1_loss(self, batch: dict, reduction: str = "mean"):
        rows = self._stage_rows("stage1", batch)
        if not rows.any():
            return None
        return F.cross_entropy(self(batch)["logits"][rows], batch[B.ACTION][rows], reduction=reduction)

    @torch.no_grad()
    def _embeddings(self, loader) -> tuple[torch.Tensor, torch.Tensor]:
        """h (eval mode: f_theta frozen, as the code's model.eval()) and labels of the survivors in a loader."""
        self.eval()
        hs, ys = [], []
        for batch in loader:
            batch = self._to_device(batch)
            rows = self._stage_rows("refine", batch)
            hs.append(self.embed(batch)[rows])
            ys.append(batch[B.ACTION][rows])
        return torch.cat(hs), torch.cat(ys)

    def _run_stage1(self, train_loader, val_loader) -> None:
        """Stage 1 as its own Lightning fit (`Stage1`) under a Trainer with the outer run's accelerator, precision,
        devices and strategy."""
        epochs = self.hparams.stage1_epochs
        if epochs <= 0:
            return
        outer = self._trainer
        stage = Stage1(self, train_loader, val_loader)
        run_stage(stage, outer, epochs, self.device)
        self.trainer = outer  # fitting the stage pointed this module (its child) at the stage's Trainer
        self.train()
        self.stage_log["stage1"] = {"epochs": epochs, "best_val_loss": stage.best, "val_loss": stage.history}

    def _run_refine(self, train_loader, val_loader) -> None:
        """Stage 2: f_phi on the frozen f_theta. h does not change while f_theta is frozen, so it is computed once
        per split and f_phi (a small MLP) trains on the cached embeddings (`RefineStage`, its own Lightning fit):
        the paper's 30 epochs cost seconds. Adam, minibatches of the training loader's batch size, the state of the
        best validation CE is kept."""
        epochs = self.hparams.refine_epochs
        if epochs <= 0:
            return
        (h_train, y_train), (h_val, y_val) = self._embeddings(train_loader), self._embeddings(val_loader)
        batch_size = getattr(train_loader, "batch_size", None) or 256
        stage = RefineStage(self.refine, (h_train, y_train), (h_val, y_val), batch_size, self.hparams.refine_lr,
                            seed=int(torch.initial_seed()) % 2**31)
        run_stage(stage, self._trainer, epochs, self.device)
        self.train()
        self.stage_log["refine"] = {"epochs": epochs, "best_val_loss": stage.best, "val_loss": stage.history}

    def on_train_start(self) -> None:
        if bool(self.stages_done):
            return
        train_loader, val_loader = self._loaders()
        self._run_stage1(train_loader, val_loader)
        self._run_refine(train_loader, val_loader)
        # check step (`check_difference`): kappa's range on the training patients, for kappa-hat in [0, 1]
        self.eval()
        kappas, died = [], []
        with torch.no_grad():
            for batch in train_loader:
                batch = self._to_device(batch)
                out = self(batch)
                kappas.append(kl_uncertainty(out["logits"], out["refine_logits"]))
                died.append(batch[B.DIED])
        kappa, died = torch.cat(kappas), torch.cat(died)
        self.kappa_range.copy_(torch.stack([kappa.min(), kappa.max()]))
        self.stage_log["kappa_train"] = {"survivors_mean": float(kappa[died == 0].mean()),
                                         "deceased_mean": float(kappa[died == 1].mean()) if (died == 1).any() else None,
                                         "min": float(kappa.min()), "max": float(kappa.max())}
        self.stages_done.fill_(True)
        self.train()

    # ----- fine-tuning (the Lightning epochs) ---------------------------------------------------------------------
    def configure_optimizers(self):
        return torch.optim.Adam(self.theta_parameters(), lr=self.lr, weight_decay=self.weight_decay)

    def training_step(self, batch: dict, batch_idx: int):
        if not self.hparams.finetune:
            return None  # SAFER-F: the stage-1 model is the final model
        rows = self.train_rows(batch)
        if not rows.any():
            return None
        out = self(batch)
        self.refine.requires_grad_(False)
        lo, hi = self.kappa_range.tolist()
        loss = risk_aware_loss(out["logits"][rows], out["refine_logits"][rows], batch[B.ACTION][rows],
                               self.hparams.gamma, lo, hi, self.hparams.loss_variant)
        self.log("train/loss", loss, prog_bar=True, batch_size=int(rows.sum()))
        return loss

    def on_train_epoch_end(self) -> None:
        epochs = self.hparams.finetune_epochs
        if not self.hparams.finetune or (epochs is not None and self.current_epoch + 1 >= epochs):
            self.trainer.should_stop = True

    # ----- uncertainty and conformal selection --------------------------------------------------------------------
    def uncertainty(self, batch: dict, out: dict) -> torch.Tensor:
        return kl_uncertainty(out["logits"], out["refine_logits"])

    def extra_test_metrics(self, d: dict) -> dict[str, float]:
        if d["kappa"] is None:
            return {}
        calib = d["calib"].reshape(-1).bool().numpy()
        h, kappa, died = d["h"].numpy(), d["kappa"].reshape(-1), d["died"].reshape(-1).numpy()
        lo, hi = self.kappa_range.tolist()
        if self.hparams.conformal_score == "normalized":  # kappa-hat in [0, 1], the scale of Eq. 7 and of c
            kappa = normalise_kappa(kappa, lo, hi)
        elif self.hparams.conformal_score == "code":  # `conformal_fdr.py` verbatim: kappa - min / (max - min)
            kappa = (kappa - lo / max(hi - lo, 1e-12)).clamp(0, 1)
        kappa = kappa.numpy()
        alpha, c = self.hparams.conformal_alpha, self.hparams.conformal_c
        alphas = sorted(set(CURVE_ALPHAS) | {alpha})
        cs = sorted(set(CURVE_CS) | {c})
        patient = d["patient"].reshape(-1).long().numpy()
        m = {}
        if self.hparams.conformal_protocol == "resplit":
            # the pool: calibration and test patients, none of them seen by training or model selection
            results = conformal_resplits(h, kappa, patient, alphas, cs, repetitions=self.hparams.conformal_repetitions,
                                         seed=0)
            m.update(fdr=results[(alpha, c)]["fdr"], fdr_se=results[(alpha, c)]["fdr_se"],
                     power=results[(alpha, c)]["power"], power_se=results[(alpha, c)]["power_se"])
            curve = {k: (v["fdr"], v["power"]) for k, v in results.items()}
        else:  # the paper's protocol on one fixed calibration pool / test split
            curve = conformal_selection(h[calib], kappa[calib], h[~calib], kappa[~calib], alphas, cs,
                                        repetitions=self.hparams.conformal_repetitions, seed=0,
                                        pool_groups=patient[calib])
            m.update(fdr=curve[(alpha, c)][0], power=curve[(alpha, c)][1])
        for (a, cc), (fdr, power) in curve.items():
            m[f"curve_fdr_a{a:g}_c{cc:g}"] = fdr
            m[f"curve_power_a{a:g}_c{cc:g}"] = power
            if self.hparams.conformal_protocol == "resplit":  # Monte-Carlo standard errors over the re-splits
                m[f"curve_fdrse_a{a:g}_c{cc:g}"] = results[(a, cc)]["fdr_se"]
                m[f"curve_powerse_a{a:g}_c{cc:g}"] = results[(a, cc)]["power_se"]
        test_kappa, test_died = kappa[~calib], died[~calib]
        m["kappa_survivors"] = float(test_kappa[test_died == 0].mean())
        if (test_died == 1).any():
            m["kappa_deceased"] = float(test_kappa[test_died == 1].mean())
        m["kappa_below_c"] = float((test_kappa < c).mean())
        for cc in cs:  # share of test points that are nulls (kappa-hat >= c): how the c grid sits in kappa-hat
            m[f"curve_null_c{cc:g}"] = float((test_kappa >= cc).mean())
        return m


class _BestState(pl.LightningModule):
    """What both stages share: the summed validation loss over the rows each batch scores (reduced over
    processes), its per-epoch history, and the weights of the best epoch, restored when the fit ends."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.best, self.best_state, self.history = float("inf"), None, []

    def on_validation_epoch_start(self) -> None:
        self._sum, self._count = 0.0, 0

    def on_validation_epoch_end(self) -> None:
        totals = torch.tensor([self._sum, self._count], dtype=torch.float64, device=self.device)
        totals = self.trainer.strategy.reduce(totals, reduce_op="sum")
        val = float(totals[0] / totals[1].clamp(min=1))
        self.history.append(round(val, 5))
        if self.best_state is None or val < self.best:
            self.best, self.best_state = val, copy.deepcopy(self.model.state_dict())

    def on_fit_end(self) -> None:
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)


class Stage1(_BestState):
    """SAFER stage 1 (paper §4.2): cross-entropy on all patients (survivors only for SAFER-U), Adam at
    `stage1_lr` on f_theta, over the datamodule's own training and validation loaders; the best validation loss's
    weights are kept."""

    def __init__(self, model: "SAFER", train_loader, val_loader):
        super().__init__(model)
        self._loaders = (train_loader, val_loader)  # not attributes Lightning would inspect or save

    def train_dataloader(self):
        return self._loaders[0]

    def val_dataloader(self):
        return self._loaders[1]

    def configure_optimizers(self):
        return torch.optim.Adam(self.model.theta_parameters(), lr=self.model.hparams.stage1_lr)

    def training_step(self, batch: dict, batch_idx: int):
        return self.model._stage1_loss(batch)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        loss = self.model._stage1_loss(batch, reduction="sum")
        if loss is not None:
            self._sum += float(loss)
            self._count += int(self.model._stage_rows("stage1", batch).sum())


class _CachedEmbeddings(torch.utils.data.Dataset):
    """(h, y) pairs gathered a whole batch at a time."""

    def __init__(self, h: torch.Tensor, y: torch.Tensor):
        self.h, self.y = h, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitems__(self, indices):
        index = torch.as_tensor(indices, dtype=torch.long, device=self.y.device)
        return self.h[index], self.y[index]


class _Permutations(torch.utils.data.Sampler):
    """Per epoch one permutation from a private generator, cut into consecutive batches."""

    def __init__(self, rows: int, batch_size: int, generator: torch.Generator):
        self.rows, self.batch_size, self.generator = rows, batch_size, generator

    def __iter__(self):
        yield from (chunk.tolist() for chunk in torch.randperm(self.rows, generator=self.generator).split(self.batch_size))

    def __len__(self) -> int:
        return math.ceil(self.rows / self.batch_size)


class RefineStage(_BestState):
    """SAFER's refinement module f_phi (paper §4.2) trained with cross-entropy on the survivors' cached, frozen
    embeddings h; Adam at `refine_lr`; the best validation CE's weights are kept."""

    def __init__(self, refine: nn.Module, train: tuple, val: tuple, batch_size: int, lr: float, seed: int):
        super().__init__(refine)
        self._sets = (_CachedEmbeddings(*train), _CachedEmbeddings(*val))
        self.batch_size, self.lr = batch_size, lr
        self._generator = torch.Generator().manual_seed(seed)

    def train_dataloader(self):
        sampler = _Permutations(len(self._sets[0]), self.batch_size, self._generator)
        # a private generator: creating the loaders' iterators draws nothing from the global one
        return torch.utils.data.DataLoader(self._sets[0], batch_sampler=sampler, collate_fn=_whole,
                                           generator=torch.Generator())

    def val_dataloader(self):
        rows = max(1, len(self._sets[1]))
        return torch.utils.data.DataLoader(self._sets[1], batch_size=rows, collate_fn=_whole,
                                           generator=torch.Generator())

    def configure_optimizers(self):
        return torch.optim.Adam(self.model.parameters(), lr=self.lr)

    def training_step(self, batch, batch_idx: int):
        h, y = batch
        return F.cross_entropy(self.model(h), y)

    def validation_step(self, batch, batch_idx: int) -> None:
        h, y = batch
        if len(y):
            self._sum += float(F.cross_entropy(self.model(h), y, reduction="sum"))
            self._count += len(y)


def _whole(batch):
    return batch  # the datasets' __getitems__ already return whole batches


# The ablations of Table 2: SAFER with one argument fixed (a board can still override every key).
register_model_variant("safer_n", SAFER, "SAFER-N: no clinical notes (paper Table 2).", use_notes=False)
register_model_variant("safer_f", SAFER, "SAFER-F: no risk-aware fine-tuning (Table 2).", finetune=False)
register_model_variant("safer_u", SAFER, "SAFER-U: survivors only (Table 2).", train_on="survivors")
