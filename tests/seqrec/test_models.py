"""Every registered seqrec model: causal outputs, learning the planted pattern beyond popularity, and a
checkpoint round trip. New models are tested the moment they are registered."""
import inspect

import pytest
import torch

import lightning_modules  # noqa: F401
from contracts.batch import seqrec as B
from contracts.registry import MODELS
from datamodules.seqrec.synthetic import SyntheticSeqRec
from tests.conftest import fast_trainer

SEQREC = MODELS.names(family="seqrec")
LEARNERS = [m for m in SEQREC if m != "pop"]


def small_kwargs(cls, num_items: int, max_len: int) -> dict:
    """Small, quick settings for any seqrec model: only keys its constructor takes."""
    wanted = {"num_items": num_items, "max_len": max_len, "embed_dim": 32, "dropout": 0.1, "loss": "ce",
              "lr": 5e-3, "num_blocks": 2, "num_heads": 2}
    params = inspect.signature(cls.__init__).parameters
    return {k: v for k, v in wanted.items() if k in params}


@pytest.fixture(scope="module")
def planted():
    dm = SyntheticSeqRec(num_users=600, num_items=80, max_len=16, seed=3)
    dm.setup()
    return dm


def test_registry_holds_the_core_models():
    assert {"sasrec", "gru4rec", "pop"} <= set(SEQREC)


@pytest.mark.parametrize("name", LEARNERS)
def test_outputs_are_causal(name, planted):
    """Changing the items after position t must not change the output at positions <= t."""
    cls = MODELS.get(name).cls
    if getattr(cls, "bidirectional", False):
        pytest.skip(f"{name} is bidirectional by design (it sees the whole sequence in training)")
    torch.manual_seed(0)
    model = cls(**small_kwargs(cls, planted.num_items, planted.max_len)).eval()
    batch = planted.train_set.__getitems__(list(range(8)))
    t = planted.max_len - 5
    perturbed = {k: v.clone() for k, v in batch.items()}
    perturbed[B.INPUT_IDS][:, t + 1:] = torch.randint(1, planted.num_items + 1, (8, planted.max_len - t - 1))
    with torch.no_grad():
        before, after = model.user_vectors(batch), model.user_vectors(perturbed)
    torch.testing.assert_close(before[:, : t + 1], after[:, : t + 1])
    assert not torch.allclose(before[:, t + 1:], after[:, t + 1:])  # the perturbation does reach the future


def _train_and_test(name, dm, epochs):
    cls = MODELS.get(name).cls
    torch.manual_seed(0)
    model = cls(**small_kwargs(cls, dm.num_items, dm.max_len))
    trainer = fast_trainer(max_epochs=epochs)
    trainer.fit(model, datamodule=dm)
    return model, trainer.test(model, datamodule=dm, verbose=False)[0]


@pytest.mark.parametrize("name", LEARNERS)
def test_learns_the_planted_pattern_beyond_popularity(name, planted):
    _, pop = _train_and_test("pop", planted, 1)
    _, learned = _train_and_test(name, planted, 12)
    assert learned["test/ndcg@10"] > pop["test/ndcg@10"] + 0.15, (learned, pop)


def test_checkpoint_round_trip_gives_the_same_predictions(planted, tmp_path):
    model, _ = _train_and_test("sasrec", planted, 1)
    trainer = fast_trainer(max_epochs=1)
    trainer.strategy.connect(model)
    path = tmp_path / "sasrec.ckpt"
    trainer.save_checkpoint(path)
    loaded = MODELS.get("sasrec").cls.load_from_checkpoint(path).eval()
    model.eval()
    batch = planted.test_set.__getitems__(list(range(16)))
    with torch.no_grad():
        torch.testing.assert_close(model.score_all(batch), loaded.score_all(batch))
    assert loaded.hparams.embed_dim == model.hparams.embed_dim


@pytest.mark.parametrize("loss", ["ce", "sampled_softmax", "bce"])
def test_every_loss_trains_sasrec(loss, planted):
    torch.manual_seed(0)
    kwargs = small_kwargs(MODELS.get("sasrec").cls, planted.num_items, planted.max_len)
    model = MODELS.get("sasrec").cls(**{**kwargs, "loss": loss, "num_negatives": 16})
    batch = planted.train_set.__getitems__(list(range(64)))
    optimiser = model.configure_optimizers()
    first = None
    for _ in range(30):
        loss_value = model.sequence_loss(model.user_vectors(batch), batch)
        optimiser.zero_grad()
        loss_value.backward()
        optimiser.step()
        first = first if first is not None else loss_value.item()
    assert loss_value.item() < first * 0.8


def test_bce_negatives_avoid_the_users_items():
    model = MODELS.get("sasrec").cls(num_items=50, max_len=6)
    inputs = torch.tensor([[0, 1, 2, 3, 4, 5]] * 200)
    targets = torch.tensor([[0, 2, 3, 4, 5, 6]] * 200)
    negatives = model._negatives_outside_sequence(inputs, targets)
    assert not torch.isin(negatives, torch.arange(1, 7)).any()
    # a catalogue barely larger than the sequence leaves two valid negatives, and every draw lands on them
    crowded = MODELS.get("sasrec").cls(num_items=8, max_len=6)
    assert torch.isin(crowded._negatives_outside_sequence(inputs, targets), torch.tensor([7, 8])).all()


def test_unknown_loss_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown loss 'softmaxx'"):
        MODELS.get("sasrec").cls(num_items=10, loss="softmaxx")


def test_popularity_stops_after_its_one_counting_epoch_with_the_same_scores(planted):
    model, once = _train_and_test("pop", planted, 1)
    capped, again = _train_and_test("pop", planted, 5)
    assert capped.trainer.current_epoch == 1  # a cap of 5 epochs would only repeat the evaluation
    assert once == again and torch.equal(model.counts, capped.counts)
    targets = planted.train_set.__getitems__(list(range(len(planted.train_set))))[B.TARGET_IDS]
    assert capped.counts[1:].sum() == targets.ne(0).sum()  # every training target counted exactly once
