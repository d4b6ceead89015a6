"""A simple analytic placement, grid legalisation, wire capacitance from placement, and layout rasters.

Quadratic placement: each net is a star from its driver to its sinks (unit springs); primary inputs are fixed on the
left edge and primary outputs on the right edge; minimising the spring energy is one sparse linear solve per axis.
Legalisation snaps cells onto a G x G site grid, column by column in x order and, within a column, in y order, so
relative order is kept and no two cells share a site. The die is square with area = total cell area / utilisation.
Wire capacitance of a net = half-perimeter wire length (HPWL, µm) x `cap_per_um` (pF/µm).

The placement is the same on every machine: the solver's positions are rounded to `POSITION_QUANTUM` before
legalisation (sparse solvers differ in their last bits between CPUs, and symmetric circuits have cells at equal
positions, whose order legalisation would otherwise take from that noise), and the die side is computed from an
exactly rounded sum.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

from datamodules.eda.netlist import Netlist

POSITION_QUANTUM = 1e-6  # µm: far above solver noise (~1e-12 µm), far below a site pitch (~1 µm)


@dataclass
class Placement:
    inst_xy: np.ndarray  # [I, 2] µm, legalised
    pi_xy: np.ndarray  # [PI, 2]
    po_xy: np.ndarray  # [PO, 2]
    die: float  # side, µm
    hpwl: np.ndarray  # [nets] µm
    net_bbox: np.ndarray  # [nets, 4] x0, y0, x1, y1


def _pins(netlist: Netlist):
    """(net, node) pairs; nodes: instances 0..I-1, then PIs, then POs."""
    I = netlist.num_instances
    ptr = [len(x) for x in netlist.in_nets]
    sink_inst = np.repeat(np.arange(I), ptr)
    sink_net = np.array([n for xs in netlist.in_nets for n in xs], dtype=np.int64)
    pi_node = I + np.arange(len(netlist.pi_nets))
    po_node = I + len(netlist.pi_nets) + np.arange(len(netlist.po_nets))
    driver_node = np.full(netlist.num_nets, -1, dtype=np.int64)
    driver_node[netlist.out_net] = np.arange(I)
    driver_node[netlist.pi_nets] = pi_node
    nets = np.concatenate([sink_net, netlist.po_nets])
    sinks = np.concatenate([sink_inst, po_node])
    return driver_node, nets, sinks


def place(netlist: Netlist, cell_area: np.ndarray, utilisation: float = 0.5) -> Placement:
    I, n_pi, n_po = netlist.num_instances, len(netlist.pi_nets), len(netlist.po_nets)
    die = math.sqrt(max(math.fsum(cell_area), 1e-9) / utilisation)
    pi_xy = np.stack([np.zeros(n_pi), (np.arange(n_pi) + 0.5) / max(n_pi, 1) * die], 1)
    po_xy = np.stack([np.full(n_po, die), (np.arange(n_po) + 0.5) / max(n_po, 1) * die], 1)
    driver, nets, sinks = _pins(netlist)
    keep = driver[nets] >= 0  # constant-tied pins have no driver to pull them
    a, b = driver[nets][keep], sinks[keep]  # springs between node a and node b
    fixed_xy = np.concatenate([pi_xy, po_xy])
    # Laplacian over movable nodes; springs to fixed nodes go to the right-hand side
    a_mov, b_mov = a < I, b < I
    both = a_mov & b_mov
    rows = np.concatenate([a[both], b[both], a[both], b[both]])
    cols = np.concatenate([b[both], a[both], a[both], b[both]])
    vals = np.concatenate([-np.ones(both.sum() * 2), np.ones(both.sum() * 2)])
    diag_extra = np.zeros(I)
    rhs = np.zeros((I, 2))
    for mov, fix in ((a, b), (b, a)):
        m = (mov < I) & (fix >= I)
        np.add.at(diag_extra, mov[m], 1.0)
        np.add.at(rhs, mov[m], fixed_xy[fix[m] - I])
    anchor = 1e-3  # a weak pull to the die centre keeps floating components solvable
    L = sp.coo_matrix((vals, (rows, cols)), shape=(I, I)).tocsr() + sp.diags(diag_extra + anchor)
    rhs += anchor * die / 2
    xy = np.stack([spla.spsolve(L.tocsc(), rhs[:, d]) for d in range(2)], 1) if I else np.zeros((0, 2))
    inst_xy = legalise(np.round(xy / POSITION_QUANTUM) * POSITION_QUANTUM, die)
    all_xy = np.concatenate([inst_xy, fixed_xy])
    node = np.concatenate([driver[driver >= 0], sinks[keep]])
    net_of = np.concatenate([np.nonzero(driver >= 0)[0], nets[keep]])
    bbox = np.zeros((netlist.num_nets, 4))
    bbox[:, :2], bbox[:, 2:] = np.inf, -np.inf
    np.minimum.at(bbox[:, 0], net_of, all_xy[node, 0])
    np.minimum.at(bbox[:, 1], net_of, all_xy[node, 1])
    np.maximum.at(bbox[:, 2], net_of, all_xy[node, 0])
    np.maximum.at(bbox[:, 3], net_of, all_xy[node, 1])
    bbox[~np.isfinite(bbox)] = 0.0
    hpwl = (bbox[:, 2] - bbox[:, 0]) + (bbox[:, 3] - bbox[:, 1])
    return Placement(inst_xy, pi_xy, po_xy, die, hpwl, bbox)


def legalise(xy: np.ndarray, die: float) -> np.ndarray:
    """Snap cells to distinct sites of a G x G grid (G = ceil(sqrt(n))) keeping x order across columns and y order
    within a column."""
    n = len(xy)
    if n == 0:
        return xy
    G = int(np.ceil(np.sqrt(n)))
    order = np.argsort(xy[:, 0], kind="stable")
    col = np.empty(n, dtype=np.int64)
    col[order] = np.arange(n) // G
    # within each column, rank by y
    key = col * (4 * die + 1) + (xy[:, 1] - xy[:, 1].min())
    by = np.argsort(key, kind="stable")
    start = np.searchsorted(col[by], col[by])
    row = np.empty(n, dtype=np.int64)
    row[by] = np.arange(n) - start
    pitch = die / G
    return np.stack([(col + 0.5) * pitch, (row + 0.5) * pitch], 1)


def layout_rasters(placement: Placement, inst_area: torch.Tensor, scale: int) -> torch.Tensor:
    """[3, scale, scale] layout image: vertical and horizontal wire demand (RUDY: each net spreads its HPWL's
    vertical / horizontal extent uniformly over its bounding box) and gate density (cell area per bin area, which
    follows the current sizes and is differentiable in `inst_area`)."""
    die = placement.die
    bin_ = die / scale
    box = torch.from_numpy(placement.net_bbox)
    w, h = (box[:, 2] - box[:, 0]).clamp(min=bin_), (box[:, 3] - box[:, 1]).clamp(min=bin_)
    i0 = (box[:, 0] / bin_).floor().long().clamp(0, scale - 1)
    i1 = (box[:, 2] / bin_).floor().long().clamp(0, scale - 1)
    j0 = (box[:, 1] / bin_).floor().long().clamp(0, scale - 1)
    j1 = (box[:, 3] / bin_).floor().long().clamp(0, scale - 1)
    rasters = []
    for density in (h / (w * h), w / (w * h)):  # vertical demand per unit area, horizontal
        diff = torch.zeros(scale + 1, scale + 1, dtype=torch.float64)
        for di, dj, sign in ((i0, j0, 1), (i1 + 1, j0, -1), (i0, j1 + 1, -1), (i1 + 1, j1 + 1, 1)):
            diff.index_put_((di, dj), sign * density, accumulate=True)
        rasters.append(diff.cumsum(0).cumsum(1)[:scale, :scale] * bin_)
    xy = torch.from_numpy(placement.inst_xy)
    bi = (xy[:, 0] / bin_).floor().long().clamp(0, scale - 1)
    bj = (xy[:, 1] / bin_).floor().long().clamp(0, scale - 1)
    dens = torch.zeros(scale * scale, dtype=inst_area.dtype).index_add(0, bi * scale + bj, inst_area)
    rasters = [r.to(inst_area.dtype) for r in rasters] + [dens.reshape(scale, scale) / bin_ ** 2]
    return torch.stack(rasters)


def bins_of(placement: Placement, scale: int) -> torch.Tensor:
    """Each instance's bin index (row-major) on a scale x scale grid: the gate mask M_v picks this bin."""
    bin_ = placement.die / scale
    xy = torch.from_numpy(placement.inst_xy)
    bi = (xy[:, 0] / bin_).floor().long().clamp(0, scale - 1)
    bj = (xy[:, 1] / bin_).floor().long().clamp(0, scale - 1)
    return bi * scale + bj
