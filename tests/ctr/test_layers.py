"""The ctr family's shared layers: the 16-bit-mask dropout behaves as inverted dropout at its rate; the inner-product
layer returns every pair's product in row-major order; AutoInt's interacting layer computes its paper's equations."""
import pytest
import torch

from lightning_modules.ctr.autoint import InteractingLayer
from lightning_modules.ctr.layers import MLP, Dropout, InnerProduct


def test_dropout_rate_scale_gradient_and_eval():
    torch.manual_seed(0)
    layer = Dropout(0.3)
    x = torch.ones(400_001, requires_grad=True)  # not a multiple of 4: the last draw serves one unit
    y = layer(x)
    kept = y != 0
    assert (1 - kept.float().mean()).item() == pytest.approx(0.3, abs=0.005)  # the rate
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / 0.7))  # kept units scaled by 1 / (1 - p)
    y.sum().backward()
    assert torch.equal(x.grad, kept.float() / 0.7)  # the gradient flows through kept units only
    assert not torch.equal(kept, layer(x.detach()) != 0)  # a fresh mask per call
    layer.eval()
    assert torch.equal(layer(x.detach()), x.detach())  # identity at evaluation


def test_dropout_bad_rate_and_mlp_uses_it():
    with pytest.raises(ValueError, match="dropout must be in"):
        Dropout(1.0)
    mlp = MLP(4, [8, 8], 1, dropout=0.5)
    assert sum(isinstance(m, Dropout) for m in mlp) == 2
    assert not any(isinstance(m, Dropout) for m in MLP(4, [8], 1, dropout=0.0))


def test_inner_product_is_every_pair_in_row_major_order_with_its_gradient():
    torch.manual_seed(0)
    fields = torch.randn(3, 5, 4, dtype=torch.float64, requires_grad=True)
    pairs = [(i, j) for i in range(5) for j in range(i + 1, 5)]
    expected = torch.stack([(fields[:, i] * fields[:, j]).sum(-1) for i, j in pairs], dim=1)
    layer = InnerProduct(5)
    assert layer.num_pairs == 10
    assert torch.allclose(layer(fields), expected)
    weights = torch.randn(3, 10, dtype=torch.float64)
    grad, = torch.autograd.grad((layer(fields) * weights).sum(), fields)
    grad_expected, = torch.autograd.grad((expected * weights).sum(), fields)
    assert torch.allclose(grad, grad_expected)


@pytest.mark.parametrize("use_residual,use_scale", [(True, False), (False, True)])
def test_interacting_layer_is_autoints_equations_per_head(use_residual, use_scale):
    """Eq. 5-8 of AutoInt written out head by head: alpha = softmax over keys of <W_Q e_m, W_K e_k> (scaled when
    asked), heads concatenated, ReLU(. + W_Res e)."""
    torch.manual_seed(0)
    layer = InteractingLayer(6, 8, 2, use_residual, use_scale).double()
    e = torch.randn(3, 5, 6, dtype=torch.float64)
    heads = []
    for h in range(2):
        cols = slice(4 * h, 4 * h + 4)
        q, k, v = (e @ lin.weight[cols].T for lin in (layer.query, layer.key, layer.value))
        scores = q @ k.transpose(1, 2) * (4 ** -0.5 if use_scale else 1.0)
        heads.append(torch.softmax(scores, dim=-1) @ v)
    expected = torch.cat(heads, dim=-1) + (e @ layer.residual.weight.T if use_residual else 0)
    assert torch.allclose(layer(e), torch.relu(expected))
