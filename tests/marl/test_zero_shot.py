"""The generalisation protocol: normalised cross-play, held-out partners, scripted partners, the zero-shot score."""
from __future__ import annotations

import numpy as np
import pytest

from benchmarks.marl_crossplay import (bootstrap_interval, evaluate, normalise_by_partner, normalise_by_range,
                                       zero_shot_scores)
from contracts.batch.marl import RETURN
from datamodules.marl.collect_treasure_numpy import BatchedCollectTreasure
from datamodules.marl.mpe_env import ScenarioConfig
from datamodules.marl.rollout import RandomPolicy, collect_rollout
from lightning_modules.marl.crossplay import MixedTeam, partner_slots
from lightning_modules.marl.scripted import ScriptedCollectTreasure

CT = ScenarioConfig("collect_treasure", {"num_collectors": 3, "num_deposits": 2, "num_treasures": 3, "max_cycles": 25})
SEEDS = 2_000_000 + np.arange(64)


def test_partner_slots_spread_a_fraction_of_the_team():
    assert partner_slots(5).tolist() == [False, True, False, True, False]  # default: the odd slots
    assert partner_slots(5, 0.0).sum() == 0 and partner_slots(5, 1.0).all()
    assert partner_slots(4, 0.25).tolist() == [False, False, False, True]
    with pytest.raises(ValueError, match="share of the team's slots"):
        partner_slots(5, 1.5)


def test_normalised_selfplay_is_one_and_random_with_itself_is_zero():
    # three teams: random (self-play -2), A (10), B (4); off-diagonal = mixed teams
    M = np.array([[-2.0, 3.0, 1.0], [3.5, 10.0, 5.0], [0.5, 6.0, 4.0]])
    selfplay = np.diag(M)
    by_partner = normalise_by_partner(M, selfplay, random_return=-2.0, min_gain=1.0)
    assert by_partner[1, 1] == 1.0 and by_partner[2, 2] == 1.0  # a team with itself keeps all its own gain
    assert np.isnan(by_partner[:, 0]).all()  # the random team has no gain to keep: not a usable partner
    assert by_partner[0, 1] == pytest.approx(5.0 / 12.0)  # random ego keeps 5 of A's 12 over random
    by_range = normalise_by_range(M, random_return=-2.0, best_return=10.0)
    assert by_range[0, 0] == 0.0 and by_range[1, 1] == 1.0
    with pytest.raises(ValueError, match="does not beat the random team"):
        normalise_by_range(M, random_return=3.0, best_return=2.0)


def test_zero_shot_score_uses_held_out_partners_only_with_an_interval():
    norm = np.array([[1.0, 0.2, 0.4], [0.6, 1.0, 0.8], [0.3, 0.5, 1.0]])
    held_out = ~np.eye(3, dtype=bool)
    scores = zero_shot_scores(norm, ["a", "a", "b"], held_out, n_boot=500)
    assert scores["per_run"] == pytest.approx([0.3, 0.7, 0.4])  # the diagonal (own team) never counts
    a = scores["per_model"]["a"]
    assert a["score"] == pytest.approx(0.5) and a["ci95"][0] <= 0.5 <= a["ci95"][1] and a["ci95"][0] < a["ci95"][1]
    mean, (lo, hi) = bootstrap_interval(np.full((3, 4), 0.7), n_boot=100)
    assert mean == lo == hi == pytest.approx(0.7)  # no spread, no interval width


def test_scripted_partner_raises_a_random_agents_normalised_return():
    env = BatchedCollectTreasure(CT, len(SEEDS))
    scripted, rand = ScriptedCollectTreasure.for_env(env), RandomPolicy(seed=0)
    random_self = collect_rollout(env, rand, SEEDS, explore=False)[RETURN].mean().item()
    scripted_self = collect_rollout(env, scripted, SEEDS, explore=False)[RETURN].mean().item()
    assert scripted_self > random_self + 5  # the scripted team is competent
    with_scripted = collect_rollout(env, MixedTeam(RandomPolicy(seed=1), scripted), SEEDS, explore=False)[RETURN]
    with_random = collect_rollout(env, MixedTeam(RandomPolicy(seed=1), RandomPolicy(seed=2)), SEEDS, explore=False)[RETURN]
    M = np.array([[with_random.mean().item(), with_scripted.mean().item()]])
    norm = normalise_by_range(M, random_self, scripted_self)
    assert abs(norm[0, 0]) < 0.15 and norm[0, 1] > norm[0, 0] + 0.2


def test_evaluate_end_to_end_with_scripted_and_random_teams():
    """Two scripted 'runs' (one noisy) and a random one: the protocol's references, held-out set and scores."""
    env = BatchedCollectTreasure(CT, 32)
    seeds = SEEDS[:32]
    policies = [ScriptedCollectTreasure.for_env(env, brake=0.3), ScriptedCollectTreasure.for_env(env, noise=0.5),
                RandomPolicy(seed=3)]
    ev = evaluate(policies, ["good/s0", "weak/s0", "random/s0"], ["good", "weak", "random"], env, seeds, n_boot=200)
    assert ev["partner_labels"][-2:] == ["scripted", "scripted_noisy"]
    assert ev["matrix"].shape == (3, 5) and ev["best_return"] >= ev["selfplay"][0]
    assert ev["by_partner"][0, 0] == pytest.approx(1.0) and ev["by_partner"][1, 1] == pytest.approx(1.0)
    assert "random/s0" not in ev["competent_partners"] and not ev["held_out"][:, 2].any()
    assert not ev["held_out"][[0, 1, 2], [0, 1, 2]].any()
    good, rnd = ev["zsc_range_by_model"]["good"]["score"], ev["zsc_range_by_model"]["random"]["score"]
    assert good > rnd  # a competent ego helps its partners more than a random one
