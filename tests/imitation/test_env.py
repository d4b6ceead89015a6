"""The operation environment conserves energy, keeps the state of charge within its bounds, and scores the SDG as
its docstring states; the historical operators span a range of skill."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from contracts.batch import imitation as B
from datamodules.imitation import SyntheticMicrogrid
from datamodules.imitation.env import Battery, BatteryDispatchEnv, synthetic_profiles


def random_episode(env, starts, seed=0, scale=1.5):
    rng = np.random.default_rng(seed)
    env.reset(starts)
    steps = []
    for _ in range(env.horizon):
        _, reward, flows = env.step(scale * rng.uniform(-1, 1, (len(starts), 1)))  # |a| up to 1.5: clipped
        steps.append((reward, flows))
    return steps


def test_energy_balance_and_state_of_charge_bounds():
    battery = Battery(capacity_kwh=3.0, power_kw=2.0, efficiency=0.81)
    env = BatteryDispatchEnv(synthetic_profiles(seed=1, days=10), horizon=48, battery=battery)
    for _, f in random_episode(env, np.arange(0, 24 * 8, 12)):
        supply = f["solar"] + f["import"] + f["discharge"]
        demand = f["load"] + f["charge"] + f["export"]
        np.testing.assert_allclose(supply, demand, atol=1e-9)  # supply meets demand, nothing appears or vanishes
        np.testing.assert_allclose(f["soc_after"], f["soc_before"] + battery.eta * f["charge"] - f["drawn_out"],
                                   atol=1e-9)
        assert (f["soc_after"] >= -1e-12).all() and (f["soc_after"] <= battery.capacity_kwh + 1e-12).all()
        assert (f["charge"] <= battery.power_kw + 1e-12).all() and (f["discharge"] <= battery.power_kw + 1e-12).all()
        assert ((f["charge"] == 0) | (f["discharge"] == 0)).all()


def test_rewards_sum_to_the_sdg_and_idle_scores_zero():
    env = BatteryDispatchEnv(synthetic_profiles(seed=2, days=6), horizon=24)
    steps = random_episode(env, np.array([0, 24, 48]))
    np.testing.assert_allclose(sum(r for r, _ in steps), env.sdg(), rtol=1e-9, atol=1e-9)
    assert env.violations.sum() > 0  # |a| > 1 was clipped and counted
    env.reset(np.array([0, 24]))
    for _ in range(24):
        env.step(np.zeros((2, 1)))
    np.testing.assert_allclose(env.sdg(), 0.0, atol=1e-9)  # no battery use = the no-battery reference
    assert env.violations.sum() == 0


def test_charging_cheap_and_discharging_at_the_peak_beats_the_reverse():
    env = BatteryDispatchEnv(synthetic_profiles(seed=3, days=3), horizon=24)
    scores = {}
    for sign in (1, -1):
        env.reset(np.array([0, 24]))
        for t in range(24):
            peak = 16 <= env.hour[0, t] <= 20
            env.step(np.full((2, 1), -sign * 0.5 if peak else sign * 0.1))
        scores[sign] = env.sdg()
    assert (scores[1] > scores[-1]).all()


@pytest.fixture(scope="module")
def microgrid():
    dm = SyntheticMicrogrid(days=60, episodes_per_operator=6)
    dm.setup()
    return dm


def test_the_log_spans_skill_levels_and_the_splits_are_disjoint(microgrid):
    h = microgrid.history
    assert h[B.STATES].shape[1] == microgrid.horizon + 1 and h[B.ACTIONS].shape[-1] == 1
    sdg = np.array(list(microgrid.operator_train_sdg.values()))
    assert sdg.max() - sdg.min() > 10  # percent points between the best and the worst operator
    assert float(h[B.SDG_RANK][h[B.SDG].argmax()]) == 1.0 and float(h[B.SDG_RANK][h[B.SDG].argmin()]) == 0.0
    splits = [set(v.tolist()) for v in microgrid.starts.values()]
    assert not (splits[0] & splits[1]) and not (splits[0] & splits[2]) and not (splits[1] & splits[2])
    ref = microgrid.references["test"]
    assert float(ref[B.REF_BEST_SDG]) > float(ref[B.REF_MEAN_SDG])
    assert torch.isfinite(h[B.SDG]).all()


def test_citylearn_building_reads_its_schema(shared_data):
    from datamodules.imitation import CityLearnMicrogrid

    dm = CityLearnMicrogrid(data_dir=str(shared_data), episodes_per_operator=2)
    dm.setup()
    assert dm.battery.capacity_kwh > 0 and len(dm.profiles) == 8760
    assert dm.profiles.solar.max() > 0 and dm.profiles.price.max() > dm.profiles.price.min()


def test_a_day_the_pv_covers_is_scored_against_the_floor_not_against_zero():
    p = synthetic_profiles(seed=4, days=4)
    p.solar[24:48] = p.load[24:48] + 1.0  # day 1: PV covers every hour, no import without a battery
    env = BatteryDispatchEnv(p, horizon=24, sdg_floor=0.15)
    env.reset(np.array([0, 24]))
    assert env.base_emissions[1] == pytest.approx(0.15 * np.mean(p.load * p.carbon) * 24)
    assert env.base_emissions[0] > env.emissions_floor  # an ordinary day keeps its own no-battery emissions
    for _ in range(24):
        env.step(np.full((2, 1), 0.5))  # charging from the grid once the PV surplus is stored
    assert np.isfinite(env.sdg()).all() and abs(env.sdg()[1]) < 1000
    with pytest.raises(ValueError, match="sdg_floor"):
        BatteryDispatchEnv(p, sdg_floor=0.0)


def test_the_perfect_foresight_schedule_beats_every_operator_on_every_day(microgrid):
    from datamodules.imitation.operators import OPERATORS, RuleOperator, play
    from lightning_modules.imitation import ForesightOracle

    starts = microgrid.starts["test"]
    oracle = play(microgrid.make_env(), ForesightOracle(**microgrid.model_kwargs()), starts, explore=False)
    assert oracle[B.SDG].min() > 0
    for i, spec in enumerate(OPERATORS):
        operator = play(microgrid.make_env(), RuleOperator(spec, (0.05, 0.1), seed=i), starts, explore=False)
        assert (oracle[B.SDG] >= operator[B.SDG] - 1e-3).all(), spec.name


def test_the_perfect_foresight_schedule_is_at_least_the_best_of_a_brute_force_grid():
    import itertools

    from lightning_modules.imitation.foresight import optimal_schedule

    env = BatteryDispatchEnv(synthetic_profiles(seed=5, days=3), horizon=4, battery=Battery(capacity_kwh=3.0))
    grid = np.array(list(itertools.product([-1, -0.5, 0, 0.5, 1], repeat=4)))  # every 4-hour schedule on a grid
    for start in (14, 30, 60):  # afternoons into the evening peak: charging and discharging both pay somewhere
        env.reset(np.full(len(grid), start))
        for t in range(4):
            env.step(grid[:, t : t + 1])
        best = env.sdg().max()
        env.reset(np.array([start]))
        schedule = optimal_schedule(env)
        for t in range(4):
            env.step(schedule[:, t : t + 1])
        assert env.sdg()[0] >= best - 1e-6  # no schedule on the grid scores more in the same environment
