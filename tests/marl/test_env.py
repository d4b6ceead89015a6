"""The env wrappers return what mpe2 returns: shapes, rewards, done flags and (rearranged) observations."""
from __future__ import annotations

import numpy as np
import pytest

from datamodules.marl.collect_treasure_numpy import BatchedCollectTreasure
from datamodules.marl.mpe_env import MPEVectorEnv, ScenarioConfig

CT = ScenarioConfig("collect_treasure", {"num_collectors": 3, "num_deposits": 2, "num_treasures": 3, "max_cycles": 6})
SPREAD = ScenarioConfig("simple_spread", {"N": 3, "max_cycles": 6})


def _package_run(config: ScenarioConfig, seeds, actions):
    """Step raw mpe2 parallel envs with the same seeds and actions; returns per-step lists of dicts."""
    envs = [config.make() for _ in seeds]
    first = [env.reset(seed=int(s))[0] for env, s in zip(envs, seeds)]
    steps = []
    for a in actions:
        out = [env.step(dict(zip(env.possible_agents, a[e].tolist()))) for e, env in enumerate(envs)]
        steps.append(out)
    return envs, first, steps


@pytest.mark.parametrize("config", [CT, SPREAD], ids=["collect_treasure", "simple_spread"])
def test_wrapper_matches_package_for_fixed_actions(config):
    seeds = [3, 4]
    rng = np.random.default_rng(0)
    env = MPEVectorEnv(config, num_envs=2)
    actions = rng.integers(0, 5, (6, 2, env.num_agents))
    obs = env.reset(seeds)
    envs, first, steps = _package_run(config, seeds, actions)
    names = envs[0].possible_agents
    assert obs.shape == (2, env.num_agents, env.obs_dim) and obs.dtype == np.float32
    for t, a in enumerate(actions):
        obs, rew, term, trunc = env.step(a)
        for e in range(2):
            p_obs, p_rew, p_term, p_trunc, _ = steps[t][e]
            np.testing.assert_array_equal(rew[e], np.array([p_rew[n] for n in names], np.float32))
            np.testing.assert_array_equal(term[e], [p_term[n] for n in names])
            np.testing.assert_array_equal(trunc[e], [p_trunc[n] for n in names])
            for i, n in enumerate(names):  # every raw value is in the canonical vector, in order
                raw = p_obs[n]
                if config.scenario == "simple_spread":
                    assert np.allclose(raw[-4:], 0)  # silent agents: communication slots are zeros
                    raw = raw[:-4]
                    expected = np.concatenate([raw[:4], raw[4 + 6:], raw[4:4 + 6]])  # others before landmarks
                    np.testing.assert_array_equal(obs[e, i], expected)
                else:
                    canon = obs[e, i]
                    is_collector = n.startswith("collector")
                    own = 6 if is_collector else 4
                    np.testing.assert_array_equal(canon[:own], raw[:own])
                    np.testing.assert_array_equal(canon[6:8], [1, 0] if is_collector else [0, 1])
                    np.testing.assert_array_equal(canon[8:], raw[own:])
    assert trunc.all() and not term.any()  # 6 steps = max_cycles: every agent truncated together


def test_larger_team_keeps_the_training_layout():
    big = MPEVectorEnv(CT.resized(1), num_envs=2, train_config=CT)
    small = MPEVectorEnv(CT, num_envs=2)
    assert big.num_agents == 6 and big.obs_dim == small.obs_dim
    obs = big.reset([0, 1])
    raw = big.envs[0].reset(seed=0)[0]["collector_0"]  # 4 + 2 + 5 others x 8 + 3 treasures x 4
    np.testing.assert_array_equal(obs[0, 0, 8:8 + 4 * 8], raw[6:6 + 4 * 8])  # the 4 nearest others are kept
    np.testing.assert_array_equal(obs[0, 0, 8 + 4 * 8:], raw[6 + 5 * 8:])  # treasures unchanged


def test_numpy_backend_matches_package_step_by_step():
    """State copied from the package before every step, same actions: identical observations, rewards, dones.
    Collectors are teleported onto treasures / matching deposits so that pickups and deliveries happen."""
    config = ScenarioConfig("collect_treasure", {"num_collectors": 3, "num_deposits": 2, "num_treasures": 3,
                                                 "max_cycles": 40})
    package, batched = MPEVectorEnv(config, 3), BatchedCollectTreasure(config, 3)
    first = package.reset([7, 8, 9])
    batched.load_state(package.envs)
    np.testing.assert_array_equal(batched.observe(), first)
    rng = np.random.default_rng(1)
    compared = events = 0
    for step in range(40):
        for env in package.envs:
            world = env.unwrapped.world
            collector = world.agents[step % 3]
            if step % 3 == 0 and world.landmarks[step % 3].alive:
                collector.state.p_pos = world.landmarks[step % 3].state.p_pos + 0.01
            elif step % 3 == 1:  # give it a treasure of some type and put it on the matching deposit
                collector.holding = step % 2 if collector.holding is None else collector.holding
                collector.state.p_pos = world.agents[3 + collector.holding].state.p_pos + 0.02
        batched.load_state(package.envs)
        no_respawn = batched.t_alive.all(1)  # respawns draw from different generators: compare the other steps
        actions = rng.integers(0, 5, (3, 5))
        p_obs, p_rew, p_term, p_trunc = package.step(actions)
        b_obs, b_rew, b_term, b_trunc = batched.step(actions)
        np.testing.assert_array_equal(p_term, b_term)
        np.testing.assert_array_equal(p_trunc, b_trunc)
        for e in np.flatnonzero(no_respawn):
            np.testing.assert_allclose(b_obs[e], p_obs[e], atol=1e-6)
            np.testing.assert_allclose(b_rew[e], p_rew[e], atol=1e-5)
            compared += 1
            events += int(p_rew[e, 0] >= 4.0)  # a +5 pickup or delivery
    assert compared >= 60 and events >= 8


def test_numpy_backend_rejects_other_scenarios():
    with pytest.raises(ValueError, match="collect_treasure only"):
        BatchedCollectTreasure(SPREAD, 2)


def test_numpy_backend_episodes_do_not_depend_on_batching():
    """Each env copy owns a generator seeded by its episode's seed: the same seeds give the same episodes (respawns
    included) whether they are played in one batch of 4 or two batches of 2, so a run's test (batches of num_envs)
    and the cross-play evaluator (one batch) see identical episodes."""
    config = ScenarioConfig("collect_treasure", {"num_collectors": 3, "num_deposits": 2, "num_treasures": 3,
                                                 "max_cycles": 25})
    seeds = [11, 12, 13, 14]
    whole, halves = BatchedCollectTreasure(config, 4), [BatchedCollectTreasure(config, 2) for _ in range(2)]
    obs = [whole.reset(seeds)] + [env.reset(seeds[2 * i: 2 * i + 2]) for i, env in enumerate(halves)]
    np.testing.assert_array_equal(obs[0], np.concatenate(obs[1:]))
    rng = np.random.default_rng(0)
    respawned = 0
    for _ in range(25):
        # collector_0 is put onto treasure 0 now and then, so pickups and respawns happen
        target = whole.t_pos[:, 0].copy()
        for e in range(4):
            if rng.random() < 0.3 and whole.t_alive[e, 0]:
                whole.pos[e, 0] = target[e]
                halves[e // 2].pos[e % 2, 0] = target[e]
        dead = ~whole.t_alive
        actions = rng.integers(0, 5, (4, 5))
        out = [whole.step(actions)] + [env.step(actions[2 * i: 2 * i + 2]) for i, env in enumerate(halves)]
        respawned += int((dead & whole.t_alive).sum())
        for k in range(4):  # obs, rewards, terminated, truncated
            np.testing.assert_array_equal(out[0][k], np.concatenate([out[1][k], out[2][k]]))
    assert respawned >= 3


def test_numpy_backend_needs_one_seed_per_copy():
    with pytest.raises(ValueError, match="one seed per env copy"):
        BatchedCollectTreasure(CT, 2).reset([1, 2, 3])


def test_numpy_simple_spread_matches_package_step_by_step():
    """Seeded resets give the package's first observation; then, with the state copied from the package before
    each step (agents pushed into contact now and then, so collisions and contact forces happen), the same
    observations, rewards and dones."""
    from datamodules.marl.simple_spread_numpy import BatchedSimpleSpread

    config = ScenarioConfig("simple_spread", {"N": 3, "local_ratio": 0.5, "max_cycles": 30})
    package, batched = MPEVectorEnv(config, 3), BatchedSimpleSpread(config, 3)
    first = package.reset([7, 8, 9])
    np.testing.assert_allclose(batched.reset([7, 8, 9]), first, atol=1e-6)
    rng = np.random.default_rng(2)
    collisions = 0
    for step in range(30):
        if step % 4 == 0:
            for env in package.envs:
                agents = env.unwrapped.world.agents
                agents[1].state.p_pos = agents[0].state.p_pos + rng.uniform(-0.2, 0.2, 2)
        batched.load_state(package.envs)
        actions = rng.integers(0, 5, (3, 3))
        p_obs, p_rew, p_term, p_trunc = package.step(actions)
        b_obs, b_rew, b_term, b_trunc = batched.step(actions)
        np.testing.assert_allclose(b_obs, p_obs, atol=1e-5)
        np.testing.assert_allclose(b_rew, p_rew, atol=1e-5)
        np.testing.assert_array_equal(p_term, b_term)
        np.testing.assert_array_equal(p_trunc, b_trunc)
        collisions += int((p_rew < p_rew.max(-1, keepdims=True) - 0.4).sum())
    assert collisions >= 5 and b_trunc.all()


def test_numpy_simple_spread_larger_team_keeps_the_training_layout():
    from datamodules.marl.simple_spread_numpy import BatchedSimpleSpread

    config = ScenarioConfig("simple_spread", {"N": 3, "max_cycles": 5})
    package = MPEVectorEnv(config.resized(1), 2, train_config=config)
    batched = BatchedSimpleSpread(config.resized(1), 2, train_config=config)
    assert batched.obs_dim == package.obs_dim and batched.num_agents == 4
    np.testing.assert_allclose(batched.reset([3, 4]), package.reset([3, 4]), atol=1e-6)
