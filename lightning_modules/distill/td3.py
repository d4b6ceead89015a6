"""TD3: Tucker Decomposition based Dataset Distillation for sequential recommendation
(Zhang, Yin, Wang, Li, Ye, Lou, Du, Chen; WWW 2025; arXiv 2502.02854), ported from the authors' code
(`Maitouer/TD3` @ cd3c624: `src/distilled_data.py`, `src/model.py`, `src/trainer.py`), which this file follows
where the paper's prose and the code differ (the paper's equation numbers are not cited: its full text was not
available).

The summary (`TuckerSummary`): mu synthetic users x zeta positions x |I| items, never stored densely,
    S = G x_1 U x_2 T x_3 V,   P[a, b, :] = softmax_items(S[a, b, :] / temperature)
with core G [d1, d2, d], synthetic-user factor U [mu, d1], temporal factor T [zeta, d2] (both N(0, 0.02^2)),
G Kaiming-normal, and V = the pretrained learner's item table [|I|, d], frozen. Only G, U, T are optimised;
the tensor is rebuilt per minibatch of synthetic users with tensorly's `tucker_to_tensor` (PyTorch backend).

The bi-level loop (lightning_modules/distill/bilevel.py, shared with Farzi; one outer step per real minibatch):
  1. the inner learner (a SASRec, run functionally through `torch.func.functional_call`) is set, at the start of
     every outer epoch, to the full-data pretraining checkpoint of a random epoch in `trajectory_epochs`; within
     the epoch it persists (`persistent_learner=True`, the code): each outer step starts where the previous
     one's plain steps left it, because the code's plain steps update the learner in place and only the
     W-step window runs on a copy (`higher.innerloop_ctx(copy_initial_weights=True)`); the inner Adam state
     is fresh every outer step, as the code builds a new optimiser per outer step;
  2. RaT-BPTT (Feng et al., ICLR'24): draw c ~ U{0..K-W}; take c inner Adam steps on the summary with nothing
     recorded, then W differentiable Adam steps (`rat_bptt_unroll`), fixed cyclic summary minibatches;
     the inner loss is `summary_loss`: KL to the soft next item at the last position and at one random prefix
     end (the code's SASRec prefix augmentation);
  3. outer loss on the real minibatch: cross-entropy over all items for every next item, plus the MSE between
     the unrolled learner's last-layer hidden states and those of the SASRec pretrained on real data
     (feature alignment);
  4. G, U, T step: gradient-norm clip 1.0, Adam (seq_lr, weight decay 1e-4), cosine schedule, no warm-up.

Differences from the official code, each with its flag:
- `temperature` (default 1.0 = the code, which has none) divides the Tucker logits before the softmax.
- Inner optimiser: the code uses `higher`'s differentiable Adam; ours is the same update written out
  (`adam_step`), with sqrt(v + 1e-24) so a parameter whose gradient is exactly 0 (padding rows) has a finite
  second derivative. `inner_optimizer="sgd"` (not in the code) unrolls plain SGD instead: from a cold Adam state
  the first updates are ~lr*sign(g), whose derivative w.r.t. the summary nearly vanishes, so short unrolls
  (small K, as in the tests) learn far more slowly with Adam.
- Teacher features: the code's feature regeneration pass leaves dropout on; `teacher_features_train_mode=True`
  reproduces that, default False takes them in eval mode (deterministic, the kept best-epoch features).
- Real data (the outer loss, the pretraining and the full-data references): the code scores every RecBole
  training prefix once (right-padded, up to 50 items of history). Our real rows are the distill dataset's
  training windows, scored at every position in one causal pass: by default (`train_windows="all"` on the
  dataset) non-overlapping windows of `max_len` targets, so every training target is scored exactly once, but a
  target early in a later window sees only that window's earlier items (fewer than the prefix's 50). The flag
  `train_windows="last"` keeps each user's last window only (40% of ML-100K's training targets, 27% of
  ML-1M's).
- The SASRec learner is the family's registered `sasrec` (ReLU FFN, one dropout rate) at the code's sizes
  (hidden 32, 1 block, 1 head), not RecBole's (GELU, separate attention dropout 0.5).
- `persistent_learner=False` (not the code; Farzi's setting) restarts every outer step from a fresh draw of the
  learner (a new trajectory checkpoint, or a new random initialisation with `learner_init="random"`). The
  window's summary minibatches continue the cyclic order after the c plain steps; the code restarts both loops
  at minibatch 0 (the same when mu / inner_batch divides c, as for the ml-100k setting half the time).
- Evaluation targets are trained from scratch (a fresh target measures the summary alone); the code's
  evaluation keeps the pretrained item/position embeddings (its `from_pretrained` call is a no-op), which our
  board does not copy.

Planted-data acceptance (tests/distill/test_td3.py, runs in CI): at a test-sized budget (256 outer steps, K=20) the
SASRec trained on a 6 x 13 TD3 summary reaches NDCG@10 0.59-0.60 (128 steps gave 0.57 on one CPU, 0.48 on another), against
0.23 for popularity and 0.47 for the mean of random 6-user subsets (single draws range 0.30-0.61). Larger summary
learning rates (0.3), a sharper softmax (temperature 0.5) and unrolled SGD all did worse there (0.31, 0.48, 0.14).
"""
from __future__ import annotations

import optuna
import torch
from torch import nn

from contracts.registry import register_model
from lightning_modules.base_arguments import base_arguments
from lightning_modules.distill.bilevel import BilevelDistillation

class TuckerSummary(nn.Module):
    """The distilled data as a Tucker tensor: core [d1, d2, d], user factor [mu, d1], temporal factor [zeta, d2].

    The item factor V [|I|, d] is the learner's (frozen) item table, passed in; the dense mu x zeta x |I| tensor is
    only ever built for a minibatch of synthetic users.
    """

    def __init__(self, num_users: int, length: int, user_rank: int, time_rank: int, item_dim: int):
        super().__init__()
        self.core = nn.Parameter(torch.empty(user_rank, time_rank, item_dim))
        nn.init.kaiming_normal_(self.core)
        self.user_factor = nn.Parameter(torch.randn(num_users, user_rank) * 0.02)
        self.time_factor = nn.Parameter(torch.randn(length, time_rank) * 0.02)

    def logits(self, users: torch.Tensor, item_factor: torch.Tensor) -> torch.Tensor:
        """[b, zeta, |I|] = G x_1 U[users] x_2 T x_3 V (tensorly, PyTorch backend)."""
        import tensorly as tl  # the family's extra: imported where used, so that the other families import without it

        with tl.backend_context("pytorch"):
            return tl.tucker_to_tensor((self.core, [self.user_factor[users], self.time_factor, item_factor]))

    def floats(self) -> int:
        return sum(p.numel() for p in self.parameters())


@register_model("td3", family="distill")
class TD3(BilevelDistillation):
    def __init__(
        self,
        num_items: int,
        max_len: int,
        synthetic_users: int = 30,
        synthetic_len: int = 50,
        user_rank: int = 8,
        time_rank: int = 8,
        temperature: float = 1.0,
        inner_steps: int = 200,
        window: int = 40,
        inner_batch: int = 15,
        net_lr: float = 0.005,
        net_weight_decay: float = 5e-5,
        seq_lr: float = 0.03,
        seq_weight_decay: float = 1e-4,
        grad_clip: float = 1.0,
        feature_weight: float = 1.0,
        learner: str = "sasrec",
        learner_args: dict | None = None,
        learner_init: str = "trajectory",
        persistent_learner: bool = True,
        pretrain_epochs: int = 100,
        trajectory_epochs: tuple[int, int] = (5, 30),
        teacher_features_train_mode: bool = False,
        targets: tuple[str, ...] = ("sasrec", "gru4rec"),
        target_args: dict | None = None,
        target_steps: int = 200,
        prefix_augmentation_for: tuple[str, ...] = ("sasrec",),
        min_prefix: int = 5,
        reference_max_epochs: int = 200,
        reference_patience: int = 10,
        reference_batch_size: int = 128,
        eval_ks: tuple[int, ...] = (10, 20),
        inner_optimizer: str = "adam",
    ):
        super().__init__(**base_arguments(BilevelDistillation, locals()))

    def make_summary(self) -> nn.Module:
        h = self.hparams
        return TuckerSummary(h.synthetic_users, h.synthetic_len, h.user_rank, h.time_rank, self.teacher.embed_dim)

    @staticmethod
    def search_space(trial: optuna.Trial) -> dict:
        return {
            "seq_lr": trial.suggest_float("seq_lr", 3e-3, 1e-1, log=True),
            "net_lr": trial.suggest_float("net_lr", 1e-3, 2e-2, log=True),
            "user_rank": trial.suggest_categorical("user_rank", [4, 8, 16]),
            "time_rank": trial.suggest_categorical("time_rank", [4, 8, 16]),
            "feature_weight": trial.suggest_float("feature_weight", 0.1, 10.0, log=True),
            "temperature": trial.suggest_float("temperature", 0.3, 3.0, log=True),
        }
