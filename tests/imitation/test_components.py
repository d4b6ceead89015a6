"""PAIL's parts do their jobs on tiny planted cases: the discriminator separates expert from random steps, the
performance estimator's Q-values converge to the true values of a chain MDP, the VAE simulator learns the battery's
state-of-charge dynamics, and the policy window never reads the action it is about to take."""
from __future__ import annotations

import numpy as np
import torch

from contracts.batch import imitation as B
from datamodules.imitation import SyntheticMicrogrid
from lightning_modules.imitation.layers import (GaussianPolicy, PerformanceEstimator, StepDiscriminator,
                                                VAESimulator, history_windows)


def test_discriminator_separates_expert_from_random_steps():
    torch.manual_seed(0)
    states = torch.rand(512, 3)
    expert_actions = (0.8 * states[:, :1] - 0.4).clamp(-1, 1)  # the expert follows a rule of the state
    random_actions = torch.rand(512, 1) * 2 - 1
    disc = StepDiscriminator(3, 1, hidden_dim=32)
    opt = torch.optim.Adam(disc.parameters(), lr=3e-3)
    for _ in range(300):
        loss = disc.loss((states, expert_actions), (states, random_actions))
        opt.zero_grad()
        loss.backward()
        opt.step()
    test_s = torch.rand(256, 3)
    expert_p = torch.sigmoid(disc(test_s, (0.8 * test_s[:, :1] - 0.4)))
    random_p = torch.sigmoid(disc(test_s, torch.rand(256, 1) * 2 - 1))
    assert expert_p.mean() > 0.7 and random_p.mean() < 0.5
    assert (disc.reward(test_s, 0.8 * test_s[:, :1] - 0.4).mean() > disc.reward(test_s, torch.rand(256, 1) * 2 - 1).mean())


def chain_episodes(n: int, seed: int = 0):
    """A 4-step chain: state = (position, step one-hot); action in {-1, +1} moves the position by it; the final
    score is the final position / 4. The optimal Q(s, a) = (position + a + number of steps left after this one) / 4."""
    rng = np.random.default_rng(seed)
    T = 4
    actions = rng.choice([-1.0, 1.0], (n, T, 1))
    position = np.concatenate([np.zeros((n, 1)), np.cumsum(actions[..., 0], 1)], 1)
    onehot = np.broadcast_to(np.eye(T + 1), (n, T + 1, T + 1))
    states = np.concatenate([position[..., None] / T, onehot], -1)
    return (torch.tensor(states, dtype=torch.float32), torch.tensor(actions, dtype=torch.float32),
            torch.tensor(position[:, -1] / T, dtype=torch.float32))


def test_estimator_converges_to_the_chain_mdps_true_values():
    torch.manual_seed(0)
    states, actions, score = chain_episodes(256)
    est = PerformanceEstimator(states.shape[-1], 1, hidden_dim=64, target="max", action_grid=2, tau=0.1)
    opt = torch.optim.Adam(est.q.parameters(), lr=3e-3)
    for _ in range(1500):
        loss = est.loss(states, actions, score)
        opt.zero_grad()
        loss.backward()
        opt.step()
        est.update_target()
    T = 4
    pos = states[:, :-1, 0] * T
    steps_left = T - 1 - torch.arange(T).float()
    for a in (-1.0, 1.0):
        q = est(states[:, :-1], torch.full_like(actions, a))
        true = (pos + a + steps_left) / T  # act a now, then +1 at every later step
        assert (q - true).abs().max() < 0.1, f"a={a}: max error {(q - true).abs().max():.3f}"


def test_simulator_learns_the_state_of_charge_dynamics():
    torch.manual_seed(0)
    dm = SyntheticMicrogrid(days=40, episodes_per_operator=8)
    dm.setup()
    S, A = dm.history[B.STATES], dm.history[B.ACTIONS]
    s, a, s_next = S[:, :-1].reshape(-1, S.shape[-1]), A.reshape(-1, 1), S[:, 1:].reshape(-1, S.shape[-1])
    sim = VAESimulator(S.shape[-1], 1, latent_dim=2, hidden_dim=64, beta=0.01)
    opt = torch.optim.Adam(sim.parameters(), lr=3e-3)
    for _ in range(400):
        loss = sim.loss(s, a, s_next)
        opt.zero_grad()
        loss.backward()
        opt.step()
    soc_error = (sim.step(s, a)[:, 0] - s_next[:, 0]).abs().mean()
    stay_error = (s[:, 0] - s_next[:, 0]).abs().mean()  # predicting "no change"
    assert soc_error < 0.5 * stay_error


def test_the_policy_window_never_reads_the_current_or_a_future_action():
    torch.manual_seed(0)
    policy = GaussianPolicy(3, 1, window=4, encoder="transformer", d_model=8, num_heads=1, num_layers=1)
    states, actions = torch.randn(2, 6, 3), torch.randn(2, 6, 1)
    before = policy(history_windows(states, actions, 4)).mean
    changed = actions.clone()
    changed[:, 3:] += 5.0  # a_3 onwards may only move steps 4 and 5
    after = policy(history_windows(states, changed, 4)).mean
    torch.testing.assert_close(after[:, :4], before[:, :4])
    assert not torch.allclose(after[:, 4], before[:, 4])
