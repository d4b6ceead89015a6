"""Carbon-aware microgrid operation as imitation-learning "datasets": the operation environment over one building's
profiles, the historical operators' log (training), and greedy evaluation episodes in the true environment.

- `citylearn-microgrid`: a CityLearn building (load = Equipment Electric Power, PV = Solar Generation x the
  building's PV nominal power from schema.json, grid carbon intensity, pricing; the battery's capacity, power and
  efficiency from schema.json).
- `synthetic-microgrid`: the same environment over planted daily cycles (`env.synthetic_profiles`).
Days are split by day of year: day % 5 == 3 validation, == 4 test, the rest training; an episode is `horizon`
hours from midnight of a split's day. The log: every operator of `operators.OPERATORS` plays
`episodes_per_operator` training windows drawn with `log_seed`. Evaluation references: every operator on every
validation (test) window, giving the historical mean SDG and the best operator's mean SDG there.
Following the marl family, the environment lives here and the datasets play the trainer's module at iteration
time (training rollouts for the modules that learn in the true environment, greedy evaluation episodes).
"""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, IterableDataset

from contracts.batch import imitation as B
from contracts.registry import register_dataset
from datamodules.base import DataError, PaperboardDataModule, arrays_hash, require_file, RemoteFile
from datamodules.imitation.env import Battery, BatteryDispatchEnv, Profiles, synthetic_profiles
from datamodules.imitation.operators import OPERATORS, RuleOperator, play

TRAJECTORY_KEYS = (B.STATES, B.ACTIONS, B.SDG, B.EMISSIONS, B.COST, B.VIOLATIONS)


def _identity(x):
    return x


def _module(datamodule):
    trainer = datamodule.trainer
    if trainer is None or trainer.lightning_module is None:
        raise RuntimeError("these datasets play the trainer's module; use trainer.fit/validate/test(datamodule=...)")
    return trainer.lightning_module


class HistoryDataset(IterableDataset):
    """Shuffled mini-batches of the historical log; with the module's `needs_env_rollouts`, each item also holds a
    fresh exploring rollout of the module on `rollout_envs` random training windows."""

    def __init__(self, datamodule: "MicrogridDataModule"):
        self.dm = datamodule
        self.rng = np.random.default_rng(int(torch.initial_seed()) % 2**32)

    def __len__(self) -> int:
        return math.ceil(len(self.dm.history[B.SDG]) / self.dm.batch_size)

    def __iter__(self):
        n = len(self.dm.history[B.SDG])
        order = torch.from_numpy(self.rng.permutation(n))
        module = _module(self.dm)
        for idx in order.split(self.dm.batch_size):
            item = {B.HISTORY: {k: v[idx] for k, v in self.dm.history.items()}}
            if getattr(module, "needs_env_rollouts", False):
                starts = self.rng.choice(self.dm.starts["train"], self.dm.rollout_envs)
                was_training = module.training
                module.eval()
                try:
                    item[B.ROLLOUT] = play(self.dm.make_env(), module, starts, explore=True, device=module.device)
                finally:
                    module.train(was_training)
            yield item


class EvaluationDataset(IterableDataset):
    """Greedy episodes of the module on every window of a split, `eval_batch_size` windows per item."""

    def __init__(self, datamodule: "MicrogridDataModule", split: str):
        self.dm, self.split = datamodule, split

    def __len__(self) -> int:
        return math.ceil(len(self.dm.starts[self.split]) / self.dm.eval_batch_size)

    def __iter__(self):
        module = _module(self.dm)
        was_training = module.training
        module.eval()
        try:
            for chunk in np.array_split(self.dm.starts[self.split], len(self)):
                rollout = play(self.dm.make_env(), module, chunk, explore=False, device=module.device)
                rollout.update(self.dm.references[self.split])
                yield rollout
        finally:
            module.train(was_training)


class MicrogridDataModule(PaperboardDataModule):
    """Base of the microgrid datasets; subclasses give `load_profiles()` and `default_battery()`."""

    def __init__(self, horizon: int = 24, episodes_per_operator: int = 48, sdg_weight: float = 0.5,
                 sdg_floor: float = 0.15, capacity_kwh: float | None = None, power_kw: float | None = None, efficiency: float | None = None,
                 rollout_envs: int = 16, log_seed: int = 0, data_dir: str | None = None, batch_size: int = 64,
                 eval_batch_size: int = 128, num_workers: int = 0):
        super().__init__(data_dir=data_dir, batch_size=batch_size, eval_batch_size=eval_batch_size, num_workers=0)
        if horizon < 1 or horizon > 24 * 7:
            raise ValueError(f"horizon must be 1..168 hours, got {horizon}")
        self.horizon, self.episodes_per_operator, self.sdg_weight = horizon, episodes_per_operator, sdg_weight
        self.sdg_floor = sdg_floor
        self.battery_overrides = {k: v for k, v in dict(capacity_kwh=capacity_kwh, power_kw=power_kw,
                                                        efficiency=efficiency).items() if v is not None}
        self.rollout_envs, self.log_seed = rollout_envs, log_seed
        self.profiles: Profiles | None = None

    def load_profiles(self) -> tuple[Profiles, Battery]:  # pragma: no cover
        raise NotImplementedError

    def make_env(self) -> BatteryDispatchEnv:
        return BatteryDispatchEnv(self.profiles, self.horizon, self.battery, self.sdg_weight, self.sdg_floor)

    def setup(self, stage: str | None = None) -> None:
        if self.profiles is not None:
            return
        self.profiles, battery = self.load_profiles()
        self.battery = Battery(**{**battery.__dict__, **self.battery_overrides})
        days = np.arange((len(self.profiles) - self.horizon) // 24 + 1)
        self.starts = {"train": days[days % 5 < 3] * 24, "val": days[days % 5 == 3] * 24,
                       "test": days[days % 5 == 4] * 24}
        env = self.make_env()
        env.reset(self.starts["train"])
        # operators' z-scores divide by the spread of the window-relative carbon and price over training windows
        spreads = tuple(float(np.std(x - x.mean(1, keepdims=True)) / scale) or 1.0
                        for x, scale in ((env.carbon, env.carbon_scale), (env.price, env.price_scale)))
        rng = np.random.default_rng(self.log_seed)
        logs, self.operator_train_sdg = [], {}
        for i, spec in enumerate(OPERATORS):
            starts = rng.choice(self.starts["train"], self.episodes_per_operator)
            log = play(env, RuleOperator(spec, spreads, seed=self.log_seed * 1000 + i), starts, explore=True)
            logs.append(log)
            self.operator_train_sdg[spec.name] = float(log[B.SDG].mean())
        self.history = {k: torch.cat([log[k] for log in logs]) for k in TRAJECTORY_KEYS}
        sdg = self.history[B.SDG]
        ranks = torch.empty_like(sdg)
        ranks[sdg.argsort()] = torch.arange(len(sdg), dtype=sdg.dtype)
        self.history[B.SDG_RANK] = ranks / max(len(sdg) - 1, 1)
        self.references, self.operator_eval_sdg = {}, {}
        for split in ("val", "test"):
            per_operator = []
            for i, spec in enumerate(OPERATORS):
                log = play(env, RuleOperator(spec, spreads, seed=10_000 + i), self.starts[split], explore=True)
                per_operator.append(log[B.SDG])
            stacked = torch.stack(per_operator)  # [operators, windows]
            self.operator_eval_sdg[split] = dict(zip([s.name for s in OPERATORS], stacked.mean(1).tolist()))
            self.references[split] = {B.REF_MEAN_SDG: stacked.mean(), B.REF_BEST_SDG: stacked.mean(1).max()}
        self.data_hash = arrays_hash({"states": self.history[B.STATES].numpy(),
                                      "actions": self.history[B.ACTIONS].numpy(),
                                      "battery": np.array(list(self.battery.__dict__.values()), np.float64),
                                      "sdg_weight": np.array([self.sdg_weight])})
        self.train_set, self.val_set = HistoryDataset(self), EvaluationDataset(self, "val")
        self.test_set = EvaluationDataset(self, "test")

    def train_dataloader(self):
        return DataLoader(self.train_set, batch_size=None, collate_fn=_identity, num_workers=0)

    def val_dataloader(self):
        return DataLoader(self.val_set, batch_size=None, collate_fn=_identity, num_workers=0)

    def test_dataloader(self):
        return DataLoader(self.test_set, batch_size=None, collate_fn=_identity, num_workers=0)

    def model_kwargs(self) -> dict:
        return {"state_dim": BatteryDispatchEnv.obs_dim, "action_dim": BatteryDispatchEnv.action_dim,
                "horizon": self.horizon}

    def describe(self) -> dict:
        return {"data_hash": self.data_hash, "horizon": self.horizon, "battery": dict(self.battery.__dict__),
                "sdg_weight": self.sdg_weight, "sdg_floor": self.sdg_floor, "log_episodes": int(len(self.history[B.SDG])),
                "windows": {k: int(len(v)) for k, v in self.starts.items()},
                "operator_train_sdg": self.operator_train_sdg, "operator_test_sdg": self.operator_eval_sdg["test"]}


@register_dataset("citylearn-microgrid", family="imitation")
class CityLearnMicrogrid(MicrogridDataModule):
    """One building of a CityLearn dataset folder (default: 2022 phase_all, Building_1)."""

    folder = "citylearn"

    def __init__(self, dataset: str = "citylearn_challenge_2022_phase_all", building: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.dataset, self.building = dataset, building

    def load_profiles(self) -> tuple[Profiles, Battery]:
        root = self.dataset_dir / self.dataset
        name = f"Building_{self.building}"
        frame = pd.read_csv(require_file(root, RemoteFile((f"{name}.csv",))))
        carbon = pd.read_csv(require_file(root, RemoteFile(("carbon_intensity.csv",)))).iloc[:, 0].to_numpy()
        if not (root / "pricing.csv").exists():
            raise DataError(f"{root} has no pricing.csv; the SDG score needs a tariff (use a 2022 CityLearn folder)")
        price = pd.read_csv(root / "pricing.csv").iloc[:, 0].to_numpy()
        schema = json.loads(require_file(root, RemoteFile(("schema.json",))).read_text())["buildings"][name]
        storage = schema["electrical_storage"]["attributes"]
        pv_kw = float(schema["pv"]["attributes"]["nominal_power"])
        hour = (frame["Hour"].to_numpy() % 24).astype(np.float64)  # CityLearn counts hours 1..24
        profiles = Profiles(load=frame["Equipment Electric Power [kWh]"].to_numpy(),
                            solar=frame["Solar Generation [W/kW]"].to_numpy() * pv_kw / 1000.0,
                            carbon=carbon, price=price, hour=hour)
        return profiles, Battery(capacity_kwh=float(storage["capacity"]), power_kw=float(storage["nominal_power"]),
                                 efficiency=float(storage["efficiency"]))

    def describe(self) -> dict:
        return {**super().describe(), "dataset": self.dataset, "building": self.building}


@register_dataset("synthetic-microgrid", family="imitation")
class SyntheticMicrogrid(MicrogridDataModule):
    """Planted daily cycles (env.synthetic_profiles), `days` long, with CityLearn 2022 Building_1's battery."""

    def __init__(self, days: int = 365, profile_seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.days, self.profile_seed = days, profile_seed

    def load_profiles(self) -> tuple[Profiles, Battery]:
        return synthetic_profiles(self.profile_seed, self.days), Battery()
