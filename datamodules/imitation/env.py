"""A carbon-aware battery-dispatch environment over hourly building profiles, vectorised over episodes.

One building with rooftop PV and a battery (CityLearn 2022's Building_1 sizes by default: 6.4 kWh, 5 kW, 90%
round-trip efficiency, 4 kW of PV). Each hour t the operator sets a_t in [-1, 1] (fraction of the battery's
nominal power; > 0 charges). With load L_t, PV generation G_t, battery energy drawn in c_t and delivered out d_t:

    grid_t  = L_t - G_t + c_t - d_t          import_t = max(grid_t, 0), export_t = max(-grid_t, 0)
    soc_t+1 = soc_t + eta_c c_t - d_t / eta_d    (eta_c = eta_d = sqrt(efficiency))

Exports are neither paid nor credited with avoided emissions (a net-metering-free tariff), so discharging beyond
the building's demand wastes energy. Emissions = sum_t import_t x carbon_t (kg CO2), cost = sum_t import_t x
price_t ($). A set-point the battery cannot follow (state-of-charge bounds, power limit, |a| > 1) is clipped and
counts as a violation step. Energy left in the battery is not lost: at the end of an episode the change of stored
energy (deliverable, soc_T - soc_0 times eta_d) is credited at the window's mean carbon intensity and price (a
negative change, energy taken from the initial charge, is debited the same way), so no operator gains by
emptying the battery or loses by ending full.

SDG score (percent) = 100 [w (E0 - E) / E0 + (1 - w)(K0 - K) / K0]: the weighted relative reduction of emissions
E and cost K against the same window without a battery (E0, K0); w = `sdg_weight` (0.5). On a window the PV
nearly covers (or a vacant day) E0 and K0 approach zero and one such day would dominate a mean of ratios, so each
denominator is floored at `sdg_floor` (0.15) times the building's gross demand over a typical window (the year's
mean hourly load x carbon, load x price, PV ignored, times the horizon). On CityLearn's Building_1 the floor never
binds (E0 is at least 18% of it on every day); on Building_12, whose PV covers whole days and which has vacant
days, it binds on about one window in six. The per-step reward
r_t = 100 [w (e0_t - e_t) / E0 + (1 - w)(k0_t - k_t) / K0] sums to it exactly; only the oracle and the
evaluation read it (the imitation models see the SDG of whole historical episodes only).

CityLearn (PyPI) itself is not used: its 3.x wheels ship no data and pin old numpy / scikit-learn / gymnasium
and openstudio; this file re-implements the one piece needed (a battery with efficiency and limits) in numpy.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

HOURS_PER_YEAR = 8760
OBS_NAMES = ("soc", "load", "solar", "carbon", "price", "carbon_vs_window", "price_vs_window", "hour_sin",
             "hour_cos", "time_left")


@dataclass(frozen=True)
class Battery:
    capacity_kwh: float = 6.4
    power_kw: float = 5.0
    efficiency: float = 0.9  # round trip
    initial_soc: float = 0.5  # fraction of capacity at the start of every episode

    @property
    def eta(self) -> float:
        return float(np.sqrt(self.efficiency))


@dataclass
class Profiles:
    """Hourly series of one building over a year (kWh per hour, kg CO2/kWh, $/kWh, hour of day 0..23)."""

    load: np.ndarray
    solar: np.ndarray
    carbon: np.ndarray
    price: np.ndarray
    hour: np.ndarray

    def __post_init__(self):
        for name in ("load", "solar", "carbon", "price", "hour"):
            setattr(self, name, np.asarray(getattr(self, name), np.float64))
        lengths = {len(getattr(self, n)) for n in ("load", "solar", "carbon", "price", "hour")}
        if len(lengths) != 1:
            raise ValueError(f"profiles of unequal length: {sorted(lengths)}")

    def __len__(self) -> int:
        return len(self.load)


def synthetic_profiles(seed: int = 0, days: int = 365, pv_kw: float = 4.0) -> Profiles:
    """A year of planted daily cycles: evening load peak, midday PV, dirtier grid at night and in the evening,
    a time-of-use tariff (0.21 $/kWh, 0.54 $/kWh from 16:00 to 21:00 as in CityLearn 2022's pricing)."""
    rng = np.random.default_rng(seed)
    hour = np.tile(np.arange(24), days)
    day_scale = 1 + 0.2 * rng.standard_normal(days).repeat(24)
    load = (0.8 + 1.2 * np.exp(-((hour - 19) ** 2) / 6.0)) * day_scale + 0.1 * rng.random(24 * days)
    clear = np.clip(np.sin(np.pi * (hour - 6) / 12), 0, None)
    solar = pv_kw * 0.8 * clear * rng.uniform(0.3, 1.0, days).repeat(24)
    carbon = 0.16 + 0.05 * np.cos(2 * np.pi * (hour - 20) / 24) - 0.03 * clear + 0.005 * rng.standard_normal(24 * days)
    price = np.where((hour >= 16) & (hour <= 20), 0.54, 0.21)
    return Profiles(load=np.clip(load, 0.05, None), solar=solar, carbon=np.clip(carbon, 0.05, None), price=price,
                    hour=hour)


class BatteryDispatchEnv:
    """`len(starts)` episodes of `horizon` hours stepped as one (each episode starts at its own hour index)."""

    action_dim = 1
    obs_dim = len(OBS_NAMES)

    def __init__(self, profiles: Profiles, horizon: int = 24, battery: Battery = Battery(), sdg_weight: float = 0.5,
                 sdg_floor: float = 0.15):
        if not 0 <= sdg_weight <= 1:
            raise ValueError(f"sdg_weight must be in [0, 1], got {sdg_weight}")
        if not 0 < sdg_floor <= 1:
            raise ValueError(f"sdg_floor must be in (0, 1], got {sdg_floor}")
        self.p, self.horizon, self.battery, self.sdg_weight = profiles, horizon, battery, sdg_weight
        self.emissions_floor = sdg_floor * float(np.mean(profiles.load * profiles.carbon)) * horizon
        self.cost_floor = sdg_floor * float(np.mean(profiles.load * profiles.price)) * horizon
        self.carbon_scale = float(profiles.carbon.max())
        self.price_scale = float(profiles.price.max())

    # ----- episodes ------------------------------------------------------------------------------------------------
    def reset(self, starts) -> np.ndarray:
        starts = np.asarray(starts, np.int64)
        if starts.min() < 0 or starts.max() + self.horizon > len(self.p):
            raise ValueError("an episode window runs past the profiles")
        self.starts, self.t = starts, 0
        idx = starts[:, None] + np.arange(self.horizon)  # [E, T]
        self.load, self.solar = self.p.load[idx], self.p.solar[idx]
        self.carbon, self.price, self.hour = self.p.carbon[idx], self.p.price[idx], self.p.hour[idx]
        baseline_import = np.clip(self.load - self.solar, 0, None)
        self.base_emissions_t, self.base_cost_t = baseline_import * self.carbon, baseline_import * self.price
        # the no-battery totals normalise the SDG, floored at a share of the gross demand (see the docstring)
        self.base_emissions = np.maximum(self.base_emissions_t.sum(1), max(self.emissions_floor, 1e-9))
        self.base_cost = np.maximum(self.base_cost_t.sum(1), max(self.cost_floor, 1e-9))
        E = len(starts)
        self.soc = np.full(E, self.battery.initial_soc * self.battery.capacity_kwh)
        self.emissions, self.cost = np.zeros(E), np.zeros(E)
        self.violations = np.zeros(E)
        return self.observe()

    def observe(self) -> np.ndarray:
        t = min(self.t, self.horizon - 1)  # the observation after the last step repeats the last hour's exogenous part
        P, b = self.battery.power_kw, self.battery
        carbon, price = self.carbon[:, t], self.price[:, t]
        hour = self.hour[:, t] + (1 if self.t == self.horizon else 0)
        return np.stack([
            self.soc / b.capacity_kwh, self.load[:, t] / P, self.solar[:, t] / P,
            carbon / self.carbon_scale, price / self.price_scale,
            (carbon - self.carbon.mean(1)) / self.carbon_scale, (price - self.price.mean(1)) / self.price_scale,
            np.sin(2 * np.pi * hour / 24), np.cos(2 * np.pi * hour / 24),
            np.full(len(self.soc), 1 - self.t / self.horizon),
        ], 1).astype(np.float32)

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
        """actions [E, 1] -> (observations [E, S], per-step reward [E], energy flows of this step {name: [E]})."""
        if self.t >= self.horizon:
            raise RuntimeError("episode over: reset first")
        b, t = self.battery, self.t
        a = np.asarray(actions, np.float64).reshape(len(self.soc))
        a = np.nan_to_num(a, nan=0.0)
        request = np.clip(a, -1, 1) * b.power_kw  # kWh this hour at the battery's terminals
        charge = np.minimum(np.clip(request, 0, None), (b.capacity_kwh - self.soc) / b.eta)
        drawn_out = np.minimum(np.clip(-request, 0, None) / b.eta, self.soc)  # energy leaving the cells
        discharge = drawn_out * b.eta  # energy delivered to the building
        followed = np.isclose(charge - discharge, a * b.power_kw, rtol=0, atol=1e-9)
        soc_before = self.soc
        self.soc = np.clip(soc_before + b.eta * charge - drawn_out, 0, b.capacity_kwh)
        grid = self.load[:, t] - self.solar[:, t] + charge - discharge
        imported, exported = np.clip(grid, 0, None), np.clip(-grid, 0, None)
        e_t, k_t = imported * self.carbon[:, t], imported * self.price[:, t]
        self.emissions += e_t
        self.cost += k_t
        self.violations += ~followed
        if t == self.horizon - 1:  # the stored-energy settlement of the docstring
            stored = (self.soc - b.initial_soc * b.capacity_kwh) * b.eta
            e_t = e_t - stored * self.carbon.mean(1)
            k_t = k_t - stored * self.price.mean(1)
            self.emissions -= stored * self.carbon.mean(1)
            self.cost -= stored * self.price.mean(1)
        w = self.sdg_weight
        reward = 100 * (w * (self.base_emissions_t[:, t] - e_t) / self.base_emissions
                        + (1 - w) * (self.base_cost_t[:, t] - k_t) / self.base_cost)
        self.t += 1
        flows = {"load": self.load[:, t], "solar": self.solar[:, t], "charge": charge, "discharge": discharge,
                 "drawn_out": drawn_out, "import": imported, "export": exported, "soc_before": soc_before,
                 "soc_after": self.soc.copy()}
        return self.observe(), reward, flows

    def sdg(self) -> np.ndarray:
        """The SDG score of each episode so far (percent)."""
        w = self.sdg_weight
        return 100 * (w * (self.base_emissions - self.emissions) / self.base_emissions
                      + (1 - w) * (self.base_cost - self.cost) / self.base_cost)

    def window_means(self) -> tuple[np.ndarray, np.ndarray]:
        """Each episode's mean carbon intensity and price (the day-ahead summary a scheduler knows)."""
        return self.carbon.mean(1), self.price.mean(1)
