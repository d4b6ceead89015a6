"""A Liberty (.lib) reader for the NLDM subset that gate sizing needs, and a filter that writes a smaller library.

Read: per cell its area, input pins' rise/fall capacitance, its single output pin and the output's timing arcs
(related pin, timing sense, and the cell_rise / cell_fall / rise_transition / fall_transition tables indexed by input
slew x output load). Cells are grouped into size families by name (`sky130_fd_sc_hd__nand2_4` -> family `nand2`,
drive 4), so that a sizer can move a gate between `nand2_1`, `nand2_2` and `nand2_4` without touching connectivity.

Why not the PyPI `liberty-parser` package: it parses the whole file into a Python object tree with a generic
grammar, which takes minutes on the 12.8 MB sky130 library and still leaves the tables as strings; gate sizing needs
only ~100 cells' tables as arrays, which a regular-expression pass over the selected cells' text gives in a second.
"""
from __future__ import annotations

import gzip
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# Single-output combinational families the mapping may use: the common gates plus the AOI/OAI and mux cells that
# gate-sizing libraries list (the paper's Table II has BUF, INV, AND, NAND, OR, NOR, AOI, OAI, XOR, XNOR, MUX).
DEFAULT_FAMILIES = ("inv", "buf", "nand2", "nand3", "nand4", "nor2", "nor3", "nor4", "and2", "and3", "and4", "or2",
                    "or3", "or4", "xor2", "xnor2", "a21oi", "o21ai", "a22oi", "o22ai", "a21o", "o21a", "a211oi",
                    "o211ai", "a31oi", "o31ai", "mux2i", "mux2")
TABLES = ("cell_rise", "cell_fall", "rise_transition", "fall_transition")
SENSES = {"positive_unate": 0, "negative_unate": 1, "non_unate": 2}
_CELL = re.compile(r'^\s*cell\s*\(\s*"?([\w$]+)"?\s*\)\s*\{', re.M)
_NAME = re.compile(r"^(?P<prefix>.*?__)?(?P<family>[a-z0-9]+)_(?P<drive>\d+)$")


class LibertyError(ValueError):
    """A Liberty file this reader cannot use (missing cell, unsupported table)."""


@dataclass
class TimingArc:
    related_pin: str
    sense: int  # SENSES
    tables: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]  # name -> (index_1 slew, index_2 load, values)


@dataclass
class Cell:
    name: str
    family: str
    drive: int
    area: float
    inputs: dict[str, tuple[float, float]]  # pin -> (rise cap, fall cap)
    output: str
    function: str
    arcs: list[TimingArc] = field(default_factory=list)


@dataclass
class Library:
    name: str
    time_unit_ns: float
    cap_unit_pf: float
    cells: dict[str, Cell]

    def family_cells(self, family: str) -> list[Cell]:
        """The family's cells sorted by drive strength."""
        return sorted((c for c in self.cells.values() if c.family == family), key=lambda c: c.drive)

    @property
    def families(self) -> list[str]:
        return sorted({c.family for c in self.cells.values()})


def _read_text(path: str | Path) -> str:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Liberty file {path} not found")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as f:
        return f.read()


def _group_end(text: str, open_brace: int) -> int:
    """Index just past the brace that closes the group opened at `open_brace`."""
    depth = 0
    for m in re.compile(r"[{}]").finditer(text, open_brace):
        depth += 1 if m.group() == "{" else -1
        if depth == 0:
            return m.end()
    raise LibertyError("unbalanced braces in Liberty text")


def _groups(text: str, keyword: str) -> list[tuple[str, str]]:
    """(argument, body) of every top-level `keyword (arg) { ... }` group in `text` (nested ones are skipped)."""
    out, pos = [], 0
    pattern = re.compile(r"\b" + keyword + r'\s*\(\s*"?([^")]*)"?\s*\)\s*\{')
    while True:
        m = pattern.search(text, pos)
        if not m:
            return out
        end = _group_end(text, m.end() - 1)
        out.append((m.group(1), text[m.end(): end - 1]))
        pos = end


def _attr(body: str, name: str) -> str | None:
    m = re.search(r"\b" + name + r'\s*:\s*"?([^";\n]*)"?\s*;', body)
    return m.group(1).strip() if m else None


def _floats(s: str) -> np.ndarray:
    return np.array([float(x) for x in re.findall(r"[-+0-9.eE]+", s)], dtype=np.float64)


def _table(body: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    i1 = re.search(r'index_1\s*\(\s*"([^"]*)"', body)
    i2 = re.search(r'index_2\s*\(\s*"([^"]*)"', body)
    vals = re.search(r"values\s*\((.*?)\)\s*;", body, re.S)
    if not (i1 and i2 and vals):
        raise LibertyError("only 2-D NLDM tables (index_1 = input slew, index_2 = output load) are supported")
    x, y = _floats(i1.group(1)), _floats(i2.group(1))
    v = _floats(vals.group(1)).reshape(len(x), len(y))
    return x, y, v


def split_cells(text: str) -> tuple[str, list[tuple[str, int, int]]]:
    """The library header (text before the first cell) and (name, start, end) of every cell group."""
    starts = [(m.group(1), m.start()) for m in _CELL.finditer(text)]
    if not starts:
        raise LibertyError("no cell groups found; is this a Liberty file?")
    # cells are consecutive top-level groups: each ends where the next begins (the last at the library's brace)
    ends = [s for _, s in starts[1:]] + [text.rstrip().rfind("}")]
    cells = [(name, start, end) for (name, start), end in zip(starts, ends)]
    return text[: cells[0][1]], cells


def _parse_cell(name: str, body: str) -> Cell | None:
    m = _NAME.match(name)
    if not m:
        return None
    inputs, output, function, arcs = {}, None, "", []
    for pin, pbody in _groups(body, "pin"):
        direction = _attr(pbody, "direction")
        if direction == "input":
            cap = float(_attr(pbody, "capacitance") or 0.0)
            inputs[pin] = (float(_attr(pbody, "rise_capacitance") or cap), float(_attr(pbody, "fall_capacitance") or cap))
        elif direction == "output":
            if output is not None:
                return None  # multi-output cells are not sizable here
            output, function = pin, _attr(pbody, "function") or ""
            for _, tbody in _groups(pbody, "timing"):
                related, sense = _attr(tbody, "related_pin"), _attr(tbody, "timing_sense") or "non_unate"
                tables = {t: _table(b) for t in TABLES for _, b in _groups(tbody, t)}
                if related is None or len(tables) < 4 or sense not in SENSES:
                    continue
                arcs.append(TimingArc(related, SENSES[sense], tables))
    if output is None or not arcs:
        return None
    return Cell(name, m.group("family"), int(m.group("drive")), float(_attr(body, "area") or 0.0), inputs, output,
                function, arcs)


def _units(header: str) -> tuple[float, float]:
    t = _attr(header, "time_unit") or "1ns"
    time = float(re.match(r"[\d.]+", t).group()) * {"ns": 1.0, "ps": 1e-3}[re.search(r"[a-z]+", t).group()]
    m = re.search(r'capacitive_load_unit\s*\(\s*([\d.]+)\s*,\s*"?(\w+)"?', header)
    cap = float(m.group(1)) * {"pf": 1.0, "ff": 1e-3}[m.group(2).lower()] if m else 1.0
    return time, cap


def read_liberty(path: str | Path, families: tuple[str, ...] | None = DEFAULT_FAMILIES) -> Library:
    """Parse the cells of `families` (all single-output cells when None)."""
    text = _read_text(path)
    header, spans = split_cells(text)
    lib_name = re.search(r'library\s*\(\s*"?([\w.]+)', header)
    cells = {}
    for name, start, end in spans:
        m = _NAME.match(name)
        if not m or (families is not None and m.group("family") not in families):
            continue
        cell = _parse_cell(name, text[start:end])
        if cell is not None:
            cells[name] = cell
    if not cells:
        raise LibertyError(f"{path}: none of the families {families} found")
    time, cap = _units(header)
    return Library(lib_name.group(1) if lib_name else "library", time, cap, cells)


def _strip_groups(text: str, keyword: str) -> str:
    out, pos = [], 0
    pattern = re.compile(r"\b" + keyword + r"\s*\([^)]*\)\s*\{")
    while (m := pattern.search(text, pos)):
        out.append(text[pos: m.start()])
        pos = _group_end(text, m.end() - 1)
    return "".join(out) + text[pos:]


def write_filtered(src: str | Path, dst: str | Path, keep: set[str], strip_power: bool = False) -> Path:
    """Write a copy of `src` holding only the cells named in `keep`, without a default wire-load model (wire
    capacitance comes from placement instead), so Yosys/ABC map onto exactly these cells and OpenSTA times them.
    `strip_power` drops the power groups (timing is unchanged); a `.gz` destination is gzipped."""
    text = _read_text(src)
    header, spans = split_cells(text)
    header = re.sub(r"^\s*default_wire_load\w*\s*:.*$", "", header, flags=re.M)
    cells = [text[s:e] for name, s, e in spans if name in keep]
    if strip_power:
        cells = [_strip_groups(_strip_groups(c, "internal_power"), "leakage_power") for c in cells]
    body = "\n".join(cells)
    missing = keep - {name for name, _, _ in spans}
    if missing:
        raise LibertyError(f"cells not in {src}: {sorted(missing)}")
    dst = Path(dst)
    out = header + body + "\n}\n"
    if dst.suffix == ".gz":
        with gzip.open(dst, "wt", compresslevel=9) as f:
            f.write(out)
    else:
        dst.write_text(out)
    return dst
