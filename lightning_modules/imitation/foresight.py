"""The perfect-foresight optimum: per episode, the battery schedule that maximises the SDG score given the whole
day's load, PV, carbon intensity and price in advance (what no operator or model knows). It is the exact ceiling
of every row on a board: no policy that sees the day hour by hour can score more on the same day.

The environment's dynamics are linear in the energy charged at the bus c_t and delivered d_t (0 <= c_t, d_t <= P):
soc_t = soc_{t-1} + eta c_t - d_t / eta within [0, capacity]; import_t >= load_t - pv_t + c_t - d_t, import_t >= 0;
and the SDG is affine in the imports and the final charge (datamodules/imitation/env.py), so the optimum is one
linear program, solved for all episodes at once (block-diagonal, scipy's HiGHS). The schedule is then played in
the true environment through the same evaluation as every other row, so its metrics are measured, not computed.
A set-point the solver puts at a bound up to its tolerance may be clipped by the environment and count as a
violation step; the energy difference is below 1e-6 kWh.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from scipy.optimize import linprog

from contracts.registry import register_model
from lightning_modules.imitation.base import ImitationModule


def optimal_schedule(env) -> np.ndarray:
    """`env`: a datamodules.imitation.env.BatteryDispatchEnv after `reset(starts)` (the model layer does not import the
    data layer). Returns the SDG-optimal actions [E, T] in [-1, 1] (a_t = (c_t - d_t) / P)."""
    b, w = env.battery, env.sdg_weight
    E, T = env.load.shape
    eta, P = b.eta, b.power_kw
    n = 4 * T  # per episode: c, d, import, soc after each step
    c, d, imp, soc = (np.arange(T) + k * T for k in range(4))
    # objective: imports at their weighted carbon/price, minus the final charge credited at the window's means
    per_import = w * env.carbon / env.base_emissions[:, None] + (1 - w) * env.price / env.base_cost[:, None]
    credit = eta * (w * env.carbon.mean(1) / env.base_emissions + (1 - w) * env.price.mean(1) / env.base_cost)
    cost = np.zeros((E, n))
    cost[:, imp] = per_import
    cost[:, soc[-1]] = -credit
    # soc_t - soc_{t-1} - eta c_t + d_t / eta = 0   (soc_{-1} = the initial charge)
    rows_eq = np.repeat(np.arange(T), 4)
    cols_eq = np.stack([soc, np.r_[soc[0], soc[:-1]], c, d], 1).ravel()
    vals_eq = np.tile([1.0, -1.0, -eta, 1 / eta], T)
    first = np.ones(4 * T, bool)
    first[1] = False  # step 0 has no previous-soc variable
    block_eq = sp.csr_matrix((vals_eq[first], (rows_eq[first], cols_eq[first])), shape=(T, n))
    b_eq = np.zeros((E, T))
    b_eq[:, 0] = env.soc
    # c_t - d_t - import_t <= pv_t - load_t
    block_ub = sp.csr_matrix((np.tile([1.0, -1.0, -1.0], T), (np.repeat(np.arange(T), 3),
                              np.stack([c, d, imp], 1).ravel())), shape=(T, n))
    b_ub = env.solar - env.load
    bounds = np.zeros((n, 2))
    bounds[np.r_[c, d], 1] = P
    bounds[imp, 1] = np.inf
    bounds[soc, 1] = b.capacity_kwh
    result = linprog(cost.ravel(), A_ub=sp.block_diag([block_ub] * E, format="csr"), b_ub=b_ub.ravel(),
                     A_eq=sp.block_diag([block_eq] * E, format="csr"), b_eq=b_eq.ravel(),
                     bounds=np.tile(bounds, (E, 1)), method="highs")
    if result.status != 0:
        raise RuntimeError(f"the foresight linear program failed: {result.message}")
    x = result.x.reshape(E, n)
    return np.clip((x[:, c] - x[:, d]) / P, -1, 1)


@register_model("foresight_oracle", family="imitation")
class ForesightOracle(ImitationModule):
    """Acts on the schedule `optimal_schedule` computes when an episode starts; it has nothing to train (its
    training epochs pass over the log without an update)."""

    def __init__(self, state_dim: int, action_dim: int, horizon: int):
        super().__init__(state_dim, action_dim, horizon)
        self.save_hyperparameters()

    def plan(self, env, state):
        """Called by `play` right after the environment's reset: reads the episodes' whole days."""
        return {"schedule": torch.as_tensor(optimal_schedule(env), dtype=torch.float32)}

    def reset_policy_state(self, num_envs: int):
        return None

    def act(self, obs: torch.Tensor, t: int, state, explore: bool):
        if state is None:
            raise RuntimeError("foresight_oracle acts only inside `play`, which gives it the day ahead (plan)")
        return state["schedule"][:, t : t + 1].to(obs.device), {}, state

    def learn(self, item: dict) -> dict:
        return {}

    def configure_optimizers(self):
        return None

    @staticmethod
    def search_space(trial) -> dict:
        return {}
