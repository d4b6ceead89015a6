"""HSTU, FuXi-alpha, BERT4Rec and the Llama/GPT decoders: the relative-bias buckets by hand, causality
with time channels, ablation flags that change exactly what they claim, BERT4Rec's Cloze task without leaks, a clear
error when a time channel meets data without time, and learning the planted pattern beyond popularity."""
import math

import pytest
import torch

import lightning_modules  # noqa: F401
from contracts.batch import seqrec as B
from contracts.registry import MODELS
from datamodules.seqrec.synthetic import SyntheticSeqRec
from lightning_modules.seqrec.layers import RelativeBucketedTimeAndPositionBias, RotaryEmbedding, log_time_buckets
from tests.conftest import fast_trainer

NEW_MODELS = ["hstu", "fuxi_alpha", "bert4rec", "llama_rec", "gpt_rec"]
CAUSAL_VARIANTS = [
    ("hstu", {}), ("hstu", {"attention_activation": "softmax"}), ("hstu", {"u_gating": False}),
    ("hstu", {"position_bias": False, "time_bias": False}), ("fuxi_alpha", {}),
    ("fuxi_alpha", {"ffn_single_stage": True, "semantic_channel": False}), ("llama_rec", {}), ("gpt_rec", {}),
]
SMALL = dict(embed_dim=16, num_blocks=2, num_heads=2, dropout=0.0)
HEADS = dict(qk_dim=8, v_dim=8)


def build(name, num_items=40, max_len=10, **overrides):
    cls = MODELS.get(name).cls
    extra = HEADS if name in ("hstu", "fuxi_alpha") else {}
    return cls(num_items=num_items, max_len=max_len, **{**SMALL, **extra, **overrides})


def random_batch(n=6, length=10, num_items=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, num_items + 1, (n, length), generator=g)
    ids[0, :4] = 0  # one left-padded row
    times = torch.cumsum(torch.randint(1, 5000, (n, length + 1), generator=g), 1)
    times[0, :4] = 0
    return {B.INPUT_IDS: ids, B.TIMESTAMPS: times[:, :-1], B.NEXT_TIMESTAMPS: times[:, 1:]}


def params(model) -> int:
    return sum(p.numel() for p in model.parameters())


# ----- relative attention bias --------------------------------------------------------------------------------
def test_time_buckets_by_hand():
    # bucket = floor(ln(max(|dt|, 1)) / 0.301), clamped to [0, 128]
    dt = torch.tensor([0, 1, 2, -2, 10, 3600, 86400, 2**62])
    expected = [0, 0, math.floor(math.log(2) / 0.301), math.floor(math.log(2) / 0.301), 7, 27, 37, 128]
    assert expected[2] == 2 and math.floor(math.log(3600) / 0.301) == 27 and math.floor(math.log(86400) / 0.301) == 37
    assert log_time_buckets(dt).tolist() == expected


def test_time_bias_reads_the_next_timestamp_against_each_key():
    bias = RelativeBucketedTimeAndPositionBias(num_positions=4, position=False)
    with torch.no_grad():
        bias.time_weight.copy_(torch.arange(129, dtype=torch.float))  # w_ts[b] = b: the bias shows the bucket
    t = torch.tensor([[100, 110, 3700]])
    nxt = torch.tensor([[110, 3700, 90100]])  # t_{i+1}
    _, ts = bias(3, t, nxt)
    expected = [[log_time_buckets(torch.tensor(int(nxt[0, i] - t[0, j]))).item() for j in range(3)] for i in range(3)]
    assert ts[0].tolist() == [[float(v) for v in row] for row in expected]
    assert expected[0][0] == math.floor(math.log(10) / 0.301)  # t_1 - t_0 = 10 s -> bucket 7
    assert expected[2][0] == math.floor(math.log(90000) / 0.301)


def test_position_bias_matches_the_official_pad_and_repeat_construction():
    n = 6
    bias = RelativeBucketedTimeAndPositionBias(num_positions=n, time=False)
    w = bias.position_weight.detach()
    # generative-recommenders RelativeBucketedTimeAndPositionBasedBias.forward, position part
    t = torch.nn.functional.pad(w[: 2 * n - 1], [0, n]).repeat(n)
    t = t[..., :-n].reshape(1, n, 3 * n - 2)
    r = (2 * n - 1) // 2
    official = t[:, :, r:-r]
    ours, _ = bias(n)
    torch.testing.assert_close(ours, official)
    assert ours[0, 3, 1] == w[n - 1 + 1 - 3]  # key 2 steps back: offset -2


def test_rotary_scores_depend_only_on_the_offset():
    rope = RotaryEmbedding(8)
    q = torch.randn(1, 1, 1, 8).expand(1, 1, 6, 8)  # the same query and key at every position
    scores = rope(q) @ rope(q).transpose(-1, -2)
    torch.testing.assert_close(scores[0, 0, 1, 3], scores[0, 0, 2, 4])
    torch.testing.assert_close(scores[0, 0, 0, 0], scores[0, 0, 5, 5])


# ----- causality, timestamps included ----------------------------------------------------------------------------
@pytest.mark.parametrize("name,flags", CAUSAL_VARIANTS, ids=lambda v: str(v))
def test_future_items_and_times_do_not_move_the_past(name, flags):
    """Position i may read items <= i, their times and its own query time t_{i+1}; nothing later."""
    torch.manual_seed(0)
    model = build(name, **flags).eval()
    batch = random_batch()
    cut = 6
    perturbed = {k: v.clone() for k, v in batch.items()}
    perturbed[B.INPUT_IDS][:, cut:] = torch.randint(1, 41, perturbed[B.INPUT_IDS][:, cut:].shape)
    perturbed[B.TIMESTAMPS][:, cut:] += 10**6
    perturbed[B.NEXT_TIMESTAMPS][:, cut:] += 10**7
    with torch.no_grad():
        before, after = model.user_vectors(batch), model.user_vectors(perturbed)
    torch.testing.assert_close(before[:, :cut], after[:, :cut])
    assert not torch.allclose(before[:, cut:], after[:, cut:])


def test_bert4rec_masked_positions_do_not_see_the_item_they_hide():
    torch.manual_seed(0)
    model = build("bert4rec").eval()
    batch = random_batch()
    sequences = torch.cat([batch[B.INPUT_IDS], batch[B.INPUT_IDS][:, -1:]], 1)
    masked, targets = model.mask_items(sequences, torch.Generator().manual_seed(1))
    chosen = targets != B.PAD
    assert chosen.any(1).all()  # every row trains
    assert (masked[chosen] == model.mask_token).all() and (targets[chosen] == sequences[chosen]).all()
    assert (masked[~chosen] == sequences[~chosen]).all()
    # the model only ever receives `masked`, in which the hidden items are gone: changing them changes nothing
    other = sequences.clone()
    other[chosen] = (other[chosen] % 40) + 1
    remasked = other.masked_fill(chosen, model.mask_token)
    assert torch.equal(remasked, masked)
    # evaluation: the [MASK] query appended after the history; a padded history slot stays invisible
    with torch.no_grad():
        v1 = model.last_user_vector(batch)
        batch2 = {**batch, B.INPUT_IDS: batch[B.INPUT_IDS].clone()}
        batch2[B.INPUT_IDS][1, -1] = (batch2[B.INPUT_IDS][1, -1] % 40) + 1
        v2 = model.last_user_vector(batch2)
    torch.testing.assert_close(v1[[0, 2, 3, 4, 5]], v2[[0, 2, 3, 4, 5]])  # rows are independent
    assert not torch.allclose(v1[1], v2[1])  # and the history is read


def test_bert4rec_mask_token_has_its_own_embedding():
    model = build("bert4rec")
    assert model.item_embedding.num_embeddings == 41 and model.mask_token == 41
    ids = torch.tensor([[0, 3, 41]])
    assert model(ids).shape == (1, 3, 16)


# ----- ablation flags do what they claim ---------------------------------------------------------------------------
def test_hstu_ablation_flags_change_exactly_their_parameters():
    d, h, dv, blocks, n = 16, 2, 8, 2, 10 + 11  # attention_length = max_len + 11
    full = params(build("hstu"))
    assert full - params(build("hstu", time_bias=False)) == blocks * 129
    assert full - params(build("hstu", position_bias=False)) == blocks * (2 * n - 1)
    assert full - params(build("hstu", position_bias=False, time_bias=False)) == blocks * (2 * n - 1 + 129)
    assert full - params(build("hstu", u_gating=False)) == blocks * d * h * dv  # W_uvqk loses its U columns
    assert params(build("hstu", attention_activation="softmax")) == full


def test_hstu_ablation_flags_change_the_outputs_they_claim():
    batch = random_batch()
    shifted = {**batch, B.TIMESTAMPS: batch[B.TIMESTAMPS] * 3, B.NEXT_TIMESTAMPS: batch[B.NEXT_TIMESTAMPS] * 3}

    def out(flags, b):
        torch.manual_seed(0)
        model = build("hstu", **flags).eval()
        with torch.no_grad():
            return model.user_vectors(b)

    assert not torch.allclose(out({}, batch), out({}, shifted))  # the time bias reads the timestamps
    torch.testing.assert_close(out({"time_bias": False}, batch), out({"time_bias": False}, shifted))
    assert not torch.allclose(out({}, batch), out({"attention_activation": "softmax"}, batch))
    # without any bias the model does not need timestamps at all
    no_time = {B.INPUT_IDS: batch[B.INPUT_IDS]}
    torch.testing.assert_close(out({"time_bias": False, "position_bias": False}, batch),
                               out({"time_bias": False, "position_bias": False}, no_time))


def test_fuxi_ablation_flags_change_exactly_their_parameters():
    d, h, dqk, dv, blocks, n = 16, 2, 8, 8, 2, 21
    full = params(build("fuxi_alpha"))
    # one channel fewer: its table, its third of U (d x h dv) and of W_0's input (h dv x d)
    assert full - params(build("fuxi_alpha", temporal_channel=False)) == blocks * (129 + 2 * d * h * dv)
    assert full - params(build("fuxi_alpha", positional_channel=False)) == blocks * (2 * n - 1 + 2 * d * h * dv)
    assert full - params(build("fuxi_alpha", semantic_channel=False)) == blocks * (2 * d * h * dqk + 2 * d * h * dv)
    assert full - params(build("fuxi_alpha", ffn_single_stage=True)) == blocks * 3 * d * d  # SwiGLU W1, W2, W3
    assert params(build("fuxi_alpha", ffn_multiply=4)) - full == blocks * 3 * d * d * 3
    assert params(build("hstu")) < full  # U 3x wide and the MFFN make FuXi larger than HSTU at equal sizes


def test_fuxi_channel_flags_change_the_outputs_they_claim():
    batch = random_batch()
    shifted = {**batch, B.TIMESTAMPS: batch[B.TIMESTAMPS] * 3, B.NEXT_TIMESTAMPS: batch[B.NEXT_TIMESTAMPS] * 3}

    def out(flags, b):
        torch.manual_seed(0)
        model = build("fuxi_alpha", **flags).eval()
        with torch.no_grad():
            return model.user_vectors(b)

    assert not torch.allclose(out({}, batch), out({}, shifted))
    torch.testing.assert_close(out({"temporal_channel": False}, batch), out({"temporal_channel": False}, shifted))
    # single stage: the block output is exactly stage 1, H = W_0(AMS) + X
    torch.manual_seed(0)
    model = build("fuxi_alpha", ffn_single_stage=True, num_blocks=1).eval()
    block = model.blocks[0]
    with torch.no_grad():
        x = model.input(batch[B.INPUT_IDS])
        from lightning_modules.seqrec.layers import causal_valid_mask
        mask = causal_valid_mask(batch[B.INPUT_IDS])
        ams = block.attention(x, mask, batch[B.TIMESTAMPS], batch[B.NEXT_TIMESTAMPS])
        torch.testing.assert_close(block(x, mask, batch[B.TIMESTAMPS], batch[B.NEXT_TIMESTAMPS]),
                                   block.ffn.projection(ams) + x)


def test_time_channels_without_timestamps_fail_clearly():
    batch = random_batch()
    no_time = {B.INPUT_IDS: batch[B.INPUT_IDS]}
    for name, off in (("hstu", {"time_bias": False}), ("fuxi_alpha", {"temporal_channel": False})):
        with pytest.raises(ValueError, match="no timestamps"):
            build(name).user_vectors(no_time)
        assert build(name, **off).user_vectors(no_time).shape == (6, 10, 16)


def test_fuxi_needs_a_channel():
    with pytest.raises(ValueError, match="at least one attention channel"):
        build("fuxi_alpha", semantic_channel=False, positional_channel=False, temporal_channel=False)


# ----- learning ----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def planted():
    dm = SyntheticSeqRec(num_users=300, num_items=100, max_len=12, min_length=8, max_length=16, seed=1, batch_size=64)
    dm.setup()
    return dm


def _fit_test(name, dm, epochs, **kwargs):
    torch.manual_seed(0)
    model = MODELS.get(name).cls(**dm.model_kwargs(), **kwargs)
    trainer = fast_trainer(max_epochs=epochs)
    trainer.fit(model, datamodule=dm)
    return trainer.test(model, datamodule=dm, verbose=False)[0]


@pytest.mark.parametrize("name", NEW_MODELS)
def test_beats_popularity_with_its_own_recipe(name, planted):
    """Each model with its paper's loss (sampled softmax + L2 norm for the HSTU family, Cloze CE for BERT4Rec)."""
    pop = _fit_test("pop", planted, 1, eval_ks=(10,))
    extra = HEADS if name in ("hstu", "fuxi_alpha") else {}
    overrides = {"mask_prob": 0.3, "dupe_factor": 1} if name == "bert4rec" else {"num_negatives": 32}
    epochs = 30 if name == "bert4rec" else 8  # the Cloze task learns from ~30% of positions per step: more steps
    learned = _fit_test(name, planted, epochs, **{**SMALL, **extra, **overrides, "num_blocks": 1, "num_heads": 1,
                                             "lr": 5e-3, "eval_ks": (10,)})
    assert learned["test/hr@10"] > pop["test/hr@10"] + 0.2, (learned, pop)
