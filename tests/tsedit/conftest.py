"""A tiny trained diffusion backbone on the synthetic data, trained once per test session (~15 s on one core)."""
from __future__ import annotations

import pytest
import torch

SYNTH = dict(num_train=1024, num_val=64, num_test=128, window=32, segment_length=(6, 10), num_val_tasks=16,
             num_test_tasks=32, batch_size=64)
BACKBONE = dict(hidden_dim=32, num_blocks=2, diffusion_steps=100, sampling_steps=20, encoder_steps=30, diversity_tasks=8)


@pytest.fixture(scope="session")
def synthetic_dm():
    from datamodules.tsedit.synthetic import SyntheticTSEdit

    dm = SyntheticTSEdit(**SYNTH)
    dm.setup()
    return dm


@pytest.fixture(scope="session")
def trained_state(synthetic_dm):
    """State dict of a CocktailEdit backbone (every method has the same parameters) after 300 steps."""
    import lightning.pytorch as pl

    from lightning_modules.tsedit.cocktail_edit import CocktailEdit
    from tests.conftest import fast_trainer

    pl.seed_everything(0, verbose=False)
    model = CocktailEdit(**synthetic_dm.model_kwargs(), **BACKBONE, lr=2e-3, ema_decay=0.98, share_backbone=False)
    fast_trainer(max_steps=300, limit_val_batches=0).fit(model, datamodule=synthetic_dm)
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.fixture
def make_model(synthetic_dm, trained_state):
    """make_model(name, **args) -> that method on the trained backbone, in eval mode."""
    from contracts.registry import MODELS

    def build(name: str, **args):
        model = MODELS.get(name).cls(**synthetic_dm.model_kwargs(), **{**BACKBONE, **args})
        model.load_state_dict(trained_state)
        return model.eval()

    return build


@pytest.fixture
def tasks(synthetic_dm):
    """The 32 frozen test tasks as one batch."""
    return synthetic_dm.test_set.__getitems__(list(range(len(synthetic_dm.test_set))))


def without_constraints(batch: dict) -> dict:
    out = dict(batch)
    for key in ("anchor_conf", "seg_active", "edit_mask"):
        out[key] = torch.zeros_like(batch[key])
    return out
