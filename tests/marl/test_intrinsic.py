"""CORD's three terms against hand-computed values, and the controller's causal structure by perturbation."""
from __future__ import annotations

import math

import torch

from lightning_modules.marl.cord import (RoleController, causal_influence, gaussian_kl, role_entropy,
                                         role_heterogeneity, role_similarity)


def test_gaussian_kl_hand_values():
    # KL(N(0,1) || N(1,1)) = 0.5;  KL(N(0,1) || N(0,e^2)) = 0.5 * (2 + e^-2 - 1)
    assert torch.isclose(gaussian_kl(torch.tensor(0.), torch.tensor(0.), torch.tensor(1.), torch.tensor(0.)), torch.tensor(0.5))
    expected = 0.5 * (2 + math.exp(-2) - 1)
    assert torch.isclose(gaussian_kl(torch.tensor(0.), torch.tensor(0.), torch.tensor(0.), torch.tensor(2.)),
                         torch.tensor(expected))


def test_causal_influence_is_tanh_of_scaled_mean_kl():
    mu = torch.tensor([[0.0, 0.0], [2.0, 0.0]])  # 2 agents, 2 role dims
    mu_cf = torch.zeros(2, 2)
    zeros = torch.zeros(2, 2)
    # elementwise KLs: 0, 0, 2, 0 -> mean 0.5; lambda 1e-3 -> tanh(5e-4)
    assert torch.isclose(causal_influence(mu, zeros, mu_cf, zeros, 1e-3), torch.tensor(math.tanh(5e-4)))
    assert torch.isclose(causal_influence(mu, zeros, mu_cf, zeros, 1.0), torch.tensor(math.tanh(0.5)))
    per_team = causal_influence(mu[None].repeat(3, 1, 1), zeros[None].repeat(3, 1, 1), mu_cf[None].repeat(3, 1, 1),
                                zeros[None].repeat(3, 1, 1), 1.0, reduce_dims=(-2, -1))
    assert per_team.shape == (3,) and torch.allclose(per_team, torch.tensor(math.tanh(0.5)))


def test_heterogeneity_is_determinant_of_kl_similarity():
    mu = torch.tensor([[0.0], [1.0]])
    logvar = torch.zeros(2, 1)
    # KL both ways = 0.5 -> S = [[1, e^-1], [e^-1, 1]] -> det = 1 - e^-2
    S = role_similarity(mu, logvar, batch_mean=False)
    assert torch.allclose(S, torch.tensor([[1.0, math.exp(-1)], [math.exp(-1), 1.0]]))
    assert torch.isclose(role_heterogeneity(mu, logvar, batch_mean=False), torch.tensor(1 - math.exp(-2)))
    # identical roles -> D = 0; far apart -> D -> 1
    assert torch.isclose(role_heterogeneity(torch.zeros(3, 2), torch.zeros(3, 2), batch_mean=False), torch.tensor(0.0), atol=1e-6)
    far = torch.tensor([[0.0, 0.0], [50.0, 0.0], [0.0, 50.0]])
    assert torch.isclose(role_heterogeneity(far, torch.zeros(3, 2), batch_mean=False), torch.tensor(1.0))


def test_heterogeneity_batch_mean_averages_kl_before_the_exponential():
    # COID averages each pairwise KL over the batch, then builds one S: batch of two teams with KLs 0.5 and 2
    mu = torch.tensor([[[0.0], [1.0]], [[0.0], [2.0]]])
    logvar = torch.zeros(2, 2, 1)
    mean_kl = (0.5 + 2.0) / 2
    assert torch.isclose(role_heterogeneity(mu, logvar, batch_mean=True), torch.tensor(1 - math.exp(-2 * 2 * mean_kl)))
    per_team = role_heterogeneity(mu, logvar, batch_mean=False)
    assert torch.allclose(per_team, torch.tensor([1 - math.exp(-2), 1 - math.exp(-8)]))


def test_role_entropy_is_clamped_per_dimension():
    # entropy(N(mu, e^lv)) = 0.5 log(2 pi e) + lv/2: lv = 0 -> 1.4189; lv = -10 -> negative -> clamped to 0
    logvar = torch.tensor([[0.0, -10.0]])
    assert torch.isclose(role_entropy(logvar), torch.tensor(0.5 * math.log(2 * math.pi * math.e)))


def test_controller_counterfactual_ignores_other_agents_and_factual_does_not():
    torch.manual_seed(0)
    ctrl = RoleController(obs_dim=6, n_actions=5, role_dim=4, embed_dim=8, num_heads=2).eval()
    obs = torch.randn(2, 3, 6)
    prev_a = torch.nn.functional.one_hot(torch.randint(0, 5, (2, 3)), 5).float()
    prev_z = torch.randn(2, 3, 4)
    mu, logvar, mu_cf, logvar_cf = ctrl(obs, prev_a, prev_z)
    assert mu.shape == (2, 3, 4) and (logvar <= 0).all() and (logvar >= -10).all()
    # perturb agent 2's previous action and role: agent 0's factual role moves, its counterfactual does not
    prev_a2, prev_z2 = prev_a.clone(), prev_z.clone()
    prev_a2[:, 2] = torch.nn.functional.one_hot(torch.tensor(0), 5).float() - prev_a2[:, 2]
    prev_z2[:, 2] += 3.0
    mu_b, _, mu_cf_b, _ = ctrl(obs, prev_a2, prev_z2)
    assert not torch.allclose(mu[:, 0], mu_b[:, 0])
    assert torch.allclose(mu_cf[:, 0], mu_cf_b[:, 0])
    # agent 0's own previous role is excluded from its influence attention (j != i)
    prev_z3 = prev_z.clone()
    prev_z3[:, 0] += 3.0
    assert torch.allclose(ctrl(obs, prev_a, prev_z3)[0][:, 0], mu[:, 0], atol=1e-6)
    # flat ablation: no information from other agents at all -> factual == counterfactual, influence 0
    flat = RoleController(6, 5, 4, 8, 2, hierarchy=False).eval()
    f_mu, f_lv, f_mu_cf, f_lv_cf = flat(obs, prev_a, prev_z)
    assert torch.allclose(f_mu, f_mu_cf)
    assert causal_influence(f_mu, f_lv, f_mu_cf, f_lv_cf) == 0


def test_regulariser_gradients_match_their_definitions():
    """Autograd through the three terms equals the gradients derived by hand from their formulas, on a tiny batch."""
    torch.manual_seed(1)
    mu, logvar = torch.randn(2, 3, requires_grad=True), (-torch.rand(2, 3)).requires_grad_()
    mu_cf, logvar_cf = torch.randn(2, 3, requires_grad=True), (-torch.rand(2, 3)).requires_grad_()
    lam, n = 0.7, mu.numel()
    # I = tanh(lam * mean KL): dI/dmu = lam (1 - I^2) (mu - mu_cf) / var_cf / n,
    # dI/dlogvar = lam (1 - I^2) 0.5 (exp(logvar - logvar_cf) - 1) / n
    I = causal_influence(mu, logvar, mu_cf, logvar_cf, lam)
    g_mu, g_lv, g_mucf = torch.autograd.grad(I, (mu, logvar, mu_cf))
    scale = lam * (1 - I.detach() ** 2) / n
    assert torch.allclose(g_mu, scale * (mu - mu_cf).detach() / logvar_cf.detach().exp(), atol=1e-6)
    assert torch.allclose(g_lv, scale * 0.5 * ((logvar - logvar_cf).detach().exp() - 1), atol=1e-6)
    assert torch.allclose(g_mucf, -g_mu, atol=1e-6)
    # D = det(S), unit variances, one role dim: S_ij = exp(-(m_i - m_j)^2), dS_ij/dm_a = -2 (m_i - m_j) S_ij
    # ([a = i] - [a = j]), and dD/dS = D S^-T (Jacobi), so dD/dm_a = sum_ij D (S^-1)_ji dS_ij/dm_a
    m = torch.tensor([[0.0], [0.6], [1.5]], dtype=torch.float64, requires_grad=True)
    D = role_heterogeneity(m, torch.zeros_like(m), batch_mean=False)
    (g_m,) = torch.autograd.grad(D, m)
    x = m.detach().squeeze(-1)
    S = torch.exp(-(x[:, None] - x[None]) ** 2)
    adj = torch.linalg.det(S) * torch.linalg.inv(S).T
    diff = x[:, None] - x[None]
    expected = torch.stack([sum(adj[i, j] * -2 * diff[i, j] * S[i, j] * ((a == i) - (a == j))
                                for i in range(3) for j in range(3)) for a in range(3)])
    assert torch.allclose(D, torch.linalg.det(S)) and torch.allclose(g_m.squeeze(-1), expected, atol=1e-10)
    # H = mean over agents of sum over dims of clamp(0.5 log(2 pi e) + logvar / 2, 0, 10): 0.5 / agents per
    # unclamped dim, 0 where the clamp is active (logvar below -log(2 pi e))
    lv = torch.tensor([[0.0, -5.0], [-1.0, -3.0]], requires_grad=True)
    (g_h,) = torch.autograd.grad(role_entropy(lv), lv)
    inside = (0.5 * (math.log(2 * math.pi * math.e) + lv.detach()) > 0).float()
    assert torch.allclose(g_h, 0.5 / 2 * inside) and inside.sum() == 2


def test_cord_loss_weights_scale_the_regulariser_gradients():
    """CORD's extra loss is -w_I I - w_D D - w_H H: its gradient on the controller is that combination, so the
    weights are what sets the regulariser's size beside the TD loss (zero weights: no gradient at all)."""
    from contracts.batch import marl as B
    from lightning_modules.marl.cord import CORD

    torch.manual_seed(0)
    batch = {B.OBS: torch.randn(4, 9, 3, 6), B.ACTIONS: torch.randint(0, 5, (4, 8, 3)), "role": torch.randn(4, 8, 3, 8)}

    def grads(**weights):
        torch.manual_seed(0)
        model = CORD(obs_dim=6, n_actions=5, num_agents=3, episode_limit=8, hidden_dim=8, attention_dim=8,
                     num_heads=2, **weights)
        torch.manual_seed(1)
        _, aux = model.roles(batch, model.online_modules(), target=False)
        params = [p for p in model.controller.parameters() if p.requires_grad]
        g = torch.autograd.grad(aux["_loss"], params, allow_unused=True)
        return torch.cat([(x if x is not None else torch.zeros_like(p)).flatten() for x, p in zip(g, params)]), aux

    zero = dict(influence_weight=0.0, heterogeneity_weight=0.0, entropy_weight=0.0)
    g0, _ = grads(**zero)
    assert g0.abs().max() == 0
    gi, aux = grads(**{**zero, "influence_weight": 1.0, "influence_lambda": 1.0})
    gd, _ = grads(**{**zero, "heterogeneity_weight": 1.0, "influence_lambda": 1.0})
    gboth, aux_both = grads(influence_weight=0.3, heterogeneity_weight=2.0, entropy_weight=0.0, influence_lambda=1.0)
    assert torch.allclose(gboth, 0.3 * gi + 2.0 * gd, atol=1e-5)
    assert torch.isclose(aux_both["regulariser"], -(0.3 * aux_both["influence"] + 2.0 * aux_both["heterogeneity"]))
    assert gi.abs().max() > 0 and gd.abs().max() > 0
