"""HeterRec (reconstruction) and the seqrec side-information path: causality at the token and item levels, LMP with
one step = the family's next-item loss, a planted attribute pattern that an ID-only model cannot learn in the same
budget, the feature table of the datamodules (alignment counts), and checkpoints of lazily built feature layers."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import lightning.pytorch as pl

from contracts.batch import seqrec as B
from datamodules.seqrec.base import encode_fields
from datamodules.seqrec.synthetic import SyntheticAttributeSeqRec
from lightning_modules.seqrec.base import SeqRecModule
from lightning_modules.seqrec.fdsa import FDSA
from lightning_modules.seqrec.heterrec import HeterRec, hierarchical_token_mask
from lightning_modules.seqrec.sasrec import SASRec
from tests.conftest import fast_trainer


def tiny_data(**kwargs) -> SyntheticAttributeSeqRec:
    args = dict(num_users=60, num_categories=3, num_brands=3, items_per_cell=2, min_length=6, max_length=10, max_len=8)
    dm = SyntheticAttributeSeqRec(**{**args, **kwargs})
    dm.prepare_data()
    dm.setup()
    return dm


def attached(model, dm):
    model.side.attach(dm.item_features())
    return model.eval()


# ----- causality -----------------------------------------------------------------------------------------------------
def test_token_mask_full_within_an_item_causal_across_items():
    ids = torch.tensor([[0, 3, 5]])  # one padded item, then two items; K = 2 tokens each
    allowed = hierarchical_token_mask(ids, 2)[0, 0]
    # token (item 1, type 0) sees both tokens of item 1, nothing of item 2, nothing of the padded item 0
    assert allowed[2].tolist() == [False, False, True, True, False, False]
    assert allowed[5].tolist() == [False, False, True, True, True, True]
    causal = hierarchical_token_mask(ids, 2, within_item="causal")[0, 0]
    assert causal[2].tolist() == [False, False, True, False, False, False]


@pytest.mark.parametrize("hct", [True, False])
@pytest.mark.parametrize("htfl", [True, False])
def test_a_later_item_never_changes_earlier_outputs(hct, htfl):
    dm = tiny_data()
    torch.manual_seed(0)
    model = attached(HeterRec(num_items=dm.num_items, max_len=8, embed_dim=16, num_heads=2, token_blocks=1,
                              item_blocks=1, hct=hct, htfl=htfl), dm)
    ids = dm.val_set.__getitems__(list(range(4)))[B.INPUT_IDS]
    changed = ids.clone()
    changed[:, 5:] = (changed[:, 5:] % dm.num_items) + 1  # other items (other attributes) from position 5 on
    with torch.no_grad():
        before, after = model(ids), model(changed)
    torch.testing.assert_close(after[:, :5], before[:, :5], rtol=0, atol=1e-6)
    assert not torch.allclose(after[:, 5:], before[:, 5:])


@pytest.mark.parametrize("within_item, sees_own_side", [("full", True), ("causal", False)])
def test_the_tokens_of_one_item_see_each_other(within_item, sees_own_side):
    """The ID token's output at the last item moves with that item's own side information iff attention within an
    item is full (aggregation "id" reads the ID token, which comes first in its item)."""
    dm = tiny_data()
    torch.manual_seed(0)
    model = attached(HeterRec(num_items=dm.num_items, max_len=8, embed_dim=16, num_heads=2, token_blocks=1,
                              item_blocks=1, within_item=within_item, aggregation="id"), dm)
    ids = dm.val_set.__getitems__([0])[B.INPUT_IDS]
    with torch.no_grad():
        before = model(ids)
        last = int(ids[0, -1])
        model.side.item_text[last] += 1.0  # only the last item's text token changes
        after = model(ids)
    torch.testing.assert_close(after[:, :-1], before[:, :-1], rtol=0, atol=1e-6)
    assert (not torch.allclose(after[:, -1], before[:, -1])) == sees_own_side


# ----- LMP -----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("loss", ["sampled_softmax", "ce"])
def test_lmp_with_one_step_is_the_base_next_item_loss(loss):
    dm = tiny_data()
    torch.manual_seed(0)
    model = attached(HeterRec(num_items=dm.num_items, max_len=8, embed_dim=16, token_blocks=1, item_blocks=1,
                              lmp_steps=1, lmp_weights=(1.0,), loss=loss, num_negatives=8), dm)
    batch = dm.train_set.__getitems__(list(range(16)))
    user = model.user_vectors(batch)
    torch.manual_seed(1)
    lmp = model.multi_step_loss(user, batch)
    torch.manual_seed(1)
    base = SeqRecModule.sequence_loss(model, user, batch)
    assert torch.equal(lmp, base)


def test_lmp_weights_each_step_against_the_item_that_many_steps_ahead():
    dm = tiny_data()
    torch.manual_seed(0)
    model = attached(HeterRec(num_items=dm.num_items, max_len=8, embed_dim=16, token_blocks=1, item_blocks=1,
                              lmp_steps=2, lmp_weights=(1.0, 0.3), lmp_step_heads=False, loss="ce"), dm)
    batch = dm.train_set.__getitems__(list(range(16)))
    user = model.user_vectors(batch)
    targets = batch[B.TARGET_IDS]
    second = torch.cat([targets[:, 1:], torch.zeros_like(targets[:, :1])], dim=1)  # item i+2; none past the window
    expected = (model.sequence_loss(user, batch)
                + 0.3 * model.sequence_loss(user, {**batch, B.TARGET_IDS: second}))
    torch.testing.assert_close(model.multi_step_loss(user, batch), expected)
    with pytest.raises(ValueError, match="one weight per step"):
        HeterRec(num_items=5, lmp_steps=3, lmp_weights=(1.0,))


# ----- the planted attribute pattern -----------------------------------------------------------------------------
def test_heterrec_learns_an_attribute_pattern_that_an_id_only_model_cannot():
    """Next item = a random item of the cell (succ[category], same brand): 960 items, each seen a few times in
    training, so item ids alone carry little; the attributes carry the whole rule."""
    dm = SyntheticAttributeSeqRec(num_users=300, num_categories=8, num_brands=8, items_per_cell=15, min_length=8,
                                  max_length=12, max_len=8, batch_size=64)
    dm.prepare_data()
    dm.setup()
    common = dict(num_items=dm.num_items, max_len=8, embed_dim=32, lr=5e-3, eval_ks=(10,))
    scores = {}
    for name, model in (("heterrec", lambda: HeterRec(**common, num_heads=2, token_blocks=1, item_blocks=1,
                                                      dropout=0.1, num_negatives=64)),
                        ("id_only", lambda: HeterRec(**common, num_heads=2, token_blocks=1, item_blocks=1,
                                                     dropout=0.1, num_negatives=64, candidate_features=False))):
        pl.seed_everything(0, verbose=False)
        built = model()
        if name == "id_only":
            built.setup = lambda stage: None  # never receives the feature table: ids alone
        trainer = fast_trainer(max_epochs=12, limit_val_batches=0)
        trainer.fit(built, datamodule=dm)
        scores[name] = trainer.test(built, datamodule=dm, verbose=False)[0]["test/ndcg@10"]
    # a random ranking gets NDCG@10 ~0.004 here; ranking the 15 items of the right cell first, ~0.27
    assert scores["heterrec"] > 0.06, scores
    assert scores["heterrec"] > 3 * scores["id_only"], scores


# ----- side information in the datamodules -------------------------------------------------------------------------
def test_encode_fields_gives_each_field_its_own_id_range_and_slots():
    tokens, slot_field, sizes = encode_fields({"genre": [["b", "a"], [], ["a", "a"]], "year": [["1990"], ["1995"], []]},
                                              3)
    assert sizes.tolist() == [2, 2] and slot_field.tolist() == [0, 0, 1]
    assert tokens.tolist() == [[0, 0, 0], [2, 1, 3], [0, 0, 4], [1, 0, 0]]


def test_feature_tokens_average_each_fields_slots_and_zero_a_missing_field():
    from lightning_modules.seqrec.side_information import ItemSideInformation

    tokens, slot_field, sizes = encode_fields({"genre": [["b", "a"], [], ["a", "a"]], "year": [["1990"], ["1995"], []]},
                                              3)
    side = ItemSideInformation(num_items=3, dim=4)
    side.attach({B.ITEM_TOKENS: torch.from_numpy(tokens), B.SLOT_FIELD: torch.from_numpy(slot_field),
                 B.FIELD_SIZES: torch.from_numpy(sizes), B.ITEM_TEXT: torch.zeros(4, 0)})
    table = side.field_embedding.weight
    vectors, present = side.feature_tokens(torch.tensor([[1, 2, 3]]))
    assert vectors.shape == (1, 3, 2, 4) and present.tolist() == [[[True, True], [False, True], [True, False]]]
    torch.testing.assert_close(vectors[0, 0, 0], (table[2] + table[1]) / 2)  # item 1: genres b and a
    torch.testing.assert_close(vectors[0, 1, 0], torch.zeros(4))  # item 2 has no genre
    torch.testing.assert_close(vectors[0, 2, 0], table[1])  # "a" listed twice: one token in the first slot
    torch.testing.assert_close(vectors[0, 1, 1], table[4])


def test_synthetic_table_counts_the_items_that_lack_attributes():
    dm = tiny_data(attribute_missing=0.3, items_per_cell=4)
    features = dm.item_features()
    assert set(features) == set(B.ITEM_FEATURE_KEYS)
    tokens = features[B.ITEM_TOKENS]
    assert tokens.shape == (dm.num_items + 1, 2) and not tokens[0].any() and not features[B.ITEM_TEXT][0].any()
    planted = dm.catalogue()["missing"][dm._sequences()["raw_item_ids"]]
    assert dm.describe()["items_lacking_attributes"] == int(planted.sum()) > 0
    assert ((tokens[1:] == 0).all(1).numpy() == planted).all()


def test_features_off_leave_batches_and_hash_alone():
    on, off = tiny_data(), tiny_data(item_features=False)
    assert off.item_features() is None and "item_features" not in off.describe()
    assert on.data_hash != off.data_hash
    for key, value in off.train_set.tensors.items():
        assert torch.equal(value, on.train_set.tensors[key])


def test_movielens_feature_table(shared_data):
    from datamodules.seqrec.movielens import MovieLens100K

    plain = MovieLens100K(data_dir=str(shared_data))
    plain.setup()
    assert plain.data_hash == "3b974803b5ec4bcc"  # the committed seqrec-ml100k records' hash: unchanged
    dm = MovieLens100K(data_dir=str(shared_data), item_features=True, text_encoder="tfidf")
    dm.setup()
    f, facts = dm.item_features(), dm.describe()
    assert facts["item_fields"] == ["genre", "release_year"] and f[B.FIELD_SIZES][0] == 19
    assert facts["items_lacking_attributes"] == 0 and facts["items_missing_from_item_file"] == 0
    assert f[B.ITEM_TOKENS].shape == (1683, int(f[B.SLOT_FIELD].numel())) and not f[B.ITEM_TOKENS][0].any()
    assert facts["items_lacking_text"] == 0 and f[B.ITEM_TEXT].shape == (1683, 64)


def test_the_data_hash_follows_the_item_texts_not_the_encoders_last_bits(shared_data, tmp_path, monkeypatch):
    # the same texts encoded on another CPU differ in the last bits: that must not make the data look different
    import dataclasses

    import datamodules.text as text
    from datamodules.seqrec.movielens import MovieLens100K

    real_embed, real_metadata = text.embed_texts, MovieLens100K.item_metadata

    def build(cache: str, noise: float = 0.0, retitle: bool = False):
        def embed(texts, encoder, cache_dir, *args, **kwargs):
            emb, used = real_embed(texts, encoder, cache_dir, *args, **kwargs)
            return emb + np.float32(noise) * np.random.default_rng(0).standard_normal(emb.shape, np.float32), used

        def metadata(self, raw_item_ids):
            meta = real_metadata(self, raw_item_ids)
            return dataclasses.replace(meta, texts=[t + " (re-titled)" for t in meta.texts]) if retitle else meta

        monkeypatch.setattr(text, "embed_texts", embed)
        monkeypatch.setattr(MovieLens100K, "item_metadata", metadata)
        monkeypatch.setenv("PAPERBOARD_CACHE", str(tmp_path / cache))
        dm = MovieLens100K(data_dir=str(shared_data), item_features=True, text_encoder="tfidf")
        dm.setup()
        return dm

    base, noisy = build("a"), build("b", noise=1e-6)
    assert not torch.equal(base.item_features()[B.ITEM_TEXT], noisy.item_features()[B.ITEM_TEXT])
    assert noisy.data_hash == base.data_hash
    assert build("c", retitle=True).data_hash != base.data_hash  # other texts: other data


def test_beauty_alignment_covers_every_item_and_counts_the_rest(shared_data):
    from datamodules.seqrec.amazon import AmazonBeauty

    dm = AmazonBeauty(data_dir=str(shared_data), item_features=True)
    dm.setup()
    facts = dm.describe()
    assert dm.data_hash != "ce37c3739dea7222"  # the committed seqrec-beauty records' hash (features off)
    assert facts["items_with_ambiguous_alignment"] == 13  # items sharing their whole user set with another
    assert facts["items_lacking_attributes"] == 6  # ambiguous items whose candidates share no attribute
    assert facts["item_fields"] == ["brand", "category"] and facts["text_dim"] == 0


# ----- models read the table lazily, and their checkpoints load --------------------------------------------------
@pytest.mark.parametrize("build", [
    lambda n: HeterRec(num_items=n, max_len=8, embed_dim=8, num_heads=1, token_blocks=1, item_blocks=1,
                       num_negatives=4),
    lambda n: FDSA(num_items=n, max_len=8, embed_dim=8, num_blocks=1),
    lambda n: SASRec(num_items=n, max_len=8, embed_dim=8, num_blocks=1, item_features=True),
], ids=["heterrec", "fdsa", "sasrec_attrs"])
def test_feature_models_train_and_round_trip_through_a_checkpoint(build, tmp_path):
    dm = tiny_data()
    pl.seed_everything(0, verbose=False)
    model = build(dm.num_items)
    trainer = fast_trainer(max_epochs=1, limit_train_batches=1, limit_val_batches=0, default_root_dir=tmp_path)
    trainer.fit(model, datamodule=dm)
    assert model.side.attached and model.side.field_embedding.weight.grad is not None
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    loaded = type(model).load_from_checkpoint(tmp_path / "m.ckpt", weights_only=True)
    batch = dm.val_set.__getitems__(list(range(4)))
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval().score_all(batch), model.score_all(batch), rtol=0, atol=0)
