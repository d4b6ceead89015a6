"""Gate-sizing "datasets": circuits mapped onto the sky130 HD library, placed, and timed, split by circuit into
training (the timing model learns from sized variants of these), validation and test circuits (sizers are scored on
these, never seen by a timing model in training).

- `iscas85-gatesize`: ISCAS-85 `.bench` netlists (folder `iscas85/`), mapped by Yosys + ABC.
- `epfl-gatesize`: EPFL combinational benchmarks (folder `epfl-benchmarks/`, `<group>/<name>.v.gz`), mapped by Yosys.
- `synthetic-gatesize`: random levelised netlists built directly on a tiny embedded subset of the sky130 library (no
  files, no Yosys), for tests.
The library is `liberty/sky130hd_tt.lib.gz` under the data dir; the sizable subset (`liberty.DEFAULT_FAMILIES`, all
drive strengths) and the mapping subset (each family's drive-1 cell, so circuits start at minimum size) are written to
the cache once. Training items hold `variants_per_circuit` random sizings of a training circuit with exact-STA labels
and the reference sizer's gradient labels (`contracts.batch.eda`).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from contracts.batch import eda as B
from contracts.registry import register_dataset
from datamodules.base import DataError, PaperboardDataModule, arrays_hash
from datamodules.eda.circuits import Circuit, build_circuit, greedy_sizing
from datamodules.eda.liberty import DEFAULT_FAMILIES, read_liberty, write_filtered
from datamodules.eda.netlist import Netlist, _levelise, map_with_yosys, parse_mapped_verilog, source_verilog
from datamodules.eda.sta import LibraryTensors

TINY_LIBERTY = Path(__file__).with_name("data") / "sky130hd_tt_tiny.lib.gz"
BUFFER = "sky130_fd_sc_hd__buf_1"


def _identity(x):
    return x


class _Items(Dataset):
    def __init__(self, items: list[dict]):
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


class GateSizingDataModule(PaperboardDataModule):
    """Base of the gate-sizing datasets; subclasses give `load_netlists(names)`."""

    liberty_name = "sky130hd_tt.lib.gz"

    def __init__(self, train_circuits: tuple[str, ...] = (), val_circuits: tuple[str, ...] = (),
                 test_circuits: tuple[str, ...] = (), clock_fraction: float = 0.8, area_budget: float = 1.2,
                 input_slew: float = 0.05, output_load: float = 0.005, wire_cap_per_um: float = 1.5e-4,
                 utilisation: float = 0.5, path_length: int = 32, variants_per_circuit: int = 8,
                 variant_fraction: float = 0.3, reference_iters: int = 60, label_seed: int = 0,
                 signoff: bool = True, data_dir: str | None = None, batch_size: int = 1, eval_batch_size: int = 1,
                 num_workers: int = 0):
        super().__init__(data_dir=data_dir, batch_size=batch_size, eval_batch_size=eval_batch_size, num_workers=0)
        if not 0 < clock_fraction <= 1.5:
            raise ValueError(f"clock_fraction must be in (0, 1.5], got {clock_fraction}")
        if area_budget < 1.0:
            raise ValueError(f"area_budget is a multiple of the mapped area and must be >= 1, got {area_budget}")
        self.splits = {"train": tuple(train_circuits), "val": tuple(val_circuits), "test": tuple(test_circuits)}
        for split, names in self.splits.items():
            if not names:
                raise ValueError(f"{split}_circuits is empty; name at least one circuit per split")
        overlap = set(self.splits["train"]) & (set(self.splits["val"]) | set(self.splits["test"]))
        if overlap:
            raise ValueError(f"circuits {sorted(overlap)} are both training and held-out circuits")
        self.clock_fraction, self.area_budget = clock_fraction, area_budget
        self.input_slew, self.output_load = input_slew, output_load
        self.wire_cap_per_um, self.utilisation, self.path_length = wire_cap_per_um, utilisation, path_length
        self.variants_per_circuit, self.variant_fraction = variants_per_circuit, variant_fraction
        self.reference_iters, self.label_seed, self.signoff = reference_iters, label_seed, signoff
        self.circuits: dict[str, Circuit] | None = None

    # ----- library ----------------------------------------------------------------------------------------------
    def liberty_source(self) -> Path:
        path = self.data_dir / "liberty" / self.liberty_name
        if not path.exists():
            raise DataError(f"missing Liberty library: expected {path} (sky130 HD tt from the OpenSTA examples). "
                            "Put it there or point --data-dir (env PAPERBOARD_DATA) at the folder that holds liberty/.")
        return path

    def prepare_library(self) -> tuple[Path, Path]:
        """(sizing library, mapping library) under the cache dir."""
        src = self.liberty_source()
        key = hashlib.sha256(f"{src.stat().st_size}:{src.stat().st_mtime_ns}:{DEFAULT_FAMILIES}".encode()).hexdigest()[:12]
        cache = self.cache_dir / f"lib-{key}"
        sizing, mapping = cache / "sizing.lib", cache / "mapping.lib"
        if not mapping.exists():
            cache.mkdir(parents=True, exist_ok=True)
            lib = read_liberty(src)
            write_filtered(src, sizing, set(lib.cells))
            drive1 = {f: min(lib.family_cells(f), key=lambda c: (c.drive != 1, c.drive)).name for f in lib.families}
            write_filtered(src, mapping, set(drive1.values()))
        return sizing, mapping

    def load_netlists(self, names: list[str], library, sizing: Path, mapping: Path) -> dict[str, Netlist]:
        raise NotImplementedError

    # ----- setup ------------------------------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.circuits is not None:
            return
        sizing, mapping = self.prepare_library()
        library = read_liberty(sizing, None)
        tensors = LibraryTensors.from_library(library)
        names = [n for split in ("train", "val", "test") for n in self.splits[split]]
        netlists = self.load_netlists(names, library, sizing, mapping)
        self.circuits = {n: build_circuit(n, netlists[n], library, tensors, sizing, self.clock_fraction,
                                          self.area_budget, self.input_slew, self.output_load, self.wire_cap_per_um,
                                          self.utilisation, self.path_length) for n in names}
        self.num_families = len(tensors.family_names)
        self.data_hash = arrays_hash({
            **{f"{n}/cells": np.frombuffer(hashlib.sha256("\n".join(self.circuits[n].netlist.cell).encode()).digest(),
                                           dtype=np.uint8) for n in names},
            **{f"{n}/inputs": np.array([x for xs in self.circuits[n].netlist.in_nets for x in xs]) for n in names},
            **{f"{n}/wire": self.circuits[n].graph.wire_cap.numpy() for n in names},
            "settings": np.array([self.clock_fraction, self.area_budget, self.input_slew, self.output_load,
                                  self.wire_cap_per_um, self.utilisation, self.variants_per_circuit, self.label_seed,
                                  self.variant_fraction, self.reference_iters, self.path_length])})
        # labels (exact STA of the variants, the reference sizer's run) are cached by the data hash
        labels = self.cache_dir / "labels" / f"{type(self).__name__}-{self.data_hash[:16]}.pt"
        if labels.exists():
            stored = torch.load(labels, weights_only=True)
        else:
            rng = np.random.default_rng(self.label_seed)
            stored = [{k: v for k, v in self._training_item(self.circuits[n], rng).items() if k != B.CIRCUIT}
                      for n in self.splits["train"]]
            labels.parent.mkdir(parents=True, exist_ok=True)
            tmp = labels.with_suffix(".tmp")
            torch.save(stored, tmp)
            tmp.replace(labels)
        self.train_items = [{B.CIRCUIT: self.circuits[n], **item} for n, item in zip(self.splits["train"], stored)]

    def _training_item(self, circuit: Circuit, rng: np.random.Generator) -> dict:
        """Sized variants (random upsizing of `variant_fraction` of the gates by 1..max steps, the mapped sizes as
        variant 0) with exact-STA labels, and gradient labels from the reference (greedy) sizer."""
        I, V = circuit.num_instances, self.variants_per_circuit
        init = circuit.init_size.to(torch.float64)
        sizes = [init]
        for _ in range(V - 1):
            pick = torch.from_numpy(rng.random(I) < self.variant_fraction)
            step = torch.from_numpy(rng.integers(1, 4, I)).to(torch.float64)
            sizes.append(torch.where(pick, init + step, init).clamp(max=circuit.max_size).round())
        sizes = torch.stack(sizes)
        omega, tau = zip(*(circuit.labels(s) for s in sizes))
        reference = greedy_sizing(circuit, max_iters=self.reference_iters).to(torch.float64)
        ref_omega, ref_tau = circuit.labels(reference)
        delta = reference - init
        mask = delta != 0
        safe = torch.where(mask, delta, torch.ones_like(delta))
        return {B.CIRCUIT: circuit, B.SIZES: sizes, B.OMEGA: torch.stack(omega), B.TAU: torch.stack(tau),
                B.GRAD_OMEGA: torch.where(mask, (ref_omega - omega[0]) / safe, torch.zeros_like(delta)),
                B.GRAD_TAU: torch.where(mask, (ref_tau - tau[0]) / safe, torch.zeros_like(delta)),
                B.GRAD_MASK: mask, B.REF_SIZES: reference.long()}

    def train_dataloader(self):
        return DataLoader(_Items(self.train_items), batch_size=None, shuffle=True, collate_fn=_identity)

    def _eval(self, split: str):
        return DataLoader(_Items([{B.CIRCUIT: self.circuits[n]} for n in self.splits[split]]), batch_size=None,
                          collate_fn=_identity)

    def val_dataloader(self):
        return self._eval("val")

    def test_dataloader(self):
        return self._eval("test")

    def model_kwargs(self) -> dict:
        return {"num_families": self.num_families, "signoff": self.signoff}

    def describe(self) -> dict:
        return {"data_hash": self.data_hash, "splits": {k: list(v) for k, v in self.splits.items()},
                "circuits": {n: {"instances": c.num_instances, "levels": len(c.graph.levels),
                                 "endpoints": int(len(c.graph.po_nets)), "clock_period_ns": c.clock_period,
                                 "mapped_area_um2": c.initial_area,
                                 **{k: v for k, v in c.evaluate(c.init_size).items() if k != "area"}}
                             for n, c in self.circuits.items()}}


def _mapped(dm: GateSizingDataModule, sources: dict[str, Path], library, mapping: Path) -> dict[str, Netlist]:
    cells = sorted(read_liberty(mapping, None).cells)
    out = {}
    for name, path in sources.items():
        text = map_with_yosys(source_verilog(path), mapping, cells, BUFFER, dm.cache_dir / "mapped")
        out[name] = parse_mapped_verilog(text, library, name)
    return out


@register_dataset("iscas85-gatesize", family="eda")
class ISCAS85GateSizing(GateSizingDataModule):
    folder = "iscas85"

    def __init__(self, train_circuits=("c432", "c499", "c880", "c1355"), val_circuits=("c1908",),
                 test_circuits=("c2670", "c3540", "c5315", "c7552"), **kwargs):
        super().__init__(train_circuits, val_circuits, test_circuits, **kwargs)

    def load_netlists(self, names, library, sizing, mapping):
        sources = {}
        for n in names:
            path = self.dataset_dir / f"{n}.bench"
            if not path.exists():
                raise DataError(f"missing circuit: expected {path}. Put the ISCAS-85 .bench files there, or point "
                                "--data-dir (env PAPERBOARD_DATA) at the folder that holds iscas85/.")
            sources[n] = path
        return _mapped(self, sources, library, mapping)


@register_dataset("epfl-gatesize", family="eda")
class EPFLGateSizing(GateSizingDataModule):
    folder = "epfl-benchmarks"

    def __init__(self, train_circuits=("ctrl", "int2float", "router", "dec"), val_circuits=("cavlc",),
                 test_circuits=("priority", "i2c", "adder"), **kwargs):
        super().__init__(train_circuits, val_circuits, test_circuits, **kwargs)

    def load_netlists(self, names, library, sizing, mapping):
        sources = {}
        for n in names:
            found = sorted(self.dataset_dir.glob(f"*/{n}.v.gz")) + sorted(self.dataset_dir.glob(f"*/{n}.v"))
            if not found:
                raise DataError(f"missing circuit: expected {self.dataset_dir}/<arithmetic|random_control>/{n}.v.gz. "
                                "Point --data-dir (env PAPERBOARD_DATA) at the folder that holds epfl-benchmarks/.")
            sources[n] = found[0]
        return _mapped(self, sources, library, mapping)


def synthetic_netlist(library, seed: int, num_inputs: int = 12, num_gates: int = 60, num_outputs: int = 6,
                      name: str = "synthetic") -> Netlist:
    """A random levelised netlist over the library's drive-1 cells: each gate reads random earlier nets (biased
    towards recent ones, so paths are deep); the last `num_outputs` gates' nets and every unread gate's net are
    primary outputs."""
    rng = np.random.default_rng(seed)
    cells = [min(library.family_cells(f), key=lambda c: (c.drive != 1, c.drive)) for f in library.families]
    cells = [c for c in cells if c.family != "buf"]
    net_names = [f"in{i}" for i in range(num_inputs)]
    in_pins, in_nets, outs, cell_names = [], [], [], []
    for g in range(num_gates):
        cell = cells[rng.integers(len(cells))]
        pins = sorted(cell.inputs)
        avail = len(net_names)
        lo = max(0, avail - 3 * num_inputs)
        picks = rng.choice(np.arange(lo, avail), size=len(pins), replace=len(pins) > avail - lo)
        in_pins.append(pins)
        in_nets.append([int(p) for p in picks])
        outs.append(len(net_names))
        cell_names.append(cell.name)
        net_names.append(f"g{g}")
    read = {n for nets in in_nets for n in nets}
    dangling = [o for o in outs[:-num_outputs] if o not in read]  # unread gates become outputs too
    po = np.array(dangling + outs[-num_outputs:], dtype=np.int64)
    num_outputs = len(po)
    pi = list(range(num_inputs))
    level = _levelise(len(net_names), pi, in_nets, outs, [f"u{g}" for g in range(num_gates)])
    return Netlist(name, net_names, np.array(pi, dtype=np.int64), po, [f"out{i}" for i in range(num_outputs)],
                   [f"u{g}" for g in range(num_gates)], cell_names, in_pins, in_nets, np.array(outs), level)


@register_dataset("synthetic-gatesize", family="eda")
class SyntheticGateSizing(GateSizingDataModule):
    """Random netlists (`synthetic_netlist`) on the embedded tiny sky130 subset; circuit names are seeds `s<k>`."""

    def __init__(self, train_circuits=("s0", "s1"), val_circuits=("s2",), test_circuits=("s3",),
                 num_gates: int = 60, **kwargs):
        kwargs.setdefault("signoff", False)
        super().__init__(train_circuits, val_circuits, test_circuits, **kwargs)
        self.num_gates = num_gates

    def prepare_library(self) -> tuple[Path, Path]:
        return TINY_LIBERTY, TINY_LIBERTY

    def load_netlists(self, names, library, sizing, mapping):
        out = {}
        for n in names:
            if not (n.startswith("s") and n[1:].isdigit()):
                raise DataError(f"synthetic circuit names are s<seed> (s0, s1, ...), got {n!r}")
            out[n] = synthetic_netlist(library, int(n[1:]), num_gates=self.num_gates, name=n)
        return out
