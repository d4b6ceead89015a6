"""vmas dispersion as a rollout env: it returns what vmas returns, seeds its resets per env copy, adds only a
potential-based term to the training reward, and a team that splits the food beats one that moves together."""
from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("vmas")

from datamodules.marl import Dispersion  # noqa: E402
from datamodules.marl.rollout import RandomPolicy, collect_rollout  # noqa: E402
from datamodules.marl.vmas_env import VMASVectorEnv  # noqa: E402
from lightning_modules.marl.scripted import scripted_for  # noqa: E402

ARGS = {"n_agents": 3, "n_food": 3, "pos_range": 0.5, "share_reward": True, "penalise_by_time": False}


def test_wrapper_matches_vmas_for_fixed_actions():
    import vmas

    seeds, rng = [3, 4], np.random.default_rng(0)
    env = VMASVectorEnv("dispersion", ARGS, num_envs=2, max_cycles=6)
    raw = vmas.make_env("dispersion", num_envs=2, device="cpu", continuous_actions=False, seed=0, **ARGS)
    obs = env.reset(seeds)
    for e, s in enumerate(seeds):
        raw.seed(s)
        raw.reset_at(e, return_observations=False)
    raw_obs = raw.get_from_scenario(get_observations=True, get_rewards=False, get_infos=False, get_dones=False)[0]
    assert obs.shape == (2, 3, 4 + 3 * 3 + 3) and obs.dtype == np.float32 and env.n_actions == 9
    for t in range(6):
        np.testing.assert_allclose(obs[..., :env.raw_dim], torch.stack(raw_obs, 1).numpy(), atol=1e-6)
        np.testing.assert_array_equal(obs[..., env.raw_dim:], np.broadcast_to(np.eye(3), (2, 3, 3)))
        actions = rng.integers(0, 9, (2, 3))
        obs, rew, term, trunc = env.step(actions)
        raw_obs, raw_rew, _, _ = raw.step([torch.as_tensor(actions[:, i]) for i in range(3)])
        np.testing.assert_allclose(rew, torch.stack(raw_rew, 1).numpy())
        assert not term.any() and not trunc.any()


def test_each_env_copy_resets_from_its_own_seed_and_leaves_the_torch_rng_alone():
    env = VMASVectorEnv("dispersion", ARGS, num_envs=3, max_cycles=4)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a = env.reset([7, 8, 9])
    assert torch.equal(torch.rand(3), expected)  # vmas keeps its own random state
    b = env.reset([9, 8, 7])
    np.testing.assert_array_equal(a[0], b[2])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], a[1])


def test_training_shaping_telescopes_to_the_potential_difference():
    plain = VMASVectorEnv("dispersion", ARGS, num_envs=4, max_cycles=8)
    shaped = VMASVectorEnv("dispersion", ARGS, num_envs=4, max_cycles=8, shaping=2.0)
    seeds, rng = [1, 2, 3, 4], np.random.default_rng(1)
    plain.reset(seeds)
    shaped.reset(seeds)
    start = shaped.potential()
    gap = np.zeros(4)
    for _ in range(8):
        actions = rng.integers(0, 9, (4, 3))
        _, r_plain, _, _ = plain.step(actions)
        _, r_shaped, _, _ = shaped.step(actions)
        gap += (r_shaped - r_plain)[:, 0]
    np.testing.assert_allclose(gap, 2.0 * (shaped.potential() - start), atol=1e-4)
    assert (shaped.potential() <= 0).all()


def test_validation_and_test_envs_report_the_unshaped_reward():
    dm = Dispersion(scenario_args=ARGS, max_cycles=12, num_envs=8, eval_episodes=8, train_shaping=10.0)
    assert dm.make_env("train").shaping == 10.0
    assert dm.make_env("val").shaping == 0.0 and dm.make_env("test").shaping == 0.0


def test_a_team_that_splits_the_food_beats_one_that_moves_together_and_random():
    env = Dispersion(scenario_args=ARGS, max_cycles=12, num_envs=16, eval_episodes=16).make_env("test")
    seeds = np.arange(32)
    split = scripted_for(env)

    class Together:  # the same script, every agent believing it is agent 0
        def reset_policy_state(self, num_envs, num_agents):
            return None

        def act(self, obs, t, state, explore):
            obs = obs.clone()
            obs[..., env.raw_dim:] = torch.tensor([1.0, 0.0, 0.0])
            return split.act(obs, t, state, explore)

    def mean_return(policy):
        return np.mean([collect_rollout(env, policy, seeds[i:i + 16], explore=False)["return"].mean().item()
                        for i in (0, 16)])

    r_split, r_together, r_random = mean_return(split), mean_return(Together()), mean_return(RandomPolicy(9, 0))
    assert r_split > r_together + 0.5 and r_together > r_random + 0.5
    assert r_split <= 3.0


def test_agent_ids_refuse_a_larger_team():
    with pytest.raises(ValueError, match="eval_team_delta: 0"):
        Dispersion(scenario_args=ARGS, eval_team_delta=1)
    with pytest.raises(ValueError, match="agent-id slots"):
        VMASVectorEnv("dispersion", {**ARGS, "n_agents": 4}, num_envs=1, max_cycles=4, id_slots=3)
