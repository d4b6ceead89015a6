"""Sign-off with OpenSTA (Debian package `opensta`, binary `sta`): the same netlist, library, input slew, output
load and per-net wire capacitance (`set_load` on nets) as `sta.TimingGraph`, timed by the open tool."""
from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from datamodules.eda.netlist import Netlist, _vname


def opensta_available() -> bool:
    return shutil.which("sta") is not None


def _tcl_name(name: str) -> str:
    return "{" + name + "}"


def run_opensta(netlist: Netlist, cells: list[str], out_pins: dict[str, str], liberty: Path, clock_period: float,
                input_slew: float, output_load: float, wire_cap: np.ndarray | None = None,
                through: list[int] | None = None, timeout: float = 600) -> dict:
    """Time `netlist` with instance cells `cells` in OpenSTA. Returns {"endpoint_arrival": {po: ns},
    "endpoint_slack": {po: ns}, "wns", "tns", "nve", "gate_slack": {instance index: ns}} for the instances in
    `through` (the slack of the worst path through the instance's output)."""
    if not opensta_available():
        raise RuntimeError("OpenSTA is not installed; install it with `apt-get install opensta` (binary `sta`)")
    with tempfile.TemporaryDirectory() as tmp:
        v = Path(tmp) / "design.v"
        v.write_text(netlist.to_verilog(cells, out_pins))
        lines = [f"read_liberty {liberty}", f"read_verilog {v}", f"link_design {netlist.name}",
                 f"create_clock -name clk -period {clock_period:.9g}",
                 "set_input_delay 0 -clock clk [all_inputs]", "set_output_delay 0 -clock clk [all_outputs]",
                 f"set_input_transition {input_slew:.9g} [all_inputs]", f"set_load {output_load:.9g} [all_outputs]"]
        if wire_cap is not None:
            port_nets = {netlist.net_names[n] for n in netlist.pi_nets}
            for n, c in enumerate(wire_cap):
                name = netlist.net_names[n]
                if c > 0 and name not in port_nets:
                    lines.append(f"set_load {c:.9g} [get_nets {_tcl_name(name)}]")
        lines.append("foreach pe [find_timing_paths -group_count 1000000 -endpoint_count 1 "
                     "-unique_paths_to_endpoint] { puts \"END [get_full_name [[$pe vertex] pin]] "
                     "[$pe data_arrival_time] [$pe slack]\" }")
        for i in through or []:
            pin = f"{netlist.inst_names[i]}/{out_pins[cells[i]]}"
            lines.append(f"set pe [lindex [find_timing_paths -through [get_pins {_tcl_name(pin)}] -group_count 1 "
                         f"-endpoint_count 1] 0]; puts \"PIN {i} [$pe slack]\"")
        tcl = Path(tmp) / "run.tcl"
        tcl.write_text("\n".join(lines) + "\n")
        proc = subprocess.run(["sta", "-no_init", "-exit", str(tcl)], capture_output=True, text=True,
                              timeout=timeout)
        if proc.returncode != 0 or "Error" in proc.stdout + proc.stderr:
            raise RuntimeError(f"OpenSTA failed: {(proc.stdout + proc.stderr)[-2000:]}")
    arrival, slack, gate = {}, {}, {}
    for m in re.finditer(r"^END (\S+) (\S+) (\S+)$", proc.stdout, re.M):
        arrival[m.group(1)], slack[m.group(1)] = float(m.group(2)) * 1e9, float(m.group(3)) * 1e9
    for m in re.finditer(r"^PIN (\d+) (\S+)$", proc.stdout, re.M):
        gate[int(m.group(1))] = float(m.group(2)) * 1e9
    s = np.array(list(slack.values()))
    return {"endpoint_arrival": arrival, "endpoint_slack": slack, "gate_slack": gate,
            "wns": float(min(s.min(), 0.0)), "tns": float(np.minimum(s, 0).sum()), "nve": int((s < 0).sum())}
