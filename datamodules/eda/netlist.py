"""Circuits from their source files to a levelised gate graph: ISCAS-85 `.bench` and EPFL structural Verilog are
technology-mapped by Yosys (`abc -liberty`) onto a library's minimum-size cells, and the mapped netlist is parsed into
`Netlist` (instances, nets, pins, topological levels).

Yosys is an external tool (Debian package `yosys`); `yosys_available()` says whether it is on PATH.
"""
from __future__ import annotations

import gzip
import hashlib
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from datamodules.eda.liberty import Library

BENCH_OPS = {"AND": "&", "NAND": "&", "OR": "|", "NOR": "|", "XOR": "^", "XNOR": "^", "NOT": None, "BUFF": None,
             "BUF": None}


class NetlistError(ValueError):
    """A netlist this package cannot time: unknown cell, combinational loop, undriven net."""


def yosys_available() -> bool:
    return shutil.which("yosys") is not None


def _vname(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) else f"\\{name} "


def bench_to_verilog(text: str, module: str = "top") -> str:
    """ISCAS `.bench` text -> an equivalent Verilog module of assign statements."""
    inputs, outputs, assigns = [], [], []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"(INPUT|OUTPUT)\s*\(\s*([^)\s]+)\s*\)", line)
        if m:
            (inputs if m.group(1) == "INPUT" else outputs).append(m.group(2))
            continue
        m = re.fullmatch(r"([^=\s]+)\s*=\s*([A-Za-z]+)\s*\((.*)\)", line)
        if not m:
            raise NetlistError(f"unreadable .bench line: {raw!r}")
        out, op, args = m.group(1), m.group(2).upper(), [a.strip() for a in m.group(3).split(",") if a.strip()]
        if op not in BENCH_OPS:
            raise NetlistError(f".bench gate {op!r} is not combinational ({sorted(BENCH_OPS)} are supported)")
        names = [f"n_{a}" for a in args]
        expr = f" {BENCH_OPS[op]} ".join(names) if BENCH_OPS[op] else names[0]
        invert = op in ("NAND", "NOR", "XNOR", "NOT")
        assigns.append(f"  assign n_{out} = {'~(' + expr + ')' if invert else expr};")
    nets = sorted({f"n_{x}" for x in inputs + outputs} | {a.split()[1] for a in assigns})
    ports = [f"n_{x}" for x in inputs] + [f"po_{x}" for x in outputs]
    lines = [f"module {module} ({', '.join(ports)});"]
    lines += [f"  input n_{x};" for x in inputs] + [f"  output po_{x};" for x in outputs]
    lines += [f"  wire {n};" for n in nets if n not in {f'n_{x}' for x in inputs}]
    lines += assigns + [f"  assign po_{x} = n_{x};" for x in outputs] + ["endmodule", ""]
    return "\n".join(lines)


def source_verilog(path: str | Path) -> str:
    """A circuit source (.bench, .v or .v.gz) as Verilog text."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"circuit file {path} not found")
    text = gzip.open(path, "rt").read() if path.suffix == ".gz" else path.read_text()
    return bench_to_verilog(text) if path.name.endswith(".bench") else text


def map_with_yosys(verilog: str, liberty: Path, map_cells: list[str], buffer_cell: str, cache_dir: Path) -> str:
    """Technology-map `verilog` onto `map_cells` of `liberty` with Yosys + ABC (cached by content hash); returns the
    mapped structural Verilog. Port-to-port connections get a buffer (insbuf) so every net has one driving cell."""
    if not yosys_available():
        raise RuntimeError("yosys is not installed; install it with `apt-get install yosys` (Debian/Ubuntu)")
    key = hashlib.sha256((verilog + liberty.read_text()[:0] + str(liberty.stat().st_size) + ",".join(map_cells)
                          + buffer_cell).encode()).hexdigest()[:16]
    out = Path(cache_dir) / f"mapped-{key}.v"
    if out.exists():
        return out.read_text()
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in.v"
        src.write_text(verilog)
        buf_in, buf_out = "A", "X"
        script = "; ".join([
            f"read_verilog {src}", "hierarchy -auto-top", "synth -flatten -noabc", "opt -full",
            f"abc -liberty {liberty} -D 1", "opt_clean -purge", "setundef -zero",
            f"insbuf -buf {buffer_cell} {buf_in} {buf_out}", "opt_clean -purge",
            f"write_verilog -noattr -noexpr {Path(tmp) / 'out.v'}"])
        proc = subprocess.run(["yosys", "-q", "-p", script], capture_output=True, text=True)
        if proc.returncode != 0:
            raise NetlistError(f"yosys failed: {proc.stderr.strip()[-2000:] or proc.stdout.strip()[-2000:]}")
        text = (Path(tmp) / "out.v").read_text()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return text


@dataclass
class Netlist:
    """A mapped combinational netlist.

    Nets are numbered 0..num_nets-1; primary-input nets first. Instance i drives net `out_net[i]` and reads
    `in_nets[i][k]` on its library pin `in_pins[i][k]`. `level[i]` is the instance's topological level (1 + the
    deepest driver's level; primary inputs are level 0). `po_nets` are the nets the primary outputs read.
    """
    name: str
    net_names: list[str]
    pi_nets: np.ndarray
    po_nets: np.ndarray
    po_names: list[str]
    inst_names: list[str]
    cell: list[str]
    in_pins: list[list[str]]
    in_nets: list[list[int]]
    out_net: np.ndarray
    level: np.ndarray
    const_nets: dict[int, str] = None  # net -> Verilog literal (1'b0 / 1'b1) for constant-tied inputs

    def __post_init__(self):
        self.const_nets = dict(self.const_nets or {})

    @property
    def num_instances(self) -> int:
        return len(self.cell)

    @property
    def num_nets(self) -> int:
        return len(self.net_names)

    def to_verilog(self, cells: list[str] | None = None, out_pins: dict[str, str] | None = None) -> str:
        """Structural Verilog of this netlist, with `cells` replacing the instances' cell names (a resized netlist
        keeps every connection: only the cell names change)."""
        cells = cells or self.cell
        out_pins = out_pins or {}
        pis = [self.net_names[n] for n in self.pi_nets]
        ports = [_vname(n) for n in pis] + [_vname(p) for p in self.po_names]
        lines = [f"module {self.name} ({', '.join(ports)});"]
        lines += [f"  input {_vname(n)};" for n in pis] + [f"  output {_vname(p)};" for p in self.po_names]
        port_set = set(pis) | set(self.po_names)
        lines += [f"  wire {_vname(n)};" for k, n in enumerate(self.net_names)
                  if n not in port_set and k not in self.const_nets]
        name = lambda n: self.const_nets.get(n) or _vname(self.net_names[n])  # noqa: E731
        for i in range(self.num_instances):
            conns = [f".{p}({name(n)})" for p, n in zip(self.in_pins[i], self.in_nets[i])]
            conns.append(f".{out_pins.get(cells[i], 'Y')}({_vname(self.net_names[self.out_net[i]])})")
            lines.append(f"  {cells[i]} {_vname(self.inst_names[i])} ({', '.join(conns)});")
        lines += ["endmodule", ""]
        return "\n".join(lines)


_ID = r"(?:\\\S+\s|[A-Za-z_][\w$]*)(?:\s*\[\d+\])?"


def _clean(name: str) -> str:
    name = name.strip()
    return name[1:].strip() if name.startswith("\\") else re.sub(r"\s+", "", name)


def parse_mapped_verilog(text: str, library: Library, name: str = "top") -> Netlist:
    """Parse Yosys's `write_verilog -noattr -noexpr` output over `library`'s cells into a levelised `Netlist`.

    Raises NetlistError naming the problem for a cell the library lacks, an undriven or multiply driven net, a port
    wired straight to a port, or a combinational loop."""
    text = re.sub(r"/\*.*?\*/|//[^\n]*", "", text, flags=re.S)
    mod = re.search(r"\bmodule\s+(" + _ID + r")\s*\((.*?)\)\s*;(.*?)\bendmodule", text, re.S)
    if not mod:
        raise NetlistError("no module found in the mapped netlist")
    body = mod.group(3)
    decl = {"input": [], "output": []}
    for kind, names in re.findall(r"\b(input|output)\s+(?:\[[^\]]*\]\s*)?(.*?);", body, re.S):
        decl[kind] += [_clean(n) for n in re.findall(_ID, names)]
    nets: dict[str, int] = {}

    def net(n: str) -> int:
        return nets.setdefault(_clean(n), len(nets))

    pi = [net(n) for n in decl["input"]]
    driver: dict[int, int] = {}
    inst_names, cells, in_pins, in_nets, outs = [], [], [], [], []
    aliases = {}
    for lhs, rhs in re.findall(r"\bassign\s+(" + _ID + r")\s*=\s*(" + _ID + r"|\d+'[hbd][0-9a-fA-FxXzZ]+)\s*;", body):
        aliases[_clean(lhs)] = _clean(rhs)
    inst_re = re.compile(r"(?<![\w$\\])([A-Za-z_][\w$]*)\s+(" + _ID + r")\s*\(\s*(\..*?)\)\s*;", re.S)
    for cell_name, inst, conns in inst_re.findall(body):
        if cell_name in ("module", "input", "output", "wire", "assign"):
            continue
        cell = library.cells.get(cell_name)
        if cell is None:
            raise NetlistError(f"instance {_clean(inst)} uses cell {cell_name!r}, which the library lacks (known: "
                               f"{len(library.cells)} single-output cells of {', '.join(library.families)}); map onto "
                               "the library's cells or add the cell's family")
        pins, pnets, out = [], [], None
        for pin, n in re.findall(r"\.(\w+)\s*\(\s*(" + _ID + r"|\d+'[hbd][0-9a-fA-FxXzZ]+)?\s*\)", conns):
            if not n:
                continue
            if pin == cell.output:
                out = net(n)
            elif pin in cell.inputs:
                pins.append(pin)
                pnets.append(net(n))
            else:
                raise NetlistError(f"instance {_clean(inst)}: cell {cell_name} has no pin {pin}")
        if out is None:
            continue  # an instance whose output drives nothing
        if out in driver or out in pi:
            raise NetlistError(f"net {_clean(list(nets)[out])} has more than one driver")
        driver[out] = len(cells)
        inst_names.append(_clean(inst))
        cells.append(cell_name)
        in_pins.append(pins)
        in_nets.append(pnets)
        outs.append(out)
    po_names, po_nets = [], []
    for o in decl["output"]:
        src = o
        seen = set()
        while src in aliases and src not in seen:
            seen.add(src)
            src = aliases[src]
        if re.fullmatch(r"\d+'.*", src):
            raise NetlistError(f"output {o} is tied to a constant ({src}); constant outputs cannot be timed")
        po_names.append(o)
        po_nets.append(net(src))
    names = list(nets)
    # constant-tied inputs (Yosys writes 1'h0 / 1'h1): sources like primary inputs that never switch
    consts = {k: ("1'b1" if re.fullmatch(r"\d+'[hbd]0*1", n) else "1'b0") for k, n in enumerate(names)
              if re.fullmatch(r"\d+'[hbd][0-9a-fA-FxXzZ]+", n)}
    for i, pn in enumerate(in_nets):
        for n in pn:
            if n not in driver and n not in pi and n not in consts:
                raise NetlistError(f"instance {inst_names[i]} reads net {names[n]}, which nothing drives")
    for n in po_nets:
        if n not in driver and n not in pi:
            raise NetlistError(f"output net {names[n]} is undriven")
    level = _levelise(len(names), pi + list(consts), in_nets, outs, inst_names)
    return Netlist(name, names, np.array(pi, dtype=np.int64), np.array(po_nets, dtype=np.int64), po_names,
                   inst_names, cells, in_pins, in_nets, np.array(outs, dtype=np.int64), level, consts)


def _levelise(num_nets: int, pi: list[int], in_nets: list[list[int]], outs: list[int], inst_names: list[str]):
    """Kahn's algorithm over instances, vectorised by wave: level = 1 + max level of the input nets' drivers."""
    n = len(outs)
    net_level = np.full(num_nets, -1, dtype=np.int64)
    net_level[pi] = 0
    ptr = np.cumsum([0] + [len(x) for x in in_nets])
    flat = np.array([x for xs in in_nets for x in xs], dtype=np.int64)
    owner = np.repeat(np.arange(n), np.diff(ptr))
    outs_a = np.array(outs, dtype=np.int64)
    level = np.full(n, -1, dtype=np.int64)
    undone = np.ones(n, dtype=bool)
    # constant-input instances (no inputs) are level 1
    while undone.any():
        ready_in = net_level[flat] >= 0
        blocked = np.zeros(n, dtype=bool)
        np.logical_or.at(blocked, owner[~ready_in], True)
        newly = undone & ~blocked
        if not newly.any():
            stuck = np.nonzero(undone)[0][:5]
            raise NetlistError("combinational loop: instances " + ", ".join(inst_names[i] for i in stuck)
                               + " depend on their own outputs; break the loop (these netlists must be acyclic)")
        lv = np.zeros(n, dtype=np.int64)
        np.maximum.at(lv, owner, np.maximum(net_level[flat], 0))
        level[newly] = lv[newly] + 1
        net_level[outs_a[newly]] = level[newly]
        undone &= ~newly
    return level
