"""A prepared circuit: mapped netlist + placement + wire load + timing engine + area budget, with the features,
critical paths, layout images and labels that sizers and timing models read (`contracts.batch.eda.Circuit`).

Also the reference sizer that stands in for the commercial tool (ICC2 in the paper): greedy sensitivity sizing in the
style of TILOS (Fishburn & Dunlop 1985) on the exact STA. It gives the gradient labels (Delta slack / Delta size
between the mapped and the reference sizes) and is a board row of its own.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from datamodules.eda.liberty import Library
from datamodules.eda.netlist import Netlist
from datamodules.eda.opensta import opensta_available, run_opensta
from datamodules.eda.placement import Placement, bins_of, layout_rasters, place
from datamodules.eda.sta import LibraryTensors, TimingGraph


@dataclass
class Circuit:
    name: str
    netlist: Netlist
    graph: TimingGraph
    placement: Placement
    liberty_path: Path
    out_pins: dict[str, str]
    area_budget: float
    initial_area: float
    path_length: int = 32
    _reach: torch.Tensor | None = field(default=None, repr=False)

    # ----- the Circuit protocol ---------------------------------------------------------------------------------
    @property
    def num_instances(self) -> int:
        return self.netlist.num_instances

    @property
    def init_size(self) -> torch.Tensor:
        return self.graph.init_size

    @property
    def max_size(self) -> torch.Tensor:
        return self.graph.max_size

    @property
    def clock_period(self) -> float:
        return float(self.graph.clock_period)

    @property
    def num_families(self) -> int:
        return len(self.graph.lib.family_names)

    def analyse(self, x: torch.Tensor | None = None) -> dict:
        return self.graph.analyse(x)

    def area(self, x: torch.Tensor) -> torch.Tensor:
        return self.graph.area(x)

    def evaluate(self, sizes: torch.Tensor) -> dict[str, float]:
        with torch.no_grad():
            r = self.graph.analyse(sizes.to(torch.float64), required=True)
        return {"wns": float(r["wns"]), "tns": float(r["tns"]), "nve": float(r["nve"]), "area": float(r["area"])}

    def signoff(self, sizes: torch.Tensor) -> dict | None:
        """OpenSTA on the sized netlist (None when OpenSTA is not installed)."""
        if not opensta_available():
            return None
        return run_opensta(self.netlist, self.graph.cells_of(sizes), self.out_pins, self.liberty_path,
                           self.clock_period, self.graph.input_slew, self.graph.output_load,
                           self.graph.wire_cap.numpy())

    def inst_area(self, x: torch.Tensor) -> torch.Tensor:
        lo, hi, w = self.graph.blend(x)
        return (1 - w) * self.graph.lib.area[lo] + w * self.graph.lib.area[hi]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """[I, 8 + F]: size, size / max size, mapped size, log drive strength, input pin capacitance, output load
        (rise, fall), output wire capacitance (pF x 100), level / depth, then the family one-hot."""
        g = self.graph
        lo, hi, w = g.blend(x)
        drive = (1 - w) * g.lib.drive[lo] + w * g.lib.drive[hi]
        pin = ((1 - w)[:, None] * g.lib.pin_cap[lo].mean((1, 2)).unsqueeze(1)
               + w[:, None] * g.lib.pin_cap[hi].mean((1, 2)).unsqueeze(1)).squeeze(1)
        load = g.net_load(x)[g.out_net]
        level = torch.from_numpy(self.netlist.level).to(torch.float64)
        onehot = torch.nn.functional.one_hot(g.inst_family, self.num_families).to(torch.float64)
        cols = [x, x / g.max_size.clamp(min=1), g.init_size.to(torch.float64), torch.log1p(drive), pin * 100,
                load[:, 0] * 100, load[:, 1] * 100, g.wire_cap[g.out_net] * 100, level / level.max()]
        return torch.cat([torch.stack(cols, 1), onehot], 1)

    @property
    def num_features(self) -> int:
        return 9 + self.num_families

    def layout(self, x: torch.Tensor, scale: int) -> torch.Tensor:
        return layout_rasters(self.placement, self.inst_area(x), scale)

    def bins(self, scale: int) -> torch.Tensor:
        return bins_of(self.placement, scale)

    def paths(self, x: torch.Tensor, result: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Critical paths by pointer chasing at sizes x: each instance's worst fan-in (latest-arriving input) and
        worst fan-out (least slack); an instance's path is its fan-in chain, itself and its fan-out chain, truncated
        to `path_length` around it, ordered input to output; an endpoint's path is its driver's fan-in chain."""
        r = result if result is not None else self.graph.analyse(x.detach())
        g, I, L = self.graph, self.num_instances, self.path_length
        driver = torch.full((g.num_nets,), -1, dtype=torch.long)
        driver[g.out_net] = torch.arange(I)
        at = r["arrival"].detach().amax(-1)
        in_at = torch.where(g.in_net >= 0, at[g.in_net.clamp(min=0)], torch.tensor(-1e9, dtype=at.dtype))
        pred = driver[g.in_net.gather(1, in_at.argmax(1, keepdim=True)).squeeze(1).clamp(min=0)]
        pred = torch.where(in_at.max(1).values > -1e9, pred, torch.full_like(pred, -1))
        slack = r["gate_slack"]
        fo_slack = slack[g.fo_inst]
        best = torch.full((I,), float("inf"), dtype=slack.dtype)
        own = driver[g.fo_net]
        ok = own >= 0
        best = best.scatter_reduce(0, own[ok], fo_slack[ok], "amin")
        is_best = ok & (fo_slack == best[own.clamp(min=0)])
        succ = torch.full((I,), -1, dtype=torch.long)
        succ[own[is_best]] = g.fo_inst[is_best]
        half = L // 2

        def chase(start: torch.Tensor, ptr: torch.Tensor, steps: int) -> torch.Tensor:
            out, cur = [start], start
            for _ in range(steps):
                cur = torch.where(cur >= 0, ptr[cur.clamp(min=0)], cur)
                out.append(cur)
            return torch.stack(out, 1)

        back = chase(torch.arange(I), pred, half - 1).flip(1)  # [I, half], ends at the instance
        fwd = chase(torch.arange(I), succ, L - half)[:, 1:]  # [I, L - half]
        gate_paths = _left_align(torch.cat([back, fwd], 1))
        po_driver = driver[g.po_nets]
        end_paths = _left_align(chase(po_driver, pred, L - 1).flip(1))
        return gate_paths, end_paths

    def reach(self) -> torch.Tensor:
        """[I, E] float: 1 where instance i reaches endpoint e."""
        if self._reach is None:
            g = self.graph
            reach = torch.zeros(g.num_nets, len(g.po_nets), dtype=torch.float64)
            reach[g.po_nets, torch.arange(len(g.po_nets))] = 1.0
            for idx in reversed(g.levels):
                nets = g.in_net[idx]
                src = reach[g.out_net[idx]][:, None, :].expand(-1, nets.shape[1], -1)
                ok = nets >= 0
                reach = reach.index_add(0, nets[ok], src[ok]).clamp(max=1.0)
            self._reach = reach[g.out_net]
        return self._reach

    def greedy(self, max_iters: int = 100, fraction: float = 0.05, start: torch.Tensor | None = None) -> torch.Tensor:
        """The reference sizer (`greedy_sizing`) on this circuit."""
        return greedy_sizing(self, max_iters, fraction, start=start)

    def labels(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(omega [I], tau [I]) gatewise WNS and TNS at sizes x by exact STA (omega capped at the clock period)."""
        with torch.no_grad():
            r = self.graph.analyse(x.to(torch.float64))
            tau = self.reach() @ r["endpoint_slack"].clamp(max=0)
        # a gate that reaches no endpoint is unconstrained: its slack is capped at the clock period
        return r["gate_slack"].clamp(max=self.clock_period), tau


def _left_align(paths: torch.Tensor) -> torch.Tensor:
    """Move the -1 padding of each row to its end, keeping order."""
    key = (paths < 0).long() * paths.shape[1] + torch.arange(paths.shape[1])
    return paths.gather(1, key.argsort(1))


def build_circuit(name: str, netlist: Netlist, library: Library, lib_tensors: LibraryTensors, liberty_path: Path,
                  clock_fraction: float, area_budget: float, input_slew: float, output_load: float,
                  wire_cap_per_um: float, utilisation: float, path_length: int = 32) -> Circuit:
    """Place the netlist, derive wire capacitances, and set the clock to `clock_fraction` x the critical delay of
    the mapped sizes, and the area budget to `area_budget` x the mapped area."""
    area = np.array([library.cells[c].area for c in netlist.cell])
    placement = place(netlist, area, utilisation)
    graph = TimingGraph(netlist, lib_tensors, placement.hpwl * wire_cap_per_um, input_slew, output_load)
    critical = float(graph.analyse(required=False)["arrival"][graph.po_nets].max())
    graph.clock_period = clock_fraction * critical
    out_pins = {c.name: c.output for c in library.cells.values()}
    initial = math.fsum(area)
    return Circuit(name, netlist, graph, placement, Path(liberty_path), out_pins, area_budget * initial, initial,
                   path_length)


def greedy_sizing(circuit: Circuit, max_iters: int = 100, fraction: float = 0.05, budget: float | None = None,
                  wns_weight: float = 1.0, start: torch.Tensor | None = None) -> torch.Tensor:
    """TILOS-style greedy sensitivity sizing on the exact STA: each step upsizes, by one library size, the gates with
    the best timing gain per area (sensitivity of TNS + wns_weight x WNS from the STA's derivative at the current
    sizes, i.e. the first-order effect of the next size) among gates with negative slack, keeps the step if exact
    timing improved (else halves the number of gates), and stops at the area budget, no violation, or max_iters."""
    budget = circuit.area_budget if budget is None else budget
    x = (circuit.init_size if start is None else start).to(torch.float64).clone()
    objective = lambda r: r["tns"] + wns_weight * r["wns"]  # noqa: E731
    best = float(objective(circuit.analyse(x)))
    k = max(1, int(fraction * circuit.num_instances))
    for _ in range(max_iters):
        xv = x.clone().requires_grad_(True)
        r = circuit.analyse(xv)
        if float(r["nve"]) == 0:
            break
        obj = objective(r)
        grad, = torch.autograd.grad(obj, xv)
        with torch.no_grad():
            area_gain = circuit.inst_area((x + 1).clamp(max=circuit.max_size)) - circuit.inst_area(x)
            can = (x < circuit.max_size) & (r["gate_slack"] < 0) & (grad > 0)
            score = torch.where(can, grad / area_gain.clamp(min=1e-6), torch.tensor(-1.0, dtype=torch.float64))
            room = budget - float(r["area"])
            improved = False
            while k >= 1:
                pick = score.topk(min(k, int(can.sum()))).indices if int(can.sum()) else score[:0].long()
                if pick.numel() == 0:
                    break
                # as many picked gates as the remaining area allows, best first
                pick = pick[torch.cumsum(area_gain[pick], 0) <= room]
                if pick.numel() == 0:
                    break
                trial = x.clone()
                trial[pick] += 1
                value = float(objective(circuit.analyse(trial)))
                if value > best + 1e-12:
                    x, best, improved = trial, value, True
                    break
                k //= 2
            if not improved:
                break
            k = max(k, 1) * 2
    return x.round().long()
