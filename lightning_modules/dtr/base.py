"""The dtr family base: what every treatment recommender shares (batch -> 25 action scores).

A model subclasses `DTRModule` and implements `forward(batch) -> {"logits": [B, 25], optional "h": [B, d]}`.
The base owns plain training (cross-entropy on the clinician's action, on all patients or survivors only),
the optimiser, and the board's evaluation:

- recommendation metrics on SURVIVORS only (only their actions are trusted; SAFER `utils.py`): micro-AUC
  (one-vs-rest, flattened), macro-AUC (mean over classes present in the split), HR@k, standard MRR@k (misses
  count 0) and the SAFER code's hits-only MRR@k (`mrr@k_hits`, secondary);
- `survival`: the exact survival probability, in the known ICU-Sepsis MDP, of the recommended policy, made
  Markov by taking at each state the empirical distribution of the model's top-1 recommendations over the
  evaluation windows at that state (the clinicians' policy where no window visits the state); `coverage` is the
  share of the clinicians' state visitation that those states carry; `survival_gap_closed` places it in its range,
  (survival - clinicians) / (optimal - clinicians), and the range itself (random, clinicians, the clinicians'
  most likely action, the optimum; exact) is recorded beside it (`survival_random` ...);
- `est_mort_reduction` (estimated, paper App. B): observed mortality minus the mean outcome-model death
  probability under the recommended action, over all test patients.
Subclasses with an uncertainty score (SAFER) add the conformal selection in `extra_test_metrics`.
Every validation epoch of training adds a point (optimizer steps so far) to the run's learning curves of
`CURVE_METRICS`, which test reports as `val_curve_<metric>_<steps>` (contracts.run.CURVE_PREFIX).
The eval sets arrive whole through torchmetrics `CatMetric` (synced across processes); test batches also carry
the calibration pool (`calib`), which every metric except the conformal step excludes.
"""
from __future__ import annotations

import lightning.pytorch as pl
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import CatMetric
from torchmetrics.functional.classification import binary_auroc, multiclass_auroc

from contracts.batch import dtr as B
from contracts.registry import SIMULATORS
from contracts.run import CURVE_PREFIX
from lightning_modules.curves import KeepsLearningCurve
from lightning_modules.dtr.metrics import hit_and_reciprocal_rank, rank_of_target, worst_for_nonfinite

TRAIN_ON = ("all", "survivors")
_VISITATION: dict = {}  # id(mdp) -> (transitions under the clinicians, their state visitation)
EVAL_KEYS = ("probs", "target", "died", "state", "calib", "cf_rec")
CURVE_METRICS = ("mrr@3", "survival")


class DTRModule(KeepsLearningCurve, pl.LightningModule):
    def __init__(self, vitals_dim: int, meds_dim: int, notes_dim: int, demo_dim: int, history_len: int,
                 num_actions: int = B.NUM_ACTIONS, mdp: str | None = None, use_notes: bool = True,
                 train_on: str = "all", lr: float = 1e-3, weight_decay: float = 0.0, topk: int = 3,
                 use_tables: bool = True):
        super().__init__()
        if not (use_tables or use_notes):
            raise ValueError("a model needs an input: use_tables and use_notes cannot both be False")
        if train_on not in TRAIN_ON:
            raise ValueError(f"train_on must be one of {TRAIN_ON}, got {train_on!r}")
        if mdp not in (None, "icu-sepsis"):
            raise ValueError(f"unknown mdp {mdp!r}; use 'icu-sepsis' or None")
        self.vitals_dim, self.meds_dim, self.notes_dim, self.demo_dim = vitals_dim, meds_dim, notes_dim, demo_dim
        self.history_len = history_len
        self.num_actions = num_actions
        self.mdp = mdp
        self.use_notes = use_notes
        self.use_tables = use_tables
        self.train_on = train_on
        self.lr = lr
        self.weight_decay = weight_decay
        self.topk = topk
        self.eval_store = nn.ModuleDict({k: CatMetric(nan_strategy="disable") for k in (*EVAL_KEYS, "h", "kappa", "patient")})
        # (global step, curve metrics) after every validation of fit, reported by test as `val_curve_*` metrics
        self.learning_curve: list[tuple[int, dict[str, float]]] = []

    # ----- what a model provides ---------------------------------------------------------------------------
    def forward(self, batch: dict) -> dict:  # pragma: no cover
        raise NotImplementedError

    def step_inputs(self, batch: dict) -> torch.Tensor:
        """[B, L, F] per-step features for recurrent/flat baselines: vitals, meds and (if used) the note embedding,
        zeroed on padded steps. Baselines without native text support get the notes appended (paper §6).
        `use_tables=False` leaves the tables out (the notes-only model of the leak check)."""
        parts = ([batch[B.VITALS], batch[B.MEDS]] if self.use_tables else []) + \
            ([batch[B.NOTES]] if self.use_notes else [])
        return torch.cat(parts, -1) * batch[B.MASK].unsqueeze(-1)

    @property
    def step_dim(self) -> int:
        return (self.vitals_dim + self.meds_dim if self.use_tables else 0) + (self.notes_dim if self.use_notes else 0)

    # ----- training ------------------------------------------------------------------------------------------
    def train_rows(self, batch: dict) -> torch.Tensor:
        if self.train_on == "survivors":
            return batch[B.DIED] == 0
        return torch.ones_like(batch[B.DIED], dtype=torch.bool)

    def training_step(self, batch: dict, batch_idx: int):
        rows = self.train_rows(batch)
        if not rows.any():
            return None
        logits = self(batch)["logits"]
        loss = F.cross_entropy(logits[rows], batch[B.ACTION][rows])
        self.log("train/loss", loss, prog_bar=True, batch_size=int(rows.sum()))
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)

    # ----- evaluation ----------------------------------------------------------------------------------------
    def recommend_scores(self, out: dict) -> torch.Tensor:
        return out["logits"]

    def uncertainty(self, batch: dict, out: dict) -> torch.Tensor | None:
        """[B] uncertainty score (SAFER's kappa) or None."""
        return None

    def _eval_step(self, batch: dict) -> None:
        out = self(batch)
        probs = F.softmax(self.recommend_scores(out).float(), dim=-1)
        rec = probs.argmax(-1)
        cf = batch[B.CF_MORTALITY].gather(1, rec[:, None]).squeeze(1)
        values = {"probs": probs, "target": batch[B.ACTION], "died": batch[B.DIED], "state": batch[B.STATE],
                  "calib": batch[B.CALIB].float(), "cf_rec": cf}
        for key, value in values.items():
            self.eval_store[key].update(value)
        kappa = self.uncertainty(batch, out)
        if kappa is not None:
            self.eval_store["kappa"].update(kappa.float())
            self.eval_store["h"].update(out["h"].float())
            self.eval_store["patient"].update(batch[B.PATIENT].float())

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch)

    def on_validation_epoch_end(self) -> None:
        self._log_eval("val")

    def on_test_epoch_end(self) -> None:
        self._log_eval("test")

    def _gathered(self) -> dict[str, torch.Tensor]:
        out = {}
        for key, metric in self.eval_store.items():
            out[key] = metric.compute().cpu() if metric.update_count > 0 else None
            metric.reset()
        return out

    def _log_eval(self, stage: str) -> None:
        if self.trainer.sanity_checking:
            for metric in self.eval_store.values():
                metric.reset()
            return
        data = self._gathered()
        if data["probs"] is None:
            return
        metrics = self.eval_metrics(data)
        if stage == "val" and self.trainer.state.fn == "fit":
            self.learning_curve.append((int(self.trainer.global_step),
                                        {k: float(metrics[k]) for k in CURVE_METRICS if k in metrics}))
        if stage == "test":
            metrics.update(self.extra_test_metrics(data))
            for steps, values in self.learning_curve:
                metrics.update({f"{CURVE_PREFIX}{k}_{steps:09d}": v for k, v in values.items()})
        for name, value in metrics.items():
            self.log(f"{stage}/{name}", float(value), on_epoch=True, sync_dist=False)

    def eval_metrics(self, d: dict) -> dict[str, float]:
        probs, target = d["probs"].reshape(-1, self.num_actions), d["target"].long().reshape(-1)
        died, calib, state = d["died"].reshape(-1), d["calib"].reshape(-1).bool(), d["state"].long().reshape(-1)
        surv = (died == 0) & ~calib
        m: dict[str, float] = {}
        y = target[surv]
        p = worst_for_nonfinite(probs[surv], y)
        onehot = F.one_hot(y, self.num_actions)
        m["micro_auc"] = float(binary_auroc(p.flatten(), onehot.flatten())) if len(y) else float("nan")
        present = torch.unique(y)
        if len(present) > 1:
            per_class = multiclass_auroc(p, y, num_classes=self.num_actions, average="none")
            m["macro_auc"] = float(per_class[present].mean())
        else:
            m["macro_auc"] = float("nan")
        hit, rr = hit_and_reciprocal_rank(rank_of_target(probs[surv], y), self.topk)
        k = self.topk
        m[f"hr@{k}"] = float(hit.mean()) if len(y) else float("nan")
        m[f"mrr@{k}"] = float(rr.mean()) if len(y) else float("nan")
        m[f"mrr@{k}_hits"] = float(rr.sum() / hit.sum().clamp(min=1))
        m["top1_acc"] = float((p.argmax(-1) == y).float().mean()) if len(y) else float("nan")
        # the recommended action is argmax of the scores, which picks a NaN; such a policy is not evaluated
        recommendations_finite = bool(torch.isfinite(probs).all())
        cf = d["cf_rec"].reshape(-1)[~calib]
        if torch.isfinite(cf).all() and len(cf):
            m["est_mort_reduction"] = float(died[~calib].mean() - cf.mean()) if recommendations_finite else float("nan")
        if self.mdp == "icu-sepsis":
            if recommendations_finite:
                m.update(self.mdp_survival(probs.argmax(-1), state))
            else:
                m.update(survival=float("nan"), coverage=float("nan"))
        return m

    def mdp_survival(self, rec_label: torch.Tensor, state: torch.Tensor) -> dict[str, float]:
        """Exact P(survival) of the recommended policy in the data's simulator (see module docstring)."""
        mdp = self.simulator()
        ok = (state >= 0) & (state < mdp.num_patient_states)
        s = state[ok].numpy()
        a = B.icu_sepsis_from_label(rec_label[ok]).numpy()
        counts = np.zeros((mdp.expert_policy.shape[0], self.num_actions))
        np.add.at(counts, (s, a), 1.0)
        seen = counts.sum(1) > 0
        policy = mdp.expert_policy.copy()
        policy[seen] = counts[seen] / counts[seen].sum(1, keepdims=True)
        _, visits = self._clinician_visitation(mdp)
        out = {"survival": mdp.survival_probability(policy), "coverage": float(visits[seen[:len(visits)]].sum())}
        reference = mdp.reference_survival() if hasattr(mdp, "reference_survival") else None
        if reference:  # the survival's range: random, clinicians, their mode, the optimum
            out.update({f"survival_{k}": v for k, v in reference.items()})
            span = reference["optimal"] - reference["clinicians"]
            out["survival_gap_closed"] = (out["survival"] - reference["clinicians"]) / span if span > 0 else float("nan")
        return out

    def simulator(self) -> B.PolicySimulator:
        """The known MDP named by `mdp`: the data side registers it (the ICU-Sepsis datamodule's module does), so
        the model never imports the data floor."""
        if self.mdp not in SIMULATORS:
            raise RuntimeError(f"no simulator {self.mdp!r} is registered; the dtr datamodules register theirs, so "
                               f"import datamodules before evaluating a model with mdp={self.mdp!r}")
        return SIMULATORS.get(self.mdp).cls()

    @staticmethod
    def _clinician_visitation(mdp: B.PolicySimulator):
        """Expected visits per patient state under the clinicians' policy, normalised to sum 1 (cached)."""
        NUM_PATIENT_STATES = mdp.num_patient_states
        if id(mdp) in _VISITATION:
            return _VISITATION[id(mdp)]

        P = np.einsum("sa,sat->st", mdp.expert_policy[:NUM_PATIENT_STATES], mdp.transitions[:NUM_PATIENT_STATES])
        T = P[:, :NUM_PATIENT_STATES]
        visits = np.linalg.solve(np.eye(NUM_PATIENT_STATES) - T.T, mdp.initial[:NUM_PATIENT_STATES])
        _VISITATION[id(mdp)] = (T, visits / visits.sum())
        return _VISITATION[id(mdp)]

    def extra_test_metrics(self, d: dict) -> dict[str, float]:
        return {}
