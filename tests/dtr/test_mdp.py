"""Exact policy evaluation in the ICU-Sepsis MDP agrees with Monte-Carlo rollouts."""
import numpy as np
import pytest

from contracts.batch import dtr as B
from datamodules.dtr.mdp import NUM_PATIENT_STATES, SURVIVAL, load_icu_sepsis, rollout, survival_probability


@pytest.mark.parametrize("policy_name", ["clinicians", "deterministic"])
def test_exact_survival_matches_monte_carlo(policy_name):
    mdp = load_icu_sepsis()
    policy = mdp.expert_policy
    if policy_name == "deterministic":
        rng = np.random.default_rng(3)
        policy = np.zeros_like(mdp.expert_policy)
        policy[np.arange(NUM_PATIENT_STATES), rng.integers(0, 25, NUM_PATIENT_STATES)] = 1
    exact = survival_probability(policy, mdp)
    episodes = rollout(policy, 20000, np.random.default_rng(0), mdp, max_steps=1000)
    assert (episodes["outcome"] >= 0).all()
    mc = (episodes["outcome"] == SURVIVAL).mean()
    se = np.sqrt(mc * (1 - mc) / 20000)
    assert abs(exact - mc) < 4 * se, (exact, mc, se)


def test_clinician_survival_matches_package_documentation():
    # the icu-sepsis README gives an expert return of 0.78
    assert survival_probability(load_icu_sepsis().expert_policy) == pytest.approx(0.78, abs=0.005)


def test_label_map_is_a_transpose_and_its_own_inverse():
    a = np.arange(25)
    label = B.label_from_icu_sepsis(a)
    assert sorted(label) == list(a) and (B.icu_sepsis_from_label(label) == a).all()
    assert label[1 * 5 + 3] == B.action_index(vaso_bin=3, fluid_bin=1)
