"""How reinforcement learning lives in Lightning here: datasets whose items are rollouts collected, at the moment
they are iterated, with the LightningModule being trained.

- `RolloutDataset` (train): each item is a fresh rollout of `num_envs` episodes played by the current policy with
  exploration. Off-policy modules push it into their replay buffer, on-policy ones train on it directly. One epoch =
  `rollouts_per_epoch` items, so `max_epochs` x `rollouts_per_epoch` x `num_envs` x `max_cycles` = env steps.
- `EvaluationDataset` (val/test): items are greedy rollouts on fixed seeds (the same for every run and every
  epoch, so validation curves and runs are comparable); modules average their returns with torchmetrics.
The policy is `trainer.lightning_module`, so a validation or test run after loading the best checkpoint plays with
the checkpoint's weights. Env interaction stays in the main process (num_workers=0). The imitation-learning family
reuses this: its datamodule subclasses `RolloutDataModule` with its own env and its own `model_kwargs`.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset

from datamodules.base import PaperboardDataModule
from datamodules.marl.rollout import collect_rollout

VAL_SEED_BASE, TEST_SEED_BASE = 1_000_000, 2_000_000


class RolloutDataset(IterableDataset):
    """`length` rollouts collected with the datamodule's trainer's current module."""

    def __init__(self, datamodule: "RolloutDataModule", make_env, length: int, explore: bool,
                 fixed_seed_base: int | None = None, tag: str = "train"):
        self.datamodule, self.make_env, self.length, self.explore = datamodule, make_env, length, explore
        self.fixed_seed_base, self.tag = fixed_seed_base, tag
        self.env = None
        self.rng = np.random.default_rng(int(torch.initial_seed()) % 2**32)

    def __len__(self) -> int:
        return self.length

    def policy(self):
        trainer = self.datamodule.trainer
        if trainer is None or trainer.lightning_module is None:
            raise RuntimeError("rollout datasets need the trainer's module; use trainer.fit/validate/test(datamodule=...)")
        return trainer.lightning_module

    def __iter__(self):
        if self.env is None:
            self.env = self.make_env()
        module = self.policy()
        was_training = module.training
        module.eval()  # acting never uses dropout / batch statistics
        try:
            for i in range(self.length):
                E = self.env.num_envs
                if self.fixed_seed_base is None:
                    seeds = self.rng.integers(0, 2**31 - 1, E)
                else:
                    seeds = self.fixed_seed_base + np.arange(i * E, (i + 1) * E)
                rollout = collect_rollout(self.env, module, seeds, explore=self.explore, device=module.device)
                rollout["tag"] = self.tag
                module.train(was_training)
                yield rollout
                module.eval()
        finally:
            module.train(was_training)


def _identity(x):
    return x


class RolloutDataModule(PaperboardDataModule):
    """Base for environment "datasets": subclasses implement `make_env(split)` (split in train|val|test|test_resized)
    and `model_kwargs()`; test has two dataloaders: the training team (index 0) and the resized team (index 1)."""

    def __init__(self, num_envs: int = 8, rollouts_per_epoch: int = 10, eval_episodes: int = 32,
                 data_dir: str | None = None, batch_size: int = 1, eval_batch_size: int = 1, num_workers: int = 0):
        super().__init__(data_dir=data_dir, batch_size=batch_size, eval_batch_size=eval_batch_size, num_workers=0)
        if eval_episodes % num_envs:
            raise ValueError(f"eval_episodes ({eval_episodes}) must be a multiple of num_envs ({num_envs})")
        self.num_envs, self.rollouts_per_epoch, self.eval_episodes = num_envs, rollouts_per_epoch, eval_episodes

    def make_env(self, split: str):  # pragma: no cover
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        n_eval = self.eval_episodes // self.num_envs
        self.train_set = RolloutDataset(self, lambda: self.make_env("train"), self.rollouts_per_epoch, True)
        self.val_set = RolloutDataset(self, lambda: self.make_env("val"), n_eval, False, VAL_SEED_BASE, "val")
        self.test_set = RolloutDataset(self, lambda: self.make_env("test"), n_eval, False, TEST_SEED_BASE, "test")
        self.test_resized_set = RolloutDataset(self, lambda: self.make_env("test_resized"), n_eval, False,
                                               TEST_SEED_BASE, "test_resized")

    def _rollout_loader(self, dataset) -> DataLoader:
        return DataLoader(dataset, batch_size=None, collate_fn=_identity, num_workers=0)

    def train_dataloader(self):
        return self._rollout_loader(self.train_set)

    def val_dataloader(self):
        return self._rollout_loader(self.val_set)

    def test_dataloader(self):
        return [self._rollout_loader(self.test_set), self._rollout_loader(self.test_resized_set)]
