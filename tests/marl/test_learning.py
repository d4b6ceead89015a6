"""Every algorithm beats a uniformly random team on a tiny scenario within a short budget, and the whole
family runs through the Lightning loop (fit -> validate -> test) with the board's metrics.

Tiny scenario: mpe2 simple_spread with one agent and one landmark, 10-step episodes (reward = minus the distance
to the landmark): 3 epochs x 5 rollouts x 32 envs = 4,800 env steps. Returns are compared on the same 64 greedy
test episodes (fixed seeds) as the random team.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import lightning.pytorch as pl

import datamodules  # noqa: F401
import lightning_modules  # noqa: F401
from datamodules.marl.base import TEST_SEED_BASE
from datamodules.registry import DATASETS
from lightning_modules.marl.batch import RandomPolicy, collect_rollout
from lightning_modules.registry import MODELS
from tests.conftest import fast_trainer

TINY = dict(scenario_args={"N": 1, "max_cycles": 10}, num_envs=32, rollouts_per_epoch=5, eval_episodes=64)
Q_FAST = dict(epsilon_anneal_steps=1500, train_iters=8, target_update_interval=64, lr=1e-3)
SETTINGS = {"ippo": dict(lr=2e-3), "mappo": dict(lr=2e-3), "vdn": Q_FAST, "qmix": Q_FAST, "roma": Q_FAST,
            "cord": dict(Q_FAST, hidden_dim=32, attention_dim=32),
            "cord_reward": dict(Q_FAST, hidden_dim=32, attention_dim=32)}


def _train_and_compare(name: str, epochs: int = 3):
    pl.seed_everything(0, verbose=False)
    dm = DATASETS.get("mpe-simple-spread").cls(**TINY)
    dm.setup()
    env = type(dm.make_env("test"))(dm.config, 64)
    seeds = TEST_SEED_BASE + np.arange(64)
    random_return = collect_rollout(env, RandomPolicy(), seeds, explore=False)["return"].mean().item()
    model = MODELS.get(name).cls(**dm.model_kwargs(), **SETTINGS[name])
    fast_trainer(max_epochs=epochs, limit_val_batches=0).fit(model, datamodule=dm)
    trained_return = collect_rollout(env, model, seeds, explore=False)["return"].mean().item()
    return random_return, trained_return, model


def test_vdn_learns_fast():
    random_return, trained_return, model = _train_and_compare("vdn")
    assert int(model.env_steps) == 3 * 5 * 32 * 10
    assert trained_return > random_return + 0.5, (random_return, trained_return)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ippo", "mappo", "qmix", "roma", "cord", "cord_reward"])
def test_algorithm_beats_random(name):
    random_return, trained_return, _ = _train_and_compare(name)
    assert trained_return > random_return + 0.5, (random_return, trained_return)


@pytest.mark.parametrize("name", MODELS.names(family="marl"))
def test_registry_smoke(name):
    """Each registered model: one short epoch on collect_treasure (numpy backend), then val and both test sets."""
    pl.seed_everything(0, verbose=False)
    dm = DATASETS.get("mpe-collect-treasure").cls(
        scenario_args={"num_collectors": 2, "num_deposits": 2, "num_treasures": 2, "max_cycles": 5}, backend="numpy",
        num_envs=4, rollouts_per_epoch=2, eval_episodes=4)
    dm.setup()
    kwargs = {} if name in ("ippo", "mappo") else {"batch_size": 4, "train_iters": 1}
    if name.startswith("cord"):
        kwargs.update(hidden_dim=16, attention_dim=16)
    model = MODELS.get(name).cls(**dm.model_kwargs(), **kwargs)
    trainer = fast_trainer(max_epochs=1)
    trainer.fit(model, datamodule=dm)
    assert "val/return" in trainer.callback_metrics
    test = trainer.test(model, datamodule=dm, verbose=False)[0]
    assert {"test/return", "test/return_team_size", "test/env_steps", "test/env_steps_per_s"} <= set(test)
    assert test["test/env_steps"] == 2 * 4 * 5
    assert all(np.isfinite(v) for v in test.values())
    assert callable(type(model).search_space)
