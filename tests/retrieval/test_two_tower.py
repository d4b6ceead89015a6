"""The retrieval datamodule's split and side information, the two-tower model's evaluation, and ESANS learning a
planted catalogue better than uniform sampling."""
from __future__ import annotations

import lightning.pytorch as pl
import numpy as np
import pytest
import torch

import datamodules.retrieval  # noqa: F401  (registers the datasets)
import lightning_modules.retrieval  # noqa: F401  (registers the models)
from contracts.batch import retrieval as R
from contracts.registry import DATASETS, MODELS
from datamodules.retrieval.base import behaviour_factors, training_targets
from tests.conftest import fast_trainer


def test_every_training_target_is_a_sample_and_val_test_are_the_last_two():
    offsets = np.array([0, 3, 8])  # users with 3 and 5 items
    user, position = training_targets(offsets)
    assert user.tolist() == [1, 1] and position.tolist() == [4, 5]  # user 0 has only train item 0 (no target)
    dm = DATASETS.get("synthetic-retrieval").build(num_users=50, num_groups=3, subgroups=2, items_per_subgroup=3,
                                                   max_len=4)
    dm.setup()
    data = dm._prepared()
    lengths = np.diff(data["offsets"])
    assert len(dm.train_set) == int((lengths - 3).sum())
    test = dm.test_set.__getitems__(list(range(50)))
    assert torch.equal(test[R.TARGET], torch.from_numpy(data["items"][data["offsets"][1:] - 1]))
    assert torch.equal(test[R.HISTORY][:, -1], torch.from_numpy(data["items"][data["offsets"][1:] - 2]))


def test_behaviour_factors_read_only_the_training_part():
    rng = np.random.default_rng(0)
    offsets = np.arange(0, 6 * 40 + 1, 6)
    items = rng.integers(1, 21, size=240)
    base = behaviour_factors(items, offsets, 20, dim=4, window=2)
    changed = items.copy()
    changed[offsets[1:] - 1] = rng.integers(1, 21, size=40)  # new test items
    changed[offsets[1:] - 2] = rng.integers(1, 21, size=40)  # new validation items
    assert np.array_equal(base, behaviour_factors(changed, offsets, 20, dim=4, window=2))


def test_evaluation_filters_exactly_the_items_seen_before_the_target():
    model = MODELS.get("uns").build(num_items=6, num_attributes=1, text_dim=1, behaviour_dim=1, embed_dim=4)
    model.user_starts = torch.tensor([0, 4])
    model.seen_items = torch.tensor([1, 2, 3, 4, 5, 6, 1])  # user 0: 1 2 3 4 | user 1: 5 6 1
    mask = model._seen_mask(torch.tensor([1, 0]), torch.tensor([6, 2]), 7)
    assert mask.tolist() == [[True, False, False, False, False, True, True],
                             [True, True, True, False, False, False, False]]


def test_features_of_another_shape_are_one_clear_error():
    model = MODELS.get("esans").build(num_items=6, num_attributes=2, text_dim=3, behaviour_dim=2)
    features = {"attributes": torch.zeros(7, 5), "text": torch.zeros(7, 3), "behaviour": torch.zeros(7, 2),
                "count": torch.ones(7), "seen_items": torch.zeros(0, dtype=torch.long),
                "user_starts": torch.zeros(0, dtype=torch.long)}
    with pytest.raises(ValueError, match="model_kwargs"):
        model.attach_item_features(features)


def _fit(name: str, **overrides) -> float:
    pl.seed_everything(0, verbose=False)
    dm = DATASETS.get("synthetic-retrieval").build(num_users=500, batch_size=128)
    dm.setup()
    model = MODELS.get(name).build(**dm.model_kwargs(), embed_dim=32, num_negatives=8, eval_ks=(10,), **overrides)
    trainer = fast_trainer(max_epochs=5)
    trainer.fit(model, datamodule=dm)
    return trainer.validate(model, datamodule=dm, verbose=False)[0]["val/ndcg@10"]


def test_esans_learns_a_planted_catalogue_better_than_uniform_negatives():
    """Users like one subgroup; other subgroups of the same group share its features (false-negative-prone,
    semantically close). Uniform negatives seldom come from the same group, MSAC's close negatives do."""
    uniform, esans = _fit("uns"), _fit("esans")
    random_ndcg = 0.03  # about 10 relevant-looking items of 600 would rank a random target this high
    assert uniform > random_ndcg * 10
    assert esans > uniform + 0.05


def test_items_missing_from_the_item_table_get_empty_fields_and_a_table_of_other_items_is_an_error(tmp_path):
    import pandas as pd

    from datamodules.base import DataError
    from datamodules.retrieval.datasets import _rows_for

    table = pd.DataFrame({"title": ["a", "b"]}, index=[1, 2])
    rows = _rows_for(table, np.array([2, 7, 1]), tmp_path / "items")
    assert rows["title"].tolist() == ["b", "", "a"]
    with pytest.raises(DataError, match="none of the interactions' items"):
        _rows_for(table, np.array([8, 9]), tmp_path / "items")
