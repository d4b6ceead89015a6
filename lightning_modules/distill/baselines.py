"""Baselines of the distill boards, each a real implementation of what it names.

- `farzi`: Farzi Data (Sachdeva, Wu, Dong, McAuley; ICLR 2024, arXiv 2310.09983): a latent summary
  mu x zeta x d_f times a decoder d_f x |I|, softmax over items, optimised by the same bi-level loop with the
  real-data loss only (no feature alignment) and the inner learner from a new random initialisation every
  outer step (`learner_init="random"`, `persistent_learner=False`), as Farzi does; the TD3 code's commented-out alternative (d_f = 32) is the same parameterisation. It differs
  from TD3 only in the summary's structure and the outer objective (the bi-level loop is the family's, in
  distill/bilevel.py): TD3's "w/o Tucker" point of comparison.
  Difference from Farzi's code: Farzi back-propagates through the whole inner Adam run with its
  memory-efficient reverse-mode Adam; here the same RaT-BPTT window as TD3 (`inner_steps`, `window`).
- `random_subset`: mu real users drawn uniformly (seeded), each kept as their last zeta training items.
- `longest_subset`: the heuristic "head users": the mu users with the longest training sequences.
- `full_data`: the upper bound, every real training sequence; targets are trained exactly as the reference.
Subsets enter target training as one-hot distributions through the same routine as distilled summaries, so only
the data differs between methods.
"""
from __future__ import annotations

import optuna
import torch
import torch.nn.functional as F
from torch import nn

from contracts.batch import distill as B
from contracts.registry import register_model
from lightning_modules.base_arguments import base_arguments
from lightning_modules.distill.base import DistillModule
from lightning_modules.distill.bilevel import BilevelDistillation


class LatentSummary(nn.Module):
    """Farzi's summary: latent [mu, zeta, d_f] and decoder [d_f, |I|]; logits = latent @ decoder."""

    def __init__(self, num_users: int, length: int, latent_dim: int, num_items: int):
        super().__init__()
        self.latent = nn.Parameter(torch.randn(num_users, length, latent_dim) * 0.02)
        self.decoder = nn.Parameter(torch.empty(latent_dim, num_items))
        nn.init.kaiming_normal_(self.decoder)

    def logits(self, users: torch.Tensor, item_factor=None) -> torch.Tensor:
        return self.latent[users] @ self.decoder

    def floats(self) -> int:
        return sum(p.numel() for p in self.parameters())


@register_model("farzi", family="distill")
class Farzi(BilevelDistillation):
    def __init__(self, num_items: int, max_len: int, synthetic_users: int = 30, synthetic_len: int = 50,
                 latent_dim: int = 32, temperature: float = 1.0, inner_steps: int = 200, window: int = 40,
                 inner_batch: int = 15, net_lr: float = 0.005, net_weight_decay: float = 5e-5, seq_lr: float = 0.03,
                 seq_weight_decay: float = 1e-4, grad_clip: float = 1.0, feature_weight: float = 0.0,
                 learner: str = "sasrec", learner_args: dict | None = None, learner_init: str = "random",
                 persistent_learner: bool = False, pretrain_epochs: int = 100,
                 trajectory_epochs: tuple[int, int] = (5, 30),
                 teacher_features_train_mode: bool = False, targets: tuple[str, ...] = ("sasrec", "gru4rec"),
                 target_args: dict | None = None, target_steps: int = 200,
                 prefix_augmentation_for: tuple[str, ...] = ("sasrec",), min_prefix: int = 5,
                 reference_max_epochs: int = 200, reference_patience: int = 10, reference_batch_size: int = 128,
                 eval_ks: tuple[int, ...] = (10, 20), inner_optimizer: str = "adam"):
        self._latent_dim = latent_dim  # make_summary runs inside the loop's __init__
        super().__init__(**base_arguments(BilevelDistillation, locals()))

    def make_summary(self) -> nn.Module:
        return LatentSummary(self.hparams.synthetic_users, self.hparams.synthetic_len, self._latent_dim,
                             self.num_items)

    def needs_item_factor(self) -> bool:
        return False  # the decoder is Farzi's own item side

    @staticmethod
    def search_space(trial: optuna.Trial) -> dict:
        return {
            "seq_lr": trial.suggest_float("seq_lr", 3e-3, 1e-1, log=True),
            "net_lr": trial.suggest_float("net_lr", 1e-3, 2e-2, log=True),
            "latent_dim": trial.suggest_categorical("latent_dim", [16, 32, 64]),
        }


class RealSubset(DistillModule):
    """A summary made of real users' last `synthetic_len` training items (one-hot), chosen by `select`."""

    def __init__(self, num_items: int, max_len: int, synthetic_users: int = 30, synthetic_len: int = 50,
                 targets: tuple[str, ...] = ("sasrec", "gru4rec"), target_args: dict | None = None,
                 target_steps: int = 200, inner_batch: int = 15, net_lr: float = 0.005,
                 net_weight_decay: float = 5e-5, prefix_augmentation_for: tuple[str, ...] = ("sasrec",),
                 min_prefix: int = 5, reference_max_epochs: int = 200, reference_patience: int = 10,
                 reference_batch_size: int = 128, eval_ks: tuple[int, ...] = (10, 20),
                 inner_optimizer: str = "adam"):
        super().__init__(**base_arguments(DistillModule, locals()))
        self.save_hyperparameters()
        self.num_summary_users, self.summary_len = synthetic_users, synthetic_len
        self.register_buffer("subset_items", torch.zeros(synthetic_users, synthetic_len, dtype=torch.long))
        self.register_buffer("subset_users", torch.zeros(synthetic_users, dtype=torch.long))

    def select(self, sequences: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def build_summary(self) -> None:
        data = self.real_data()
        if getattr(data, "user_sequences", None) is None:
            raise ValueError(f"{type(self).__name__} draws real users from the datamodule's `user_sequences` (each "
                             f"user's last training items); {type(data).__name__} has none: use a distill dataset")
        # Each user's last summary_len training items (left-padded, also where the data's rows are shorter than the
        # summary), however the training rows are windowed.
        sequences = data.user_sequences[:, -self.summary_len:].to(self.subset_items.device)
        sequences = F.pad(sequences, (self.summary_len - sequences.shape[1], 0), value=B.PAD)
        lengths = data.train_lengths
        if self.num_summary_users > len(sequences):
            raise ValueError(f"asked for {self.num_summary_users} users, the data has {len(sequences)}")
        users = self.select(sequences, torch.as_tensor(lengths))
        self.subset_users.copy_(users)
        self.subset_items.copy_(sequences[users])

    def summary_distributions(self, users: torch.Tensor):
        ids = self.subset_items[users]
        return F.one_hot(ids, self.num_items + 1)[..., 1:].float(), ids != B.PAD

    def summary_floats(self) -> int:
        return int((self.subset_items != B.PAD).sum())


@register_model("random_subset", family="distill")
class RandomSubset(RealSubset):
    def select(self, sequences, lengths):
        generator = torch.Generator().manual_seed(torch.initial_seed() % 2**63)
        return torch.randperm(len(sequences), generator=generator)[: self.num_summary_users].sort().values

    @staticmethod
    def search_space(trial: optuna.Trial) -> dict:
        return {"net_lr": trial.suggest_float("net_lr", 1e-3, 2e-2, log=True)}


@register_model("longest_subset", family="distill")
class LongestSubset(RealSubset):
    def select(self, sequences, lengths):
        # Longest training sequences first; ties broken by the number of distinct items in the kept window.
        distinct = (torch.sort(sequences, dim=1).values.diff(dim=1) != 0).sum(1)
        order = torch.argsort(lengths.float() * (sequences.shape[1] + 1) + distinct.float(), descending=True,
                              stable=True)
        return order[: self.num_summary_users].sort().values

    @staticmethod
    def search_space(trial: optuna.Trial) -> dict:
        return {"net_lr": trial.suggest_float("net_lr", 1e-3, 2e-2, log=True)}


@register_model("full_data", family="distill")
class FullData(DistillModule):
    """The upper bound: each target trained on all real training sequences (the reference itself)."""

    def __init__(self, num_items: int, max_len: int, targets: tuple[str, ...] = ("sasrec", "gru4rec"),
                 target_args: dict | None = None, reference_max_epochs: int = 200, reference_patience: int = 10,
                 reference_batch_size: int = 128, eval_ks: tuple[int, ...] = (10, 20)):
        super().__init__(num_items, max_len, targets, target_args, reference_max_epochs=reference_max_epochs,
                         reference_patience=reference_patience, reference_batch_size=reference_batch_size,
                         eval_ks=eval_ks)
        self.save_hyperparameters()
        self.num_summary_users, self.summary_len = 0, max_len + 1
        self._floats = 0

    def build_summary(self) -> None:
        # Stored item ids: every training target plus each user's first item (the rows' target windows never
        # overlap, and every user's first training item is an input only).
        data = self.real_data()
        self._floats = int((data.train_set.tensors[B.TARGET_IDS] != B.PAD).sum()) + int(data.num_users)

    def train_on_summary(self, name: str):
        return self.train_reference(name)

    def summary_floats(self) -> int:
        return self._floats

    @staticmethod
    def search_space(trial: optuna.Trial) -> dict:
        return {}
