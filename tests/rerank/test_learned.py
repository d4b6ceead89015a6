"""The learned rerankers learn what the ranker cannot see: on the synthetic lists the held-out items favour one
genre that GMF, trained on earlier interactions, knows nothing about."""
import lightning.pytorch as pl
import pytest
import torch

import lightning_modules  # noqa: F401
from contracts.registry import MODELS
from datamodules.rerank import SyntheticRerank
from tests.conftest import fast_trainer

_DATA = {}


def planted():
    if "dm" not in _DATA:
        dm = SyntheticRerank(num_users=300, num_items=60, num_genres=4, sequence_len=14, trend=3.0, train_lists=3,
                             history_len=5, num_candidates=20, ranker_epochs=5, batch_size=64)
        dm.prepare_data()
        dm.setup("fit")
        _DATA["dm"] = dm
    return _DATA["dm"]


def test_ndcg(name: str, epochs: int, **sizes) -> float:
    dm = planted()
    pl.seed_everything(0, verbose=False)
    model = MODELS.get(name).build(**dm.model_kwargs(), **sizes)
    trainer = fast_trainer(max_epochs=epochs, limit_val_batches=0)
    trainer.fit(model, datamodule=dm)
    return trainer.test(model, datamodule=dm, verbose=False)[0]["test/ndcg@10"]


test_ndcg.__test__ = False  # a helper, not a test


@pytest.mark.parametrize("name,sizes", [("prm", dict(d_model=16, num_blocks=1, num_heads=2, lr=3e-3)),
                                        ("dlcm", dict(hidden_dim=16, lr=3e-3))])
def test_learned_rerankers_beat_the_rankers_order_on_a_planted_signal(name, sizes):
    gmf = test_ndcg("gmf", 1)
    learned = test_ndcg(name, 12, **sizes)
    assert learned > gmf + 0.03, (name, learned, gmf)


def test_gmf_order_is_the_identity_and_the_data_lists_are_in_gmf_order():
    dm = planted()
    batch = dm.test_set.__getitems__(list(range(16)))
    model = MODELS.get("gmf").build(**dm.model_kwargs())
    assert torch.equal(model.rerank(batch), torch.arange(20).expand(16, 20))
    assert (batch["scores"][:, 1:] <= batch["scores"][:, :-1]).all()
