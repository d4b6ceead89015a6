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
