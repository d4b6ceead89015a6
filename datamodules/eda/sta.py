"""A static timing engine in PyTorch, differentiable with respect to continuous gate sizes.

The circuit is combinational with one (virtual) clock: every primary input arrives at 0 with slew `input_slew`,
every primary output must arrive by `clock_period` and carries `output_load`. Timing is propagated level by level
(all instances of a level at once) with Liberty NLDM tables: for every timing arc, delay and output slew are
bilinear in (input slew, output load) with linear extrapolation outside the table, rise and fall separately, the
arc's timing sense choosing which input transition drives which output transition. As in OpenSTA's default, an
output's arrival is the max over arcs of input arrival + delay, and its slew is the max over arcs' slews.

Sizes are continuous: instance i of family f has size coordinate x_i in [0, n_f - 1] (0 = the family's smallest
library cell, n_f - 1 its largest); between two library cells every table value, input capacitance and area is
interpolated linearly, so arrival times, slacks, WNS and TNS are differentiable in x. At integer x the engine is
exactly the library's. Net load = sum of fan-out pin capacitances (rise or fall, by the transition) + the wire
capacitance from placement + `output_load` per primary output the net drives (no wire resistance: lumped C).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from datamodules.eda.liberty import TABLES, Library, LibertyError
from datamodules.eda.netlist import Netlist

RISE, FALL = 0, 1
POS, NEG, NON = 0, 1, 2


def interpolate_table(index_1: torch.Tensor, index_2: torch.Tensor, values: torch.Tensor, x: torch.Tensor,
                      y: torch.Tensor) -> torch.Tensor:
    """Bilinear interpolation (linear extrapolation outside) of N tables at N points.

    index_1 [N, P], index_2 [N, Q] increasing axes; values [N, P, Q]; x, y [N] -> [N]."""
    N, P, Q = values.shape
    return interpolate_flat(index_1, index_2, values.reshape(-1), torch.arange(N) * (P * Q), x, y)


def interpolate_flat(index_1: torch.Tensor, index_2: torch.Tensor, flat_values: torch.Tensor, offset: torch.Tensor,
                     x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """`interpolate_table` with the tables' values read from one flat tensor: table n's P x Q values (row-major)
    start at flat_values[offset[n]]. Avoids copying whole tables per query."""
    P, Q = index_1.shape[-1], index_2.shape[-1]
    i = ((x.detach()[:, None] >= index_1).sum(-1) - 1).clamp(0, P - 2)
    j = ((y.detach()[:, None] >= index_2).sum(-1) - 1).clamp(0, Q - 2)
    x0, x1 = index_1.gather(-1, i[:, None]).squeeze(-1), index_1.gather(-1, (i + 1)[:, None]).squeeze(-1)
    y0, y1 = index_2.gather(-1, j[:, None]).squeeze(-1), index_2.gather(-1, (j + 1)[:, None]).squeeze(-1)
    t, u = (x - x0) / (x1 - x0), (y - y0) / (y1 - y0)
    base = offset + i * Q + j
    v00, v10 = flat_values[base], flat_values[base + Q]
    v01, v11 = flat_values[base + 1], flat_values[base + Q + 1]
    return (1 - t) * (1 - u) * v00 + t * (1 - u) * v10 + (1 - t) * u * v01 + t * u * v11


@dataclass
class LibraryTensors:
    """A library's size families as tensors. Cells are numbered family by family in drive order.

    family_cells [F, S] cell id of size k of family f (padded with the largest); family_sizes [F];
    area [C]; pin_cap [C, K, 2] (rise, fall) by the family's input-pin slot; arc_slot [C, A] input slot of arc a
    (-1 = no arc), arc_sense [C, A]; index_1 / index_2 [C, A, 4, 7]; values [C, A, 4, 7, 7] for TABLES order."""
    names: list[str]
    family_names: list[str]
    family_pins: list[list[str]]
    family_output: list[str]
    family_cells: torch.Tensor
    family_sizes: torch.Tensor
    drive: torch.Tensor
    area: torch.Tensor
    pin_cap: torch.Tensor
    arc_slot: torch.Tensor
    arc_sense: torch.Tensor
    index_1: torch.Tensor
    index_2: torch.Tensor
    values: torch.Tensor

    @classmethod
    def from_library(cls, lib: Library) -> "LibraryTensors":
        fams = lib.families
        names, fam_pins, fam_out, fam_cells = [], [], [], []
        for f in fams:
            cells = lib.family_cells(f)
            pins = sorted(cells[0].inputs)
            arcs0 = [(a.related_pin, a.sense) for a in cells[0].arcs]
            for c in cells:
                if sorted(c.inputs) != pins or [(a.related_pin, a.sense) for a in c.arcs] != arcs0:
                    raise LibertyError(f"cell {c.name} does not share pins and arcs with {cells[0].name}; it cannot "
                                       "be a size of the same family")
            fam_cells.append(list(range(len(names), len(names) + len(cells))))
            names += [c.name for c in cells]
            fam_pins.append(pins)
            fam_out.append(cells[0].output)
        C, K = len(names), max(len(p) for p in fam_pins)
        A = max(len(lib.cells[n].arcs) for n in names)
        shapes = {v[2].shape for n in names for a in lib.cells[n].arcs for v in a.tables.values()}
        if len(shapes) != 1:
            raise LibertyError(f"tables of several shapes {sorted(shapes)}; all must share one (P x Q) shape")
        P, Q = shapes.pop()
        S = max(len(c) for c in fam_cells)
        family_cells = torch.tensor([c + [c[-1]] * (S - len(c)) for c in fam_cells])
        pin_cap = torch.zeros(C, K, 2, dtype=torch.float64)
        arc_slot, arc_sense = torch.full((C, A), -1), torch.zeros(C, A, dtype=torch.long)
        i1, i2 = torch.ones(C, A, 4, P, dtype=torch.float64), torch.ones(C, A, 4, Q, dtype=torch.float64)
        i1 *= torch.arange(1, P + 1, dtype=torch.float64)
        i2 *= torch.arange(1, Q + 1, dtype=torch.float64)
        vals = torch.zeros(C, A, 4, P, Q, dtype=torch.float64)
        area, drive = torch.zeros(C, dtype=torch.float64), torch.zeros(C, dtype=torch.float64)
        fam_of = {n: fi for fi, cs in enumerate(fam_cells) for n in (names[c] for c in cs)}
        for ci, n in enumerate(names):
            cell, pins = lib.cells[n], fam_pins[fam_of[n]]
            area[ci], drive[ci] = cell.area, cell.drive
            for k, p in enumerate(pins):
                pin_cap[ci, k] = torch.tensor(cell.inputs[p], dtype=torch.float64)
            for a, arc in enumerate(cell.arcs):
                arc_slot[ci, a], arc_sense[ci, a] = pins.index(arc.related_pin), arc.sense
                for t, name in enumerate(TABLES):
                    x, y, v = arc.tables[name]
                    i1[ci, a, t], i2[ci, a, t], vals[ci, a, t] = (torch.from_numpy(x), torch.from_numpy(y),
                                                                  torch.from_numpy(v))
        scale_t, scale_c = lib.time_unit_ns, lib.cap_unit_pf  # everything in ns and pF
        return cls(names, fams, fam_pins, fam_out, family_cells, torch.tensor([len(c) for c in fam_cells]), drive,
                   area, pin_cap * scale_c, arc_slot, arc_sense, i1 * scale_t, i2 * scale_c, vals * scale_t)


class TimingGraph:
    """A netlist's connectivity as index tensors over a `LibraryTensors`, and the STA over it.

    inst_family [I], init_size [I] (the mapped cell's size index); in_net / in_slot [I, K] (-1 padded); out_net [I];
    levels: list of instance-index tensors, level 1 first. Fan-out pins: fo_inst, fo_k, fo_net (one row per
    instance input pin)."""

    def __init__(self, netlist: Netlist, lib: LibraryTensors, wire_cap: np.ndarray | None = None,
                 input_slew: float = 0.05, output_load: float = 0.005, clock_period: float | None = None):
        self.netlist, self.lib = netlist, lib
        name_to_cell = {n: i for i, n in enumerate(lib.names)}
        cells = torch.tensor([name_to_cell[c] for c in netlist.cell], dtype=torch.long)
        fam_of_cell = torch.empty(len(lib.names), dtype=torch.long)
        size_of_cell = torch.empty(len(lib.names), dtype=torch.long)
        for f in range(len(lib.family_names)):
            for k in range(int(lib.family_sizes[f])):
                fam_of_cell[lib.family_cells[f, k]], size_of_cell[lib.family_cells[f, k]] = f, k
        self.inst_family, self.init_size = fam_of_cell[cells], size_of_cell[cells]
        self.max_size = (lib.family_sizes[self.inst_family] - 1).to(torch.float64)
        I, K = netlist.num_instances, lib.pin_cap.shape[1]
        self.in_net = torch.full((I, K), -1, dtype=torch.long)
        self.in_slot = torch.full((I, K), -1, dtype=torch.long)
        for i, (pins, nets) in enumerate(zip(netlist.in_pins, netlist.in_nets)):
            fam_pins = lib.family_pins[int(self.inst_family[i])]
            for p, n in zip(pins, nets):
                s = fam_pins.index(p)
                self.in_net[i, s], self.in_slot[i, s] = n, s
        self.out_net = torch.from_numpy(netlist.out_net)
        level = torch.from_numpy(netlist.level)
        self.levels = [torch.nonzero(level == lv).squeeze(-1) for lv in range(1, int(level.max()) + 1)]
        mask = self.in_net >= 0
        self.fo_inst, self.fo_k = torch.nonzero(mask, as_tuple=True)
        self.fo_net = self.in_net[self.fo_inst, self.fo_k]
        self.num_nets = netlist.num_nets
        self.pi_nets, self.po_nets = torch.from_numpy(netlist.pi_nets), torch.from_numpy(netlist.po_nets)
        self.wire_cap = torch.zeros(self.num_nets, dtype=torch.float64) if wire_cap is None else \
            torch.as_tensor(wire_cap, dtype=torch.float64)
        self.input_slew, self.output_load = float(input_slew), float(output_load)
        self.clock_period = clock_period
        P, Q = lib.values.shape[-2:]
        self._axes_1, self._axes_2 = lib.index_1.reshape(-1, P), lib.index_2.reshape(-1, Q)
        self._flat_values = lib.values.reshape(-1)
        self._table_out_tr = torch.tensor([RISE, FALL, RISE, FALL])  # output transition of each TABLES entry

    # ----- sizes ------------------------------------------------------------------------------------------------
    def blend(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Continuous sizes [I] -> (cell below [I], cell above [I], weight of the cell above [I])."""
        x = torch.minimum(x.clamp(min=0), self.max_size)
        lo = torch.minimum(x.detach().floor(), (self.max_size - 1).clamp(min=0)).long()
        w = x - lo
        cells = self.lib.family_cells[self.inst_family]
        hi = torch.minimum(lo + 1, self.max_size.long())
        return cells.gather(1, lo[:, None]).squeeze(1), cells.gather(1, hi[:, None]).squeeze(1), w

    def area(self, x: torch.Tensor) -> torch.Tensor:
        lo, hi, w = self.blend(x)
        return ((1 - w) * self.lib.area[lo] + w * self.lib.area[hi]).sum()

    def cells_of(self, sizes: torch.Tensor) -> list[str]:
        """Integer sizes [I] -> library cell names."""
        ids = self.lib.family_cells[self.inst_family].gather(1, sizes.long()[:, None]).squeeze(1)
        return [self.lib.names[i] for i in ids.tolist()]

    def net_load(self, x: torch.Tensor) -> torch.Tensor:
        """[nets, 2] rise/fall load capacitance (pF)."""
        lo, hi, w = self.blend(x)
        cap = (1 - w)[:, None, None] * self.lib.pin_cap[lo] + w[:, None, None] * self.lib.pin_cap[hi]  # [I, K, 2]
        load = self.wire_cap[:, None].repeat(1, 2)
        load = load.index_add(0, self.fo_net, cap[self.fo_inst, self.fo_k])
        po = torch.zeros(self.num_nets, dtype=torch.float64).index_add(
            0, self.po_nets, torch.full((len(self.po_nets),), self.output_load, dtype=torch.float64))
        return load + po[:, None]

    # ----- propagation ------------------------------------------------------------------------------------------
    def _arc_eval(self, cells: torch.Tensor, slew: torch.Tensor, load: torch.Tensor) -> torch.Tensor:
        """cells [N]; slew [N, A, 2] input slew by input transition; load [N, 2] by output transition ->
        [N, A, 4 tables, 2 input transitions] (each table at the load of its own output transition)."""
        N, A = slew.shape[:2]
        P, Q = self.lib.values.shape[-2:]
        table = (cells[:, None, None, None] * (A * 4) + torch.arange(A)[None, :, None, None] * 4
                 + torch.arange(4)[None, None, :, None]).expand(N, A, 4, 2).reshape(-1)
        s = slew[:, :, None, :].expand(N, A, 4, 2).reshape(-1)
        c = load[:, self._table_out_tr][:, None, :, None].expand(N, A, 4, 2).reshape(-1)
        return interpolate_flat(self._axes_1[table], self._axes_2[table], self._flat_values, table * (P * Q), s,
                                c).reshape(N, A, 4, 2)

    def analyse(self, x: torch.Tensor | None = None, clock_period: float | None = None,
                required: bool = True) -> dict[str, torch.Tensor]:
        """Full STA at sizes x (default: the mapped sizes). Returns arrival / slew [nets, 2] (ns), and with
        `required` also required [nets, 2], net slack [nets] (min over rise/fall), endpoint slack [POs], wns
        (min(0, worst endpoint slack)), tns (sum of negative endpoint slacks), nve (violating endpoints),
        area, and gate_slack [I] (the slack of each instance's output: its worst path)."""
        x = self.init_size.to(torch.float64) if x is None else x
        period = clock_period if clock_period is not None else self.clock_period
        lo, hi, w = self.blend(x)
        load = self.net_load(x)
        arrival = torch.zeros(self.num_nets, 2, dtype=torch.float64)
        slew = torch.full((self.num_nets, 2), self.input_slew, dtype=torch.float64)
        saved = []
        NEG_INF = torch.tensor(-1e9, dtype=torch.float64)
        for idx in self.levels:
            c_lo, c_hi, wl = lo[idx], hi[idx], w[idx]
            slot = self.lib.arc_slot[c_lo]  # [N, A]
            valid = slot >= 0
            nets = self.in_net[idx].gather(1, slot.clamp(min=0))  # [N, A]
            in_at, in_slew = arrival[nets], slew[nets]  # [N, A, 2]
            out_load = load[self.out_net[idx]]
            tab = ((1 - wl)[:, None, None, None] * self._arc_eval(c_lo, in_slew, out_load)
                   + wl[:, None, None, None] * self._arc_eval(c_hi, in_slew, out_load))  # [N, A, 4, 2in]
            sense = self.lib.arc_sense[c_lo]
            # which input transition can cause each output transition: [N, A, 2out, 2in]
            allow = torch.zeros(*sense.shape, 2, 2, dtype=torch.bool)
            allow[..., RISE, RISE] = allow[..., FALL, FALL] = (sense != NEG)
            allow[..., RISE, FALL] = allow[..., FALL, RISE] = (sense != POS)
            allow &= valid[..., None, None]
            delay = tab[:, :, 0:2]  # [N, A, 2out, 2in]
            trans = tab[:, :, 2:4]
            cand = torch.where(allow, in_at[:, :, None, :] + delay, NEG_INF)
            out_at = cand.amax(-1).amax(1)  # [N, 2out]
            out_slew = torch.where(allow, trans, NEG_INF).amax(-1).amax(1)
            arrival = arrival.index_put((self.out_net[idx],), out_at)
            slew = slew.index_put((self.out_net[idx],), out_slew)
            saved.append((idx, nets, delay.detach(), allow))
        res = {"arrival": arrival, "slew": slew, "load": load, "area": self.area(x)}
        if period is None or not required:
            return res
        po_at = arrival[self.po_nets].amax(-1)
        end_slack = period - po_at
        res.update(endpoint_slack=end_slack, wns=end_slack.min().clamp(max=0), tns=end_slack.clamp(max=0).sum(),
                   nve=(end_slack < 0).sum(), critical_delay=po_at.max())
        with torch.no_grad():
            req = torch.full((self.num_nets, 2), float("inf"), dtype=torch.float64)
            req[self.po_nets] = period
            for idx, nets, delay, allow in reversed(saved):
                r_out = req[self.out_net[idx]]  # [N, 2out]
                r_in = torch.where(allow, r_out[:, None, :, None] - delay, torch.tensor(float("inf"),
                                                                                        dtype=torch.float64))
                r_in = r_in.amin(2)  # over output transitions -> [N, A, 2in]
                req = req.scatter_reduce(0, nets.reshape(-1, 1).expand(-1, 2), r_in.reshape(-1, 2), "amin")
            net_slack = (req - arrival.detach()).amin(-1)
        res.update(required=req, net_slack=net_slack, gate_slack=net_slack[self.out_net])
        return res
