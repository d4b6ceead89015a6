"""The fast seqrec kernels compute what the reference code computes: same loss and same gradients on tiny batches
(padding rows, accidental hits and repeated negatives included), and the shared-negatives estimator scores what it
says. Speed itself is measured by benchmarks/perf/seqrec_speed.py, never here."""
import pytest
import torch

import lightning_modules  # noqa: F401
from contracts.batch import seqrec as B
from contracts.registry import MODELS
from lightning_modules.layers import reference_kernels
from lightning_modules.seqrec.base import _row_dots, _scatter_rows, fused_item_softmax

TRANSFORMERS = ["sasrec", "hstu", "fuxi_alpha", "llama_rec", "gpt_rec", "gru4rec", "bert4rec"]


def tiny_batch(num_items=30, rows=5, length=12, seed=0):
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, num_items + 1, (rows, length + 1), generator=gen)
    ids[0, :7] = 0  # a short (left-padded) history
    ids[1, :-1] = 0  # a history of one item: one position with a target
    times = torch.randint(1, 10_000, (rows, length + 1), generator=gen).cumsum(1) * (ids != 0)
    return {B.INPUT_IDS: ids[:, :-1], B.TARGET_IDS: ids[:, 1:], B.TIMESTAMPS: times[:, :-1],
            B.NEXT_TIMESTAMPS: times[:, 1:]}


def loss_and_grads(model, batch, reference: bool):
    model.zero_grad()
    with reference_kernels(reference):
        torch.manual_seed(7)  # the same negatives on both paths
        loss = model.sequence_loss(model.user_vectors(batch), batch)
        loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def assert_same(fast, ref):
    torch.testing.assert_close(fast[0], ref[0], rtol=1e-5, atol=1e-6)
    assert fast[1].keys() == ref[1].keys()
    scale = max(g.abs().max().item() for g in ref[1].values())
    for name, grad in ref[1].items():  # tolerance relative to the largest gradient (some are zero up to rounding)
        torch.testing.assert_close(fast[1][name], grad, rtol=1e-4, atol=1e-5 * scale, msg=name)


@pytest.mark.parametrize("name", TRANSFORMERS)
@pytest.mark.parametrize("loss", ["ce", "sampled_softmax"])
def test_fast_loss_equals_the_reference(name, loss):
    cls = MODELS.get(name).cls
    torch.manual_seed(0)
    kwargs = {"num_items": 30, "max_len": 12, "loss": loss, "num_negatives": 40, "temperature": 0.05,
              "l2_norm": loss == "sampled_softmax"}
    if name == "bert4rec":
        kwargs["dropout"] = 0.0
    model = cls(**kwargs).eval()  # eval: no dropout, so both paths see the same network
    batch = tiny_batch()
    assert_same(loss_and_grads(model, batch, False), loss_and_grads(model, batch, True))


def test_kernel_pieces_match_naive_sums_with_repeated_columns():
    gen = torch.Generator().manual_seed(0)
    u, table = torch.randn(37, 6, generator=gen), torch.randn(5, 6, generator=gen)
    columns = torch.randint(0, 5, (37, 9), generator=gen)  # 9 draws from 5 rows: repeats in every row
    weights = torch.randn(37, 9, generator=gen)
    torch.testing.assert_close(_row_dots(u, table, columns), torch.einsum("nd,nmd->nm", u, table[columns]))
    naive = torch.zeros(5, 6).index_add_(0, columns.reshape(-1), (weights.unsqueeze(-1) * u.unsqueeze(1)).reshape(-1, 6))
    torch.testing.assert_close(_scatter_rows(u, columns, weights, 5), naive)


@pytest.mark.parametrize("negatives", [None, 40])
def test_fused_loss_does_not_depend_on_the_chunk_size(monkeypatch, negatives):
    """CPU chunks (cache-sized) and GPU chunks (one per batch) give the same loss and gradients."""
    from lightning_modules.seqrec import base

    gen = torch.Generator().manual_seed(2)
    u0, table0 = torch.randn(300, 8, generator=gen), torch.randn(31, 8, generator=gen)
    pos = torch.randint(1, 31, (300,), generator=gen)
    neg = None if negatives is None else torch.randint(1, 31, (300, negatives), generator=gen)
    results = []
    for floats in (1, 1 << 28):  # many chunks of the smallest size, then a single chunk
        monkeypatch.setattr(base, "_chunk_floats", lambda device, cpu_floats, floats=floats: floats)
        u, table = u0.clone().requires_grad_(), table0.clone().requires_grad_()
        loss = fused_item_softmax(u, table, pos, neg, 0.1)
        loss.backward()
        results.append((loss.detach(), u.grad, table.grad))
    for many, one in zip(*results):
        torch.testing.assert_close(many, one, rtol=1e-5, atol=1e-6)


def test_fused_loss_without_gradients_and_no_double_backward():
    gen = torch.Generator().manual_seed(1)
    u = torch.randn(20, 4, generator=gen, requires_grad=True)
    table = torch.randn(9, 4, generator=gen, requires_grad=True)
    pos = torch.randint(1, 9, (20,), generator=gen)
    logits = u @ table.T
    logits[:, 0] = float("-inf")
    expected = torch.nn.functional.cross_entropy(logits / 0.5, pos)
    with torch.no_grad():
        torch.testing.assert_close(fused_item_softmax(u, table, pos, None, 0.5), expected)
    loss = fused_item_softmax(u, table, pos, None, 0.5)
    (grad_u,) = torch.autograd.grad(loss, u, create_graph=True)
    with pytest.raises(RuntimeError):  # the kernel's gradient is not itself differentiable: say so, never be wrong
        grad_u.sum().backward()


def test_shared_negatives_score_one_set_for_the_whole_batch():
    torch.manual_seed(0)
    model = MODELS.get("hstu").cls(num_items=6, max_len=5, num_negatives=4, shared_negatives=True,
                                   time_bias=False, embed_dim=8, qk_dim=8, v_dim=8).eval()
    u = torch.nn.functional.normalize(torch.randn(10, 8), dim=-1)
    pos = torch.randint(1, 7, (10,))
    torch.manual_seed(3)
    loss = model._shared_negatives_loss(u, pos)
    torch.manual_seed(3)
    neg = torch.randint(1, 7, (4,))  # the draw the loss makes: one row of negatives
    table = model.item_vectors()
    logits = torch.cat([(u * table[pos]).sum(-1, keepdim=True), u @ table[neg].T], dim=1) / model.temperature
    logits[:, 1:][neg.unsqueeze(0) == pos.unsqueeze(1)] = -5e4  # accidental hits masked, as per-position draws do
    torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(logits, torch.zeros(10, dtype=torch.long)))


@pytest.mark.parametrize("name", ["sasrec", "gpt_rec", "llama_rec"])
def test_training_mode_outputs_equal_the_reference_bit_for_bit(name):
    """With dropout on, the fast attention mask draws the same random numbers and gives the same vectors."""
    torch.manual_seed(0)
    model = MODELS.get(name).cls(num_items=30, max_len=12, dropout=0.3).train()
    batch = tiny_batch()
    outputs = []
    for reference in (False, True):
        with reference_kernels(reference):
            torch.manual_seed(5)
            outputs.append(model.user_vectors(batch))
    torch.testing.assert_close(outputs[0], outputs[1], rtol=0, atol=0)


def test_throughput_script_builds_a_board_row_with_its_arguments():
    """`seqrec_large_models --models hstu@large` times the row the board trains (8 blocks), not the base model."""
    from benchmarks.perf.seqrec_large_models import measure

    shape = dict(num_items=30, max_len=8, batch_size=2, steps=1, warmup=0, device="cpu", board="seqrec-ml1m")
    base, large = measure("hstu", **shape), measure("hstu@large", **shape)
    assert large["model"] == "hstu@large" and large["params"] > base["params"]
