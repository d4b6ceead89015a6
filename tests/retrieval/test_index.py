"""The approximate index: its ranks are the exact evaluation's ranks when it returns everything, it finds the exact
top-k on a small catalogue, and a model evaluated through it reports Recall@K beside the exact one."""
from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch

import datamodules.retrieval  # noqa: F401  (registers the datasets)
import lightning_modules.retrieval  # noqa: F401  (registers the models)
from contracts.registry import DATASETS, MODELS
from lightning_modules.retrieval.index import ItemIndex, approx_rank, index_recall, kept, top_candidates
from lightning_modules.seqrec.metrics import target_rank
from tests.conftest import fast_trainer

pytest.importorskip("faiss")


def test_a_full_candidate_list_gives_the_exact_rank_with_seen_items_removed():
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(64, 31, generator=g)
    target = torch.randint(1, 31, (64,), generator=g)
    exclude = torch.rand(64, 31, generator=g) < 0.3
    exclude[:, 0] = True
    ids = scores.masked_fill(torch.arange(31) == 0, float("-inf")).argsort(1, descending=True)[:, :30]
    assert torch.equal(approx_rank(ids, exclude, target, miss=99), target_rank(scores, target, exclude))
    short = ids[:, :5]  # a target the index did not return is a miss
    rank = approx_rank(short, exclude, target, miss=99)
    assert ((rank == 99) == ~(short == target.unsqueeze(1)).any(1)).all()
    exact_top = scores.masked_fill(exclude, float("-inf")).topk(10, dim=1).indices
    assert torch.equal(top_candidates(ids, kept(ids, exclude), 10), exact_top)
    assert torch.equal(index_recall(exact_top, exact_top, 10), torch.ones(64))


@pytest.mark.parametrize("kind, kwargs", [("ivf", {"nlist": 8, "nprobe": 8}), ("hnsw", {"ef_search": 200})])
def test_the_index_finds_the_exact_top_k(kind, kwargs):
    g = torch.Generator().manual_seed(1)
    items = torch.nn.functional.normalize(torch.randn(501, 16, generator=g), dim=1)
    users = torch.nn.functional.normalize(torch.randn(40, 16, generator=g), dim=1)
    found = ItemIndex(kind, items, **kwargs).search(users, 10)
    exact = (users @ items[1:].T).topk(10, dim=1).indices + 1
    recall = index_recall(found, exact, 10).mean()
    assert recall >= (1.0 if kind == "ivf" else 0.95), recall  # ivf probing every cell is exhaustive


def test_a_model_evaluated_through_the_index_reports_both_recalls():
    pl.seed_everything(0, verbose=False)
    dm = DATASETS.get("synthetic-retrieval").build(num_users=200, batch_size=128)
    dm.setup()
    model = MODELS.get("mns").build(**dm.model_kwargs(), embed_dim=16, num_negatives=8, eval_ks=(10,),
                                     eval_index="ivf", index_nlist=4, index_nprobe=4)
    trainer = fast_trainer(max_epochs=1)
    trainer.fit(model, datamodule=dm)
    out = trainer.test(model, datamodule=dm, verbose=False)[0]
    assert out["test/index_recall@10"] == pytest.approx(1.0)
    assert out["test/ann_recall@10"] == pytest.approx(out["test/recall@10"])
    with pytest.raises(ValueError, match="eval_index"):
        MODELS.get("mns").build(**dm.model_kwargs(), eval_index="lsh")
