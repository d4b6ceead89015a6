"""XCrossNet's stages against direct computations of the paper's / official code's equations."""
import torch

from lightning_modules.ctr.xcrossnet import ConcatCross, DenseCrossNet, FactorizedProduct, XCrossNet


@torch.no_grad()
def test_dense_cross_layer_is_the_equation_without_residual():
    torch.manual_seed(0)
    M, L = 5, 3
    net = DenseCrossNet(M, L, include_x0=True)
    with torch.no_grad():
        for b in net.biases:
            b.normal_()
    x0 = torch.randn(4, M, dtype=torch.float32)
    out = net(x0)
    # Direct, sample by sample: x_{l+1} = x_0 (x_l^T w_l) + b_l, output [x_L ; ... ; x_1 ; x_0].
    for n in range(4):
        xs = [x0[n]]
        for w, b in zip(net.weights, net.biases):
            xl = xs[-1]
            xs.append(x0[n] * float(sum(xl[i] * w[i] for i in range(M))) + b)
        expected = torch.cat(list(reversed(xs)))
        torch.testing.assert_close(out[n], expected, rtol=1e-5, atol=1e-6)
    assert out.shape == (4, M * (L + 1))


def test_dense_cross_differs_from_dcn_by_the_residual():
    torch.manual_seed(1)
    net = DenseCrossNet(3, 1, include_x0=False)
    x0 = torch.randn(2, 3)
    w, b = net.weights[0], net.biases[0]
    torch.testing.assert_close(net(x0), x0 * (x0 @ w).unsqueeze(-1) + b)  # no "+ x_0"


@torch.no_grad()
def test_factorized_product_equals_double_sum_with_rank_one_weights():
    torch.manual_seed(2)
    N, K, T = 4, 3, 5
    layer = FactorizedProduct(N, K, T)
    emb = torch.randn(2, N, K)
    out = layer(emb)
    theta, W1 = layer.theta, layer.linear.weight.view(T, N, K)
    for n in range(2):
        for t in range(T):
            p1 = sum(float(W1[t, i] @ emb[n, i]) for i in range(N))
            p2 = sum(float(theta[t, i] * theta[t, j] * (emb[n, i] @ emb[n, j])) for i in range(N) for j in range(N))
            assert abs(out[n, t].item() - p1) < 1e-4
            assert abs(out[n, T + t].item() - p2) < 1e-4


def test_concat_cross_is_one_cross_layer_then_concatenation():
    torch.manual_seed(3)
    layer = ConcatCross(6)
    x0 = torch.randn(3, 6)
    expected = torch.cat([x0 * (x0 @ layer.weight).unsqueeze(-1) + layer.bias, x0], dim=1)
    torch.testing.assert_close(layer(x0), expected)


def test_default_dimensions_match_the_official_code():
    # Criteo at K=20: O_P = 26*20 + 325 = 845, O_C = 13 * 4 = 52 -> X_0 = 897; with the concat cross 1794.
    model = XCrossNet(field_dims=[3] * 26, num_dense=13)
    assert model.interaction.output_dim == 897
    assert XCrossNet(field_dims=[3] * 26, num_dense=13, concat_cross=True).interaction.output_dim == 1794
    assert XCrossNet(field_dims=[3] * 26, num_dense=13, product_layer="factorized",
                     product_size=100).interaction.output_dim == 52 + 200
    # Dense values stay raw: no numeric embedding, the interaction sees only the 26 sparse fields.
    assert model.dense_embedding is None and model.num_fields == 26


def test_no_dense_fields_skips_the_dense_branch():
    model = XCrossNet(field_dims=[3, 4], num_dense=0)
    out = model(torch.zeros(5, 0), torch.zeros(5, 2, dtype=torch.long))
    assert out.shape == (5,)
