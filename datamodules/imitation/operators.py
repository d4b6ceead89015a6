"""Historical operators of stated skill, and the loop that plays any policy in the operation environment.

The historical log PAIL learns from comes from rule-based operators (no reward function is ever shown to the
models; only each whole episode's SDG). Each operator combines, then adds Gaussian noise of its own size:
- arbitrage: discharge when the hour's grid carbon intensity and / or price is above the window's mean, charge
  when below, a = -gain (w_c z_carbon + w_p z_price), z = deviation from the window mean over its spread in the
  profiles (the day-ahead summary a scheduler knows);
- self-consumption: charge the PV surplus, and never discharge beyond the building's own deficit.
`OPERATORS` lists them from unskilled (an idle operator with jitter; a contrarian that charges at the evening
peak) to skilled (carbon- and price-aware with self-consumption and little noise).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from contracts.batch import imitation as B
from datamodules.imitation.env import OBS_NAMES, BatteryDispatchEnv

_I = {name: i for i, name in enumerate(OBS_NAMES)}


@dataclass(frozen=True)
class Operator:
    name: str
    carbon_weight: float
    price_weight: float
    self_consumption: bool
    noise: float
    gain: float = 1.0


OPERATORS = (
    Operator("idle-jitter", 0.0, 0.0, False, 0.3),
    Operator("contrarian", 0.0, -1.0, False, 0.2),
    Operator("self-consumption", 0.0, 0.0, True, 0.1),
    Operator("price-arbitrage-noisy", 0.0, 1.0, False, 0.5),
    Operator("price-arbitrage", 0.0, 1.0, True, 0.1),
    Operator("carbon-aware-noisy", 1.0, 1.0, True, 0.4),
    Operator("carbon-aware", 1.0, 1.0, True, 0.05),
)


class RuleOperator:
    """An `Operator` as a policy (contracts.batch.imitation.Policy); `spreads` = (carbon, price) deviation scales."""

    def __init__(self, spec: Operator, spreads: tuple[float, float], seed: int):
        self.spec, self.spreads = spec, spreads
        self.rng = np.random.default_rng(seed)

    def reset_policy_state(self, num_envs: int):
        return None

    def act(self, obs: torch.Tensor, t: int, state, explore: bool):
        o, s = obs.numpy().astype(np.float64), self.spec
        z = s.carbon_weight * o[:, _I["carbon_vs_window"]] / self.spreads[0] \
            + s.price_weight * o[:, _I["price_vs_window"]] / self.spreads[1]
        a = np.clip(-s.gain * z, -1, 1)
        if s.self_consumption:
            deficit = o[:, _I["load"]] - o[:, _I["solar"]]  # in units of the battery's nominal power
            # one bound does both: a surplus (deficit < 0) is charged, a discharge never exceeds the deficit
            a = np.maximum(a, -deficit)
        a = np.clip(a + s.noise * self.rng.standard_normal(len(a)), -1, 1)
        return torch.as_tensor(a, dtype=torch.float32)[:, None], {}, state


@torch.no_grad()
def play(env: BatteryDispatchEnv, policy, starts, explore: bool, device="cpu") -> dict:
    """One episode per window start, all stepped together; returns the trajectory dict (contracts.batch.imitation)."""
    begin = time.perf_counter()
    obs = env.reset(starts)
    E, T = len(starts), env.horizon
    states = np.zeros((E, T + 1, env.obs_dim), np.float32)
    actions = np.zeros((E, T, env.action_dim), np.float32)
    rewards = np.zeros((E, T), np.float32)
    extras: dict[str, list[torch.Tensor]] = {}
    state = policy.reset_policy_state(E)
    if hasattr(policy, "plan"):  # only a perfect-foresight oracle reads the episodes' days ahead
        state = policy.plan(env, state)
    states[:, 0] = obs
    for t in range(T):
        a, step_extras, state = policy.act(torch.as_tensor(obs, device=device), t, state, explore)
        actions[:, t] = a.detach().cpu().numpy()
        if not np.isfinite(actions[:, t]).all():  # the battery would silently idle on NaN
            raise FloatingPointError(f"{type(policy).__name__} gave a non-finite action at step {t}: the policy "
                                     "diverged or produced NaN; check its inputs and learning rate")
        obs, rewards[:, t], _ = env.step(actions[:, t])
        states[:, t + 1] = obs
        for k, v in step_extras.items():
            extras.setdefault(k, []).append(v.detach().cpu())
    out = {B.STATES: torch.from_numpy(states), B.ACTIONS: torch.from_numpy(actions),
           B.REWARD: torch.from_numpy(rewards), B.SDG: torch.from_numpy(env.sdg().astype(np.float32)),
           B.EMISSIONS: torch.from_numpy(env.emissions.astype(np.float32)),
           B.COST: torch.from_numpy(env.cost.astype(np.float32)),
           B.VIOLATIONS: torch.from_numpy((env.violations / T).astype(np.float32))}
    out.update({k: torch.stack(v, 1) for k, v in extras.items()})
    out["rollout_seconds"] = torch.tensor(time.perf_counter() - begin)
    return out
