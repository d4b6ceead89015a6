"""PAIL and the offline and adversarial baselines learn what their papers say on planted logs: on a chain whose
log is random and whose only signal is the final score, PAIL (simulator, discriminator against the best episodes,
estimator of the final score) drives the chain to its best end where behaviour cloning averages the log; IQL prefers
the actions that raised the final score; the Decision Transformer follows its return token; and AIRL's reward
(f - log pi) ranks expert steps above random ones."""
from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from contracts.batch import imitation as B
from lightning_modules.imitation import AIRL, IQL, PAIL, BehaviourCloning, DecisionTransformer
from tests.conftest import fast_trainer

T = 4


def chain_log(n: int, seed: int = 0) -> dict:
    """A 4-step chain: actions uniform in [-1, 1] move the position; the state is (position / T, one-hot of the
    step); the episode's score is 25 x the final position (percent), its only reward."""
    g = torch.Generator().manual_seed(seed)
    actions = torch.rand(n, T, 1, generator=g) * 2 - 1
    position = torch.cat([torch.zeros(n, 1), actions[..., 0].cumsum(1)], 1)
    states = torch.cat([position.unsqueeze(-1) / T, torch.eye(T + 1).expand(n, T + 1, T + 1)], -1)
    sdg = 25 * position[:, -1]
    rank = torch.empty(n)
    rank[sdg.argsort()] = torch.arange(n, dtype=torch.float32) / (n - 1)
    return {B.STATES: states, B.ACTIONS: actions, B.SDG: sdg, B.SDG_RANK: rank}


def fit(model, log: dict, epochs: int, batch: int = 64) -> None:
    items = [{B.HISTORY: {k: v[i: i + batch] for k, v in log.items()}} for i in range(0, len(log[B.SDG]), batch)]
    fast_trainer(max_epochs=epochs, limit_val_batches=0).fit(model, DataLoader(items, batch_size=None,
                                                                               collate_fn=lambda x: x))


def mean_action(model, log: dict) -> float:
    with torch.no_grad():
        return model.policy(model.windows(log[B.STATES], log[B.ACTIONS])).mean.mean().item()


def final_position_in_the_true_chain(model, n: int = 64) -> float:
    """The policy's greedy episode in the chain itself (never in PAIL's learned simulator)."""
    model.eval()
    position, memory = torch.zeros(n), model.reset_policy_state(n)
    with torch.no_grad():
        for t in range(T):
            obs = torch.cat([position[:, None] / T, torch.eye(T + 1)[t].expand(n, T + 1)], -1)
            action, _, memory = model.act(obs, t, memory, explore=False)
            position = position + action[:, 0]
    return position.mean().item()


def test_pail_beats_behaviour_cloning_on_a_planted_chain():
    torch.manual_seed(0)
    log = chain_log(256)
    state_dim = log[B.STATES].shape[-1]
    bc = BehaviourCloning(state_dim, 1, T, hidden_dim=32, lr=3e-3)
    pail = PAIL(state_dim, 1, T, window=2, d_model=16, num_heads=1, num_layers=1, hidden_dim=32, latent_dim=2,
                bc_epochs=1)
    fit(bc, log, epochs=10)
    fit(pail, log, epochs=10)
    assert abs(final_position_in_the_true_chain(bc)) < 0.5  # the log's average: no movement
    assert final_position_in_the_true_chain(pail) > 3.0  # the best end is 4 (every action +1)


def test_iql_prefers_the_actions_that_raised_the_score_where_behaviour_cloning_averages_them():
    torch.manual_seed(0)
    log = chain_log(256)
    state_dim = log[B.STATES].shape[-1]
    iql = IQL(state_dim, 1, T, hidden_dim=32, updates_per_batch=10, polyak=0.05, expectile=0.8, lr=3e-3)
    bc = BehaviourCloning(state_dim, 1, T, hidden_dim=32, lr=3e-3)
    fit(iql, log, epochs=10)
    fit(bc, log, epochs=10)
    assert abs(mean_action(bc, log)) < 0.15  # the log's actions average to zero
    assert mean_action(iql, log) > 0.4  # moving right is what raised the score
    # V(s0) approaches the expectile of the final score, above its mean of zero
    assert iql.v(log[B.STATES][:1, 0]).item() > 1.0


def test_decision_transformer_follows_its_return_token():
    torch.manual_seed(0)
    n = 512
    per_episode = torch.rand(n, 1, 1) * 2 - 1  # each episode repeats one action, and its score is that action
    states = torch.randn(n, T + 1, 3)
    log = {B.STATES: states, B.ACTIONS: per_episode.expand(n, T, 1).contiguous(), B.SDG: 80 * per_episode[:, 0, 0],
           B.SDG_RANK: torch.zeros(n)}
    dt = DecisionTransformer(3, 1, T, context=3, d_model=16, num_heads=1, num_layers=1, dropout=0.0, lr=3e-3)
    fit(dt, log, epochs=30)
    assert abs(dt.best_sdg.item() - log[B.SDG].max().item() / 100) < 1e-6
    dt.eval()
    with torch.no_grad():
        high = dt.predict(torch.full((8, T), 0.6), states[:8, :T], torch.zeros(8, T, 1))
        low = dt.predict(torch.full((8, T), -0.6), states[:8, :T], torch.zeros(8, T, 1))
    assert high.mean() > 0.35 and low.mean() < -0.35
    # acting (as the environment plays it: eval mode, no grad, the fused attention path) conditions on the best
    # training score, so it takes the best episodes' action from the first step on
    memory = dt.reset_policy_state(4)
    with torch.no_grad():
        for t in range(T):
            action, _, memory = dt.act(states[:4, t], t, memory, explore=False)
            assert action.min() > 0.5, t


def test_airl_reward_ranks_expert_steps_above_random_ones():
    torch.manual_seed(0)
    n, state_dim = 128, 3
    states = torch.rand(n, T + 1, state_dim)
    expert_actions = (0.8 * states[:, :T, :1] - 0.4).clamp(-1, 1)
    random_actions = torch.rand(n, T, 1) * 2 - 1
    airl = AIRL(state_dim, 1, T, hidden_dim=32)
    opt = torch.optim.Adam(airl.reward_net.parameters(), lr=3e-3)
    for _ in range(200):
        e, g = airl.disc_logits(states, expert_actions), airl.disc_logits(states, random_actions)
        loss = torch.nn.functional.softplus(-e).mean() + torch.nn.functional.softplus(g).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    test = torch.rand(64, T + 1, state_dim)
    with torch.no_grad():
        r_expert = airl.disc_logits(test, (0.8 * test[:, :T, :1] - 0.4).clamp(-1, 1))
        r_random = airl.disc_logits(test, torch.rand(64, T, 1) * 2 - 1)
    assert r_expert.mean() > r_random.mean() + 1.0
    # the shaping potential has no value after the last step: f there is g(s, a) - h(s)
    f = airl.reward_net(test, torch.zeros(64, T, 1))
    g_last = airl.reward_net.g(torch.cat([test[:, T - 1], torch.zeros(64, 1)], -1)).squeeze(-1)
    assert torch.allclose(f[:, -1], g_last - airl.reward_net.h(test[:, T - 1]).squeeze(-1), atol=1e-6)


def test_a_policy_that_gives_nan_stops_the_episode_with_a_clear_error():
    from datamodules.imitation import SyntheticMicrogrid
    from datamodules.imitation.operators import play

    class Broken:
        def reset_policy_state(self, num_envs):
            return None

        def act(self, obs, t, state, explore):
            return torch.full((obs.shape[0], 1), float("nan")), {}, state

    dm = SyntheticMicrogrid(days=10, episodes_per_operator=1, horizon=6)
    dm.setup()
    with pytest.raises(FloatingPointError, match="non-finite action"):
        play(dm.make_env(), Broken(), dm.starts["test"][:2], explore=False)
