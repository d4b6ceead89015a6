"""Reference protocols and official behaviours: the HSTU split (no validation item), RecBole's prefix samples,
BERT4Rec's official training instances, SASRec's official residuals, and the vectorised sequence builder."""
import numpy as np
import pandas as pd
import pytest
import torch

import lightning_modules  # noqa: F401
from contracts.batch import seqrec as B
from contracts.registry import MODELS
from lightning_modules.seqrec.layers import causal_padding_mask
from tests.seqrec.test_datamodules import InMemory

# user 1: items 10..14 in time order, user 2: items 20..23 (given shuffled; ids become 1..9 in raw-id order)
RAW = {"user": np.array([1, 2, 1, 1, 2, 1, 2, 1, 2]), "item": np.array([11, 20, 10, 12, 21, 13, 22, 14, 23]),
       "time": np.array([2, 1, 1, 3, 2, 4, 3, 5, 4])}


def test_hstu_protocol_has_no_validation_item_and_tests_the_last():
    dm = InMemory(RAW, max_len=5, validation_item=False)
    dm.setup()
    train = dm.train_set.tensors
    # training part = all but the last item: user 1 -> 10,11,12,13 (ids 1..4), user 2 -> 20,21,22 (ids 6..8)
    assert train[B.INPUT_IDS].tolist() == [[0, 0, 1, 2, 3], [0, 0, 0, 6, 7]]
    assert train[B.TARGET_IDS].tolist() == [[0, 0, 2, 3, 4], [0, 0, 0, 7, 8]]
    test, val = dm.test_set.tensors, dm.val_set.tensors
    assert test[B.TARGET].tolist() == [5, 9]  # the last items, 14 and 23
    assert test[B.INPUT_IDS].tolist() == [[0, 1, 2, 3, 4], [0, 0, 6, 7, 8]]
    for key in test:  # one evaluation set, used for both
        assert torch.equal(val[key], test[key])
    # the second-last item is a training target, never held out
    assert (train[B.TARGET_IDS] == 4).any() and (train[B.TARGET_IDS] == 8).any()


def test_default_protocol_keeps_the_validation_item_out_of_training():
    dm = InMemory(RAW, max_len=5)
    dm.setup()
    assert dm.val_set.tensors[B.TARGET].tolist() == [4, 8]
    assert not (dm.train_set.tensors[B.TARGET_IDS] == 4).any()


def test_recbole_prefixes_one_sample_per_training_prefix():
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 15, size=20)
    users = np.repeat(np.arange(20), lengths)
    raw = {"user": users, "item": rng.integers(1, 40, size=len(users)), "time": np.arange(len(users))}
    dm = InMemory(raw, max_len=6, train_windows="prefixes")
    dm.setup()
    train = dm.train_set.tensors
    n_train = lengths - 2  # the validation and test items are held out
    assert len(dm.train_set) == int((n_train - 1).sum())
    # only the last position is a target, and every row's input ends right before it
    assert (train[B.TARGET_IDS][:, :-1] == B.PAD).all() and (train[B.TARGET_IDS][:, -1] != B.PAD).all()
    assert (train[B.INPUT_IDS][:, -1] != B.PAD).all()
    # user 0's rows are its prefixes 1, 2, ..., n_train-1 long (left-padded, truncated to 6)
    first = train[B.INPUT_IDS][: n_train[0] - 1]
    assert ((first != B.PAD).sum(1)).tolist() == [min(t, 6) for t in range(1, n_train[0])]


def test_sequences_match_a_pandas_groupby_reference():
    rng = np.random.default_rng(1)
    n = 3000
    raw = {"user": rng.integers(0, 200, size=n) * 7 + 3, "item": rng.integers(0, 500, size=n) * 3,
           "time": rng.integers(0, 50, size=n)}  # many same-time ties
    got = InMemory(raw, min_seq_len=5).sequences_from_interactions(raw)
    frame = pd.DataFrame(raw).reset_index()
    frame = frame.sort_values(["user", "time", "index"])
    frame = frame[frame.groupby("user")["item"].transform("size") >= 5]
    raw_items = np.unique(frame["item"])
    assert np.array_equal(got["raw_item_ids"], raw_items)
    assert np.array_equal(got["items"], np.searchsorted(raw_items, frame["item"].to_numpy()) + 1)
    assert np.array_equal(got["times"], frame["time"].to_numpy())
    assert np.array_equal(np.diff(got["offsets"]), frame.groupby("user").size().to_numpy())


def bert(**extra):
    torch.manual_seed(0)
    return MODELS.get("bert4rec").cls(num_items=60, max_len=30, embed_dim=16, num_blocks=1, **extra)


def test_bert4rec_one_mask_last_copy_per_sequence():
    model = bert(dupe_factor=3)
    lengths = torch.tensor([2, 5, 13, 20])
    inputs = torch.zeros(4, 20, dtype=torch.long)
    for row, n in enumerate(lengths):
        inputs[row, 20 - n:] = torch.randint(1, 61, (int(n),))
    targets = torch.roll(inputs, -1, 1)  # only the last column is read (the last target)
    targets[:, -1] = torch.randint(1, 61, (4,))
    originals, masked, tgt = model.training_instances({B.INPUT_IDS: inputs, B.TARGET_IDS: targets},
                                                      torch.Generator().manual_seed(0))
    assert originals.shape[0] == 4 * (3 + 1)
    is_mask = masked == model.mask_token
    # exactly one row per sequence has only its last item masked, and it is the appended copy
    last_only = is_mask[:, -1] & (is_mask.sum(1) == 1)
    tail = slice(4 * 3, None)
    assert last_only[tail].all() and torch.equal(originals[tail], model.training_sequences(
        {B.INPUT_IDS: inputs, B.TARGET_IDS: targets}))
    assert torch.equal(tgt[tail][:, -1], targets[:, -1]) and (tgt[tail][:, :-1] == B.PAD).all()
    without = bert(dupe_factor=3, mask_last_copy=False)
    assert without.training_instances({B.INPUT_IDS: inputs, B.TARGET_IDS: targets})[0].shape[0] == 4 * 3


@pytest.mark.parametrize("mask_prob,max_predictions", [(0.2, 40), (0.6, 3), (0.5, 40)])
def test_bert4rec_masks_round_len_times_p_capped(mask_prob, max_predictions):
    model = bert(mask_prob=mask_prob, max_predictions=max_predictions)
    lengths = torch.arange(1, 31)
    seqs = torch.zeros(30, 30, dtype=torch.long)
    for row, n in enumerate(lengths):
        seqs[row, 30 - n:] = torch.arange(1, int(n) + 1)
    for seed in range(3):
        masked, targets = model.mask_items(seqs, torch.Generator().manual_seed(seed))
        counts = (masked == model.mask_token).sum(1)
        expected = [min(max_predictions, max(1, round(int(n) * mask_prob))) for n in lengths]  # Python's round
        assert counts.tolist() == expected
        assert ((targets != B.PAD) == (masked == model.mask_token)).all()
        assert ((masked == model.mask_token) <= (seqs != B.PAD)).all()  # padding is never masked
        assert torch.equal(targets[targets != B.PAD], seqs[targets != B.PAD])
    # Bernoulli masking (the flag for the earlier behaviour) does not fix the count
    bern = bert(mask_prob=0.5, masking="bernoulli")
    counts = torch.stack([(bern.mask_items(seqs, torch.Generator().manual_seed(s))[0] == bern.mask_token).sum(1)
                          for s in range(5)])
    assert (counts[:, -1] != counts[0, -1]).any()


def test_bert4rec_defaults_are_the_official_ml1m_config():
    hp = bert().hparams
    assert (hp.dropout, hp.masking, hp.mask_last_copy, hp.max_predictions) == (0.2, "count", True, 40)
    with pytest.raises(ValueError, match="masking must be one of"):
        bert(masking="bernouli")


def test_sasrec_default_block_adds_the_normalised_query():
    torch.manual_seed(0)
    model = MODELS.get("sasrec").cls(num_items=30, max_len=10, embed_dim=16, num_blocks=2, num_heads=2).eval()
    input_ids = torch.randint(1, 31, (3, 10))
    input_ids[0, :4] = 0
    keep = (input_ids != 0).unsqueeze(-1)
    mask = causal_padding_mask(input_ids)
    with torch.no_grad():
        x = model.input(input_ids)
        for block in model.blocks:  # the official code: Q = LN(x); x = Q + Attn(Q, x); z = LN(x); z + FFN(z)
            q = block.attention_norm(x)
            x = q + block.attention(q, x, mask)
            z = block.ffn_norm(x)
            x = (z + block.ffn(z)) * keep
        assert torch.allclose(model(input_ids), model.final_norm(x), atol=1e-6)
        old = MODELS.get("sasrec").cls(num_items=30, max_len=10, embed_dim=16, num_blocks=2, num_heads=2,
                                       residual_from_normalized=False).eval()
        old.load_state_dict(model.state_dict())  # same parameters and keys, different wiring
        assert not torch.allclose(old(input_ids), model(input_ids), atol=1e-4)
