"""The timing engine: table interpolation, continuous sizes, errors on bad netlists, path enumeration on c17, and
agreement with OpenSTA on c17 and two larger ISCAS-85 circuits."""
from __future__ import annotations

import itertools
import subprocess

import numpy as np
import pytest
import torch

import lightning_modules.eda  # noqa: F401  (registers the sizers)
from contracts.registry import MODELS
from datamodules.eda.gatesize import ISCAS85GateSizing, SyntheticGateSizing, synthetic_netlist
from datamodules.eda.netlist import NetlistError, bench_to_verilog, parse_mapped_verilog
from datamodules.eda.opensta import run_opensta
from datamodules.eda.sta import TABLES, TimingGraph, interpolate_table
from tests.conftest import SHARED_DATA
from tests.eda.conftest import needs_tools

TOLERANCE_NS = 1e-4  # 0.1 ps: our STA and OpenSTA do the same NLDM arithmetic in double precision


def test_interpolation_equals_the_table_at_grid_points_and_is_linear_between(tiny_library):
    cell = tiny_library.cells["sky130_fd_sc_hd__nand2_1"]
    for name in TABLES:
        x, y, v = (torch.from_numpy(a) for a in cell.arcs[0].tables[name])
        xs, ys = torch.meshgrid(x, y, indexing="ij")
        n = xs.numel()
        got = interpolate_table(x.expand(n, -1), y.expand(n, -1), v.expand(n, -1, -1), xs.reshape(-1), ys.reshape(-1))
        torch.testing.assert_close(got.reshape(v.shape), v, rtol=0, atol=1e-15)
        mid = interpolate_table(x[None], y[None], v[None], (x[2:3] + x[3:4]) / 2, y[4:5])
        torch.testing.assert_close(mid, (v[2, 4] + v[3, 4]).reshape(1) / 2)
        # beyond the last load point: linear extrapolation of the last segment
        far = interpolate_table(x[None], y[None], v[None], x[1:2], y[-1:] + (y[-1] - y[-2]))
        torch.testing.assert_close(far, (2 * v[1, -1] - v[1, -2]).reshape(1))


def test_integer_sizes_are_the_library_cells_and_gradients_match_finite_differences(tiny_library, tiny_tensors):
    netlist = synthetic_netlist(tiny_library, seed=3, num_gates=40)
    g = TimingGraph(netlist, tiny_tensors, wire_cap=np.full(netlist.num_nets, 2e-3), clock_period=1.0)
    x = g.init_size.to(torch.float64) + (torch.arange(netlist.num_instances) % 2).to(torch.float64)
    x = torch.minimum(x, g.max_size)
    # the same netlist with the resized cells written in: identical timing at integer sizes
    resized = type(netlist)(**{**netlist.__dict__, "cell": g.cells_of(x)})
    g2 = TimingGraph(resized, tiny_tensors, wire_cap=g.wire_cap.numpy(), clock_period=1.0)
    torch.testing.assert_close(g.analyse(x)["arrival"], g2.analyse()["arrival"])
    # between sizes the derivative of TNS equals a central finite difference
    xc = (x + 0.37).clamp(max=g.max_size - 0.1).requires_grad_(True)
    tns = g.analyse(xc)["tns"]
    grad, = torch.autograd.grad(tns, xc)
    for i in torch.nonzero(grad.abs() > 1e-6).squeeze(-1)[:5]:
        e = torch.zeros_like(xc)
        e[i] = 1e-6
        fd = (g.analyse(xc.detach() + e)["tns"] - g.analyse(xc.detach() - e)["tns"]) / 2e-6
        assert abs(float(fd) - float(grad[i])) < 1e-5 * max(1.0, abs(float(fd)))


def test_required_times_give_each_gate_its_worst_path_slack(tiny_library, tiny_tensors):
    netlist = synthetic_netlist(tiny_library, seed=5, num_gates=30)
    r = TimingGraph(netlist, tiny_tensors, clock_period=0.5).analyse()
    # an endpoint driver's slack is at most its endpoint slack; the worst gate slack is the WNS
    assert float(r["gate_slack"].min()) == pytest.approx(float(r["endpoint_slack"].min()))


def test_a_cell_the_library_lacks_gets_one_clear_error(tiny_library):
    text = """module top(a, b, y); input a; input b; output y;
      sky130_fd_sc_hd__nand9_1 u1 (.A(a), .B(b), .Y(y)); endmodule"""
    with pytest.raises(NetlistError, match="nand9_1.*library lacks"):
        parse_mapped_verilog(text, tiny_library)


def test_a_combinational_loop_gets_one_clear_error(tiny_library):
    text = """module top(a, y); input a; output y; wire n1; wire n2;
      sky130_fd_sc_hd__nand2_1 u1 (.A(a), .B(n2), .Y(n1));
      sky130_fd_sc_hd__inv_1 u2 (.A(n1), .Y(n2));
      sky130_fd_sc_hd__inv_1 u3 (.A(n2), .Y(y)); endmodule"""
    with pytest.raises(NetlistError, match="combinational loop: instances u1, u2"):
        parse_mapped_verilog(text, tiny_library)


def test_bench_gates_become_verilog_expressions():
    v = bench_to_verilog("INPUT(1)\nINPUT(2)\nOUTPUT(3)\n3 = NAND(1, 2)\n")
    assert "assign n_3 = ~(n_1 & n_2);" in v and "assign po_3 = n_3;" in v


@pytest.fixture(scope="module")
def iscas():
    if not SHARED_DATA.exists():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    dm = ISCAS85GateSizing(data_dir=str(SHARED_DATA), train_circuits=("c17",), val_circuits=("c432",),
                           test_circuits=("c880",), variants_per_circuit=1, reference_iters=1)
    dm.setup()
    return dm


def _enumerate_paths(circuit, result):
    """Endpoint arrivals by enumerating every input-to-output path with its transitions, each arc's delay read from
    the library tables at the graph-based input slew and output load."""
    g, nl = circuit.graph, circuit.netlist
    lib = g.lib
    driver = {int(n): i for i, n in enumerate(nl.out_net)}
    cell_id = {n: i for i, n in enumerate(lib.names)}
    load = result["load"]

    def arc_delay(i, slot, in_tr, out_tr):
        c = cell_id[nl.cell[i]]
        best = None
        for a in range(lib.arc_slot.shape[1]):
            if int(lib.arc_slot[c, a]) != slot:
                continue
            sense = int(lib.arc_sense[c, a])
            if (sense == 0 and in_tr != out_tr) or (sense == 1 and in_tr == out_tr):
                continue
            t = out_tr  # cell_rise / cell_fall
            s = result["slew"][int(g.in_net[i, slot]), in_tr].reshape(1)
            d = interpolate_table(lib.index_1[c, a, t][None], lib.index_2[c, a, t][None], lib.values[c, a, t][None],
                                  s, load[int(g.out_net[i]), out_tr].reshape(1))
            best = d if best is None else torch.maximum(best, d)
        return best

    def latest(net, tr):
        if net not in driver:
            return torch.zeros(1, dtype=torch.float64)
        i = driver[net]
        cands = []
        for slot, in_tr in itertools.product(range(g.in_net.shape[1]), (0, 1)):
            if int(g.in_net[i, slot]) < 0:
                continue
            d = arc_delay(i, slot, in_tr, tr)
            if d is not None:
                cands.append(latest(int(g.in_net[i, slot]), in_tr) + d)
        return torch.stack(cands).max()

    return [max(float(latest(int(n), 0)), float(latest(int(n), 1))) for n in nl.po_nets]


@needs_tools
def test_c17_arrivals_equal_path_enumeration(iscas):
    c = iscas.circuits["c17"]
    r = c.analyse()
    ours = r["arrival"][c.graph.po_nets].amax(-1).tolist()
    assert ours == pytest.approx(_enumerate_paths(c, r), abs=1e-12)


@needs_tools
@pytest.mark.parametrize("name", ["c17", "c432", "c880"])
def test_our_sta_equals_opensta(iscas, name):
    c = iscas.circuits[name]
    sizes = torch.minimum(c.init_size + (torch.arange(c.num_instances) % 3), c.max_size.long())
    r = c.analyse(sizes.to(torch.float64))
    through = list(range(0, c.num_instances, max(1, c.num_instances // 15)))
    o = run_opensta(c.netlist, c.graph.cells_of(sizes), c.out_pins, c.liberty_path, c.clock_period,
                    c.graph.input_slew, c.graph.output_load, c.graph.wire_cap.numpy(), through=through)
    arrival = dict(zip(c.netlist.po_names, r["arrival"][c.graph.po_nets].amax(-1).tolist()))
    slack = dict(zip(c.netlist.po_names, r["endpoint_slack"].tolist()))
    assert set(o["endpoint_slack"]) == set(slack)
    for po in slack:
        assert abs(arrival[po] - o["endpoint_arrival"][po]) < TOLERANCE_NS
        assert abs(slack[po] - o["endpoint_slack"][po]) < TOLERANCE_NS
    for i, s in o["gate_slack"].items():
        assert abs(float(r["gate_slack"][i]) - s) < TOLERANCE_NS
    assert float(r["tns"]) == pytest.approx(o["tns"], abs=TOLERANCE_NS * len(slack))
    assert float(r["tns"]) < 0, "the clock is set so that the mapped circuit violates"


def test_synthetic_datamodule_gives_labelled_variants_of_training_circuits():
    dm = SyntheticGateSizing(variants_per_circuit=3, reference_iters=5, num_gates=30)
    dm.setup()
    item = dm.train_items[0]
    c = item["circuit"]
    assert item["sizes"].shape == (3, c.num_instances) and torch.equal(item["sizes"][0], c.init_size.double())
    omega, tau = c.labels(item["sizes"][1])
    torch.testing.assert_close(item["omega"][1], omega)
    assert (item["tau"] <= 0).all() and (item["tau"].min(1).values < 0).all()
    assert item["grad_mask"].any(), "the reference sizer changed some gates"


@needs_tools
def test_a_resized_netlist_is_equivalent_to_the_mapped_one_by_yosys(tmp_path, iscas):
    circuit = iscas.circuits["c880"]
    sizes = MODELS.get("tilos").build(**iscas.model_kwargs(), max_iters=10).size(circuit)
    gold, gate = tmp_path / "gold.v", tmp_path / "gate.v"
    gold.write_text(circuit.netlist.to_verilog(None, circuit.out_pins))
    gate.write_text(circuit.netlist.to_verilog(circuit.graph.cells_of(sizes), circuit.out_pins).replace(
        f"module {circuit.name}", f"module {circuit.name}_sized"))
    script = (f"read_liberty -ignore_miss_func {circuit.liberty_path}; read_verilog {gold} {gate}; "
              f"equiv_make {circuit.name} {circuit.name}_sized equiv; hierarchy -top equiv; flatten; "
              "equiv_simple; equiv_induct; equiv_status -assert")
    proc = subprocess.run(["yosys", "-q", "-p", script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (sizes != circuit.init_size).any()
