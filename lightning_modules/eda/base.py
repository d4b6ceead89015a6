"""The eda family base: sizers. A sizer maps a circuit to integer library sizes of its instances (connectivity never
changes) within the circuit's area budget; it is scored on every validation / test circuit by the exact STA:
  wns, tns (ns), nve (violating endpoints), area_ratio (area / mapped area), runtime (s of sizing),
  wns_gain, tns_gain, nve_gain (% improvement over the mapped, minimum-size netlist; higher is better),
and on test, where OpenSTA is installed and `signoff` is on, by OpenSTA on the written netlist: signoff_wns,
signoff_tns, signoff_nve and sta_gap (the largest |our endpoint slack - OpenSTA's|, ns). Metrics are averaged over
circuits; each circuit's value is logged too (`tns_gain_<circuit>`).
Sizers that learn nothing size each circuit once and reuse the result at later validations.
The shared pieces of differentiable sizing also live here: the Eq. 8 timing target with log-sum-exp smoothing, and
the area-budget repair.
"""
from __future__ import annotations

import time

import lightning.pytorch as pl
import torch
from torchmetrics import MeanMetric

from contracts.batch import eda as B

METRICS = ("wns", "tns", "nve", "area_ratio", "runtime", "wns_gain", "tns_gain", "nve_gain")
SIGNOFF = ("signoff_wns", "signoff_tns", "signoff_nve", "sta_gap")


def soft_min(values: torch.Tensor, gamma: float) -> torch.Tensor:
    """-gamma log sum exp(-v / gamma): a smooth lower bound of min(v) (Eq. 9's log-sum-exp)."""
    return -gamma * torch.logsumexp(-values / gamma, 0)


def timing_target(endpoint_slack: torch.Tensor, mu_tau: float = 0.5, mu_omega: float = 0.5,
                  gamma: float = 0.01) -> torch.Tensor:
    """Eq. 8 on endpoint slacks (ns): mu_tau x mean negative slack over violating endpoints + mu_omega x (smoothed)
    worst slack. Larger is better; sizers ascend it."""
    neg = -torch.nn.functional.softplus(-endpoint_slack / gamma) * gamma  # smooth min(0, s)
    n = (endpoint_slack < 0).sum().clamp(min=1)
    return mu_tau * neg.sum() / n + mu_omega * soft_min(endpoint_slack, gamma)


def repair_budget(circuit, sizes: torch.Tensor) -> torch.Tensor:
    """Integer sizes within the area budget: while over budget, step down (by one size, never below the mapped size)
    the upsized gates with the most slack first."""
    x = sizes.clone().long()
    for _ in range(64):
        area = float(circuit.area(x.to(torch.float64)))
        excess = area - circuit.area_budget
        if excess <= 1e-9:
            return x
        with torch.no_grad():
            slack = circuit.analyse(x.to(torch.float64))["gate_slack"]
        can = x > circuit.init_size
        saving = circuit.inst_area(x.to(torch.float64)) - circuit.inst_area((x - 1).clamp(min=0).to(torch.float64))
        order = torch.argsort(torch.where(can, slack, torch.tensor(-float("inf"), dtype=slack.dtype)), descending=True)
        order = order[can[order]]
        if order.numel() == 0:
            break
        need = torch.cumsum(saving[order], 0)
        take = order[: int((need < excess).sum()) + 1]
        x[take] -= 1
    if float(circuit.area(x.to(torch.float64))) > circuit.area_budget + 1e-9:
        raise RuntimeError(f"{circuit.name}: no sizing within the area budget (the mapped sizes exceed it)")
    return x


class SizingModule(pl.LightningModule):
    learns = False  # a sizer without a trained model sizes each circuit once

    def __init__(self, num_families: int, signoff: bool = True):
        super().__init__()
        self.automatic_optimization = False
        self.num_families, self.signoff = num_families, signoff
        self.metrics = torch.nn.ModuleDict({f"{stage}_{name}": MeanMetric(nan_strategy="disable")
                                            for stage in ("val", "test") for name in METRICS + SIGNOFF})
        self._cache: dict[str, tuple[torch.Tensor, float]] = {}

    def size(self, circuit) -> torch.Tensor:  # pragma: no cover
        """Integer sizes [I] within circuit.area_budget."""
        raise NotImplementedError

    # ----- training: only modules that learn ----------------------------------------------------------------------
    def training_step(self, item: dict, batch_idx: int):
        if self.learns:
            logs = self.learn(item)
            for k, v in logs.items():
                self.log(f"train/{k}", v, batch_size=1)

    def learn(self, item: dict) -> dict:  # pragma: no cover
        raise NotImplementedError

    def configure_optimizers(self):
        return None

    # ----- evaluation ------------------------------------------------------------------------------------------------
    def _sized(self, circuit) -> tuple[torch.Tensor, float]:
        if not self.learns and circuit.name in self._cache:
            return self._cache[circuit.name]
        start = time.perf_counter()
        # sizing differentiates through the timing model even where Lightning evaluates under inference mode
        with torch.inference_mode(False), torch.enable_grad():
            sizes = self.size(circuit).long()
        runtime = time.perf_counter() - start
        if sizes.shape != circuit.init_size.shape or (sizes < 0).any() or (sizes > circuit.max_size.long()).any():
            raise ValueError(f"{type(self).__name__} returned sizes outside the library on {circuit.name}")
        if float(circuit.area(sizes.to(torch.float64))) > circuit.area_budget * (1 + 1e-9):
            raise ValueError(f"{type(self).__name__} exceeded the area budget on {circuit.name}")
        self._cache[circuit.name] = (sizes, runtime)
        return sizes, runtime

    def _score(self, stage: str, item: dict) -> None:
        circuit = item[B.CIRCUIT]
        sizes, runtime = self._sized(circuit)
        before, after = circuit.evaluate(circuit.init_size), circuit.evaluate(sizes)
        gain = lambda k: 100.0 * (1 - after[k] / before[k]) if before[k] < 0 or before[k] > 0 else 0.0  # noqa: E731
        values = {"wns": after["wns"], "tns": after["tns"], "nve": after["nve"],
                  "area_ratio": after["area"] / circuit.initial_area, "runtime": runtime,
                  "wns_gain": gain("wns"), "tns_gain": gain("tns"), "nve_gain": gain("nve")}
        if stage == "test" and self.signoff:
            ref = circuit.signoff(sizes)
            if ref is not None:
                with torch.no_grad():
                    ours = circuit.analyse(sizes.to(torch.float64))["endpoint_slack"]
                po = circuit.netlist.po_names
                # endpoints OpenSTA leaves unconstrained (fed by constants only) are not compared
                gap = max(abs(float(ours[i]) - ref["endpoint_slack"][name]) for i, name in enumerate(po)
                          if name in ref["endpoint_slack"])
                values.update(signoff_wns=ref["wns"], signoff_tns=ref["tns"], signoff_nve=ref["nve"], sta_gap=gap)
        for name, value in values.items():
            self.metrics[f"{stage}_{name}"].update(torch.tensor(float(value)))
            self.log(f"{stage}/{name}_{circuit.name}", float(value), batch_size=1)

    def _log(self, stage: str) -> None:
        for name in METRICS + SIGNOFF:
            metric = self.metrics[f"{stage}_{name}"]
            if metric.update_count:
                self.log(f"{stage}/{name}", metric.compute())
            metric.reset()

    def validation_step(self, item: dict, batch_idx: int):
        self._score("val", item)

    def on_validation_epoch_end(self):
        self._log("val")
        if not self.learns and self.trainer is not None and not self.trainer.sanity_checking:
            self.trainer.should_stop = True  # nothing to learn: one epoch sizes every circuit

    def test_step(self, item: dict, batch_idx: int):
        self._score("test", item)

    def on_test_epoch_end(self):
        self._log("test")
