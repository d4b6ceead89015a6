"""The ICU-Sepsis MDP (PyPI `icu-sepsis`, Choudhary et al. 2024): its arrays, exact policy evaluation and
Monte-Carlo rollouts.

The MDP has 716 states (713 patient states, then death=713, survival=714, an absorbing s_inf=715) and 25
actions indexed fluid_bin*5 + vaso_bin; reward +1 on reaching survival, gamma = 1, so a policy's value is its
probability of survival. Because the dynamics are known, a recommended policy's survival is computed exactly by
solving the linear system of absorption probabilities (no counterfactual estimator needed).

The simulator is data: it is registered as `icu-sepsis` in `contracts.registry.SIMULATORS`, where dtr
models look it up to evaluate the policy they recommend (`contracts.batch.dtr.PolicySimulator`).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import ClassVar

import numpy as np

from contracts.registry import register_simulator

DEATH, SURVIVAL, ABSORB = 713, 714, 715
NUM_PATIENT_STATES = 713
_REFERENCE: dict = {}  # id(mdp) -> reference_survival (policy iteration takes seconds)
# The 47 state-vector columns follow the AI-Clinician pipeline's colbin + colnorm + collog order [our reading;
# column 31 = SOFA is confirmed: its correlation with env.sofa_scores is 1.00].
STATE_COLUMNS = (
    "gender", "mechvent", "max_dose_vaso", "re_admission", "age", "Weight_kg", "GCS", "HR", "SysBP", "MeanBP",
    "DiaBP", "RR", "Temp_C", "FiO2_1", "Potassium", "Sodium", "Chloride", "Glucose", "Magnesium", "Calcium",
    "Hb", "WBC_count", "Platelets_count", "PTT", "PT", "Arterial_pH", "paO2", "paCO2", "Arterial_BE", "HCO3",
    "Arterial_lactate", "SOFA", "SIRS", "Shock_Index", "PaO2_FiO2", "cumulated_balance", "SpO2", "BUN",
    "Creatinine", "SGOT", "SGPT", "Total_bili", "INR", "input_total", "input_4hourly", "output_total",
    "output_4hourly",
)


@dataclass(frozen=True)
class SepsisMDP:
    transitions: np.ndarray  # [716, 25, 716]
    initial: np.ndarray  # [716]
    expert_policy: np.ndarray  # [716, 25] (terminal rows are zero)
    state_vectors: np.ndarray  # [716, 47]
    sofa: np.ndarray  # [716]
    admissible: np.ndarray  # [716, 25] bool
    num_patient_states: ClassVar[int] = NUM_PATIENT_STATES

    def survival_probability(self, policy: np.ndarray) -> float:
        return survival_probability(policy, self)

    def reference_survival(self) -> dict[str, float]:
        return reference_survival(self)


@register_simulator("icu-sepsis", family="dtr")
@lru_cache(maxsize=1)
def load_icu_sepsis() -> SepsisMDP:
    # Read the package's asset files without importing it: its __init__ imports the unmaintained `gym`,
    # which prints a warning on every import.
    import importlib.util

    spec = importlib.util.find_spec("icu_sepsis")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the ICU-Sepsis MDP needs the PyPI package icu-sepsis (pip install icu-sepsis==2.0.1)")
    assets = Path(next(iter(spec.submodule_search_locations))) / "envs" / "assets"
    with np.load(assets / "dynamics.npz") as z:
        arrays = {k: z[k] for k in z.files}
    lines = (assets / "admissible_actions.txt").read_text().splitlines()
    admissible = np.zeros(arrays["tx_mat"].shape[:2], dtype=bool)
    for state, line in enumerate(lines[1:1 + admissible.shape[0]]):
        admissible[state, [int(a) for a in line.split()]] = True
    return SepsisMDP(arrays["tx_mat"], arrays["d_0"], arrays["expert_policy"], arrays["state_cluster_centers"],
                     arrays["sofa_scores"], admissible)


def survival_probability(policy: np.ndarray, mdp: SepsisMDP | None = None, per_state: bool = False):
    """Exact P(survival) of a stationary policy [716 or 713, 25] (rows = action distributions, MDP indexing).

    Absorption probabilities v over the 713 transient states solve v = P_pi[T,T] v + P_pi[T, survival];
    the answer is d_0 . v (gamma = 1, reward 1 on survival). s_inf (715) is only reachable from terminals.
    Inadmissible actions follow the environment's default 'mean' strategy, i.e. tx_mat as given."""
    mdp = mdp or load_icu_sepsis()
    pi = np.asarray(policy, dtype=np.float64)[:NUM_PATIENT_STATES]
    P = np.einsum("sa,sat->st", pi, mdp.transitions[:NUM_PATIENT_STATES])
    T = P[:, :NUM_PATIENT_STATES]
    v = np.linalg.solve(np.eye(NUM_PATIENT_STATES) - T, P[:, SURVIVAL])
    value = float(mdp.initial[:NUM_PATIENT_STATES] @ v)
    return (value, v) if per_state else value


def clinician_advantage(mdp: SepsisMDP | None = None) -> np.ndarray:
    """[713, 25] A(s, a) = Q(s, a) - V(s) under the clinicians' policy: the change in survival probability from
    taking action a once at state s and following the clinicians afterwards (exact, from the known dynamics)."""
    mdp = mdp or load_icu_sepsis()
    _, v = survival_probability(mdp.expert_policy, mdp, per_state=True)
    q = mdp.transitions[:NUM_PATIENT_STATES] @ np.r_[v, 0.0, 1.0, 0.0]
    return q - v[:, None]


def worst_policy(mdp: SepsisMDP | None = None) -> np.ndarray:
    """[716, 25] the deterministic policy taking, at each patient state, the admissible action of lowest clinicians'
    Q-value (a bad decision that a clinician could make there; terminal rows zero)."""
    mdp = mdp or load_icu_sepsis()
    q = np.where(mdp.admissible[:NUM_PATIENT_STATES], clinician_advantage(mdp), np.inf)
    policy = np.zeros_like(mdp.expert_policy)
    policy[np.arange(NUM_PATIENT_STATES), q.argmin(1)] = 1.0
    return policy


def reference_survival(mdp: SepsisMDP | None = None) -> dict[str, float]:
    """The range a recommended policy's survival lives in: uniform random, the clinicians, the clinicians' most
    likely action (their mode), and the MDP's optimum (policy iteration)."""
    mdp = mdp or load_icu_sepsis()
    if id(mdp) in _REFERENCE:
        return dict(_REFERENCE[id(mdp)])
    S = NUM_PATIENT_STATES
    uniform = np.zeros_like(mdp.expert_policy)
    uniform[:S] = 1.0 / uniform.shape[1]
    mode = np.zeros_like(mdp.expert_policy)
    mode[np.arange(S), mdp.expert_policy[:S].argmax(1)] = 1.0
    policy = mode  # policy iteration: exact evaluation, greedy improvement, until the policy is stable
    for _ in range(100):
        _, v = survival_probability(policy, mdp, per_state=True)
        q = mdp.transitions[:S] @ np.r_[v, 0.0, 1.0, 0.0]
        current = policy[:S].argmax(1)
        # switch only on a strict improvement, so that ties cannot make the iteration cycle
        greedy = np.where(q.max(1) > q[np.arange(S), current] + 1e-12, q.argmax(1), current)
        improved = np.zeros_like(policy)
        improved[np.arange(S), greedy] = 1.0
        if np.array_equal(improved, policy):
            break
        policy = improved
    _REFERENCE[id(mdp)] = {"random": survival_probability(uniform, mdp),
                           "clinicians": survival_probability(mdp.expert_policy, mdp),
                           "clinicians_mode": survival_probability(mode, mdp), "optimal": survival_probability(policy, mdp)}
    return dict(_REFERENCE[id(mdp)])


def rollout(policy: np.ndarray, num_episodes: int, rng: np.random.Generator, mdp: SepsisMDP | None = None,
            max_steps: int = 500, start: np.ndarray | None = None, alternative: np.ndarray | None = None,
            alternative_rate: float = 0.0) -> dict[str, np.ndarray]:
    """Vectorised episodes under a stationary policy (MDP indexing). With `alternative`, each decision is drawn
    from it instead with probability `alternative_rate` (flagged in `from_alternative` [N, T]). Returns states
    [N, T+1] (-1 after the end), actions [N, T] (-1 after the end), length [N] (steps taken), outcome [N]
    (terminal state, or -1 when cut at max_steps)."""
    mdp = mdp or load_icu_sepsis()
    pi_cum = np.cumsum(np.asarray(policy, dtype=np.float64), axis=1)
    alt_cum = np.cumsum(np.asarray(alternative, dtype=np.float64), axis=1) if alternative is not None else pi_cum
    tx_cum = np.cumsum(mdp.transitions, axis=2)
    state = start if start is not None else _sample(np.broadcast_to(np.cumsum(mdp.initial), (num_episodes, 716)), rng)
    states = np.full((num_episodes, max_steps + 1), -1, dtype=np.int64)
    actions = np.full((num_episodes, max_steps), -1, dtype=np.int64)
    from_alternative = np.zeros((num_episodes, max_steps), dtype=bool)
    states[:, 0] = state
    alive = state < NUM_PATIENT_STATES
    for t in range(max_steps):
        if not alive.any():
            states, actions, from_alternative = states[:, : t + 1], actions[:, :t], from_alternative[:, :t]
            break
        idx = np.flatnonzero(alive)
        if alternative is not None:
            alt = rng.random(len(idx)) < alternative_rate
            from_alternative[idx, t] = alt
            a = _sample(np.where(alt[:, None], alt_cum[state[idx]], pi_cum[state[idx]]), rng)
        else:
            a = _sample(pi_cum[state[idx]], rng)
        nxt = _sample(tx_cum[state[idx], a], rng)
        actions[idx, t] = a
        state[idx] = nxt
        states[idx, t + 1] = nxt
        alive[idx] = nxt < NUM_PATIENT_STATES
    length = (actions >= 0).sum(1)
    final = states[np.arange(num_episodes), length]
    outcome = np.where(final >= NUM_PATIENT_STATES, final, -1)
    return {"states": states, "actions": actions, "length": length, "outcome": outcome,
            "from_alternative": from_alternative}


def _sample(cum: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One categorical draw per row of cumulative probabilities (inverse CDF, vectorised)."""
    u = rng.random(cum.shape[0])[:, None] * cum[:, -1:]
    return np.minimum((u >= cum).sum(1), cum.shape[1] - 1)
