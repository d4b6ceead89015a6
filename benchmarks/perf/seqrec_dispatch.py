"""Operations dispatched per seqrec training step, and host syncs per step: what a GPU step costs when, as at these
shapes, it is bound by kernel launches rather than by arithmetic (measured on an H200: 2.2-2.7 s per ML-1M epoch of
48 steps and one evaluation, seqrec-ml1m-hstu.yaml). Counted with torch.profiler on the CPU, so it runs anywhere:
each top-level aten operation of forward + backward is one dispatch (one or a few kernels on a GPU); `item`,
`_local_scalar_dense` and `nonzero` make the host wait for the device.

Two chunk policies of the fused item-softmax loss (lightning_modules/seqrec/base.py) are compared: the CPU's
cache-sized chunks, and the one-chunk-per-batch policy that the loss uses on any other device. The optimizer is
left out (its dispatch count depends on the device: AdamW runs for-each on CUDA).

    python -m benchmarks.perf.seqrec_dispatch --out benchmarks/results/perf-seqrec-dispatch.md
"""
from __future__ import annotations

import argparse
import collections
import platform
from pathlib import Path

from benchmarks.perf.seqrec_speed import MODELS, SHAPES, build, random_batch

RESULTS = Path(__file__).resolve().parents[1] / "results"
SYNCS = ("aten::item", "aten::_local_scalar_dense", "aten::nonzero")


def _top_level_ops(prof) -> collections.Counter:
    counts = collections.Counter()
    for event in prof.events():
        if not event.name.startswith("aten::"):
            continue
        parent = event.cpu_parent
        while parent is not None and not parent.name.startswith("aten::"):
            parent = parent.cpu_parent
        if parent is None:
            counts[event.name] += 1
    return counts


def count(model_name: str, shape_name: str, policy: str) -> dict:
    import torch
    from torch.profiler import ProfilerActivity, profile

    from lightning_modules.seqrec import base

    shape = SHAPES[shape_name]
    model, _ = build(model_name, shape)
    batch = random_batch(shape, shape["batch_size"])
    original = base._chunk_floats
    if policy == "gpu":
        base._chunk_floats = lambda device, cpu_floats: base.GPU_CHUNK_FLOATS
    try:
        model.train()
        model.training_step(batch, 0).backward()  # warm-up
        model.zero_grad(set_to_none=True)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            model.training_step(batch, 0).backward()
        ops = _top_level_ops(prof)
    finally:
        base._chunk_floats = original
    return {"model": model_name, "policy": policy, "ops": sum(ops.values()),
            "syncs": sum(ops[name] for name in SYNCS), "loss": model.loss_name}


def main(argv: list[str] | None = None) -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=MODELS)
    parser.add_argument("--shape", default="ml-1m", choices=sorted(SHAPES))
    parser.add_argument("--out", default=str(RESULTS / "perf-seqrec-dispatch.md"), help="'' writes nothing")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    shape = SHAPES[args.shape]
    lines = ["# Seqrec: operations dispatched per training step (forward + backward)", "",
             f"Shape `{args.shape}` (batch {shape['batch_size']} x length {shape['max_len']}, {shape['num_items']} "
             f"items, board `{shape['board']}`'s model settings); torch {torch.__version__} on {platform.machine()}. "
             "Top-level aten operations counted by torch.profiler; host syncs = item / _local_scalar_dense / "
             "nonzero. `cpu` = the loss's cache-sized chunks, `gpu` = one chunk per batch (what the loss does on a "
             "GPU).", "",
             f"`python -m benchmarks.perf.seqrec_dispatch --shape {args.shape}`", "",
             "| model | loss | ops, cpu chunks | ops, gpu chunks | ratio | host syncs cpu / gpu |",
             "|---|---|---|---|---|---|"]
    for name in args.models.split(","):
        cpu, gpu = count(name, args.shape, "cpu"), count(name, args.shape, "gpu")
        lines.append(f"| {name} | {cpu['loss']} | {cpu['ops']:,} | {gpu['ops']:,} | {cpu['ops'] / gpu['ops']:.1f}x | "
                     f"{cpu['syncs']} / {gpu['syncs']} |")
        print(lines[-1], flush=True)
    lines += ["", "Reading: where a GPU step at these shapes waits on launches, the one-chunk policy removes most of the "
              "transformers' dispatches per training step; what that buys in GPU seconds per epoch is measured on a "
              "GPU (`paperboard run` records seconds per epoch), not here. The CPU keeps its chunks. GRU4Rec's count "
              "is the CPU GRU's recurrence, whose backward runs step by step here; on a GPU cuDNN runs the "
              "recurrence in a few kernels, so its CPU count says little about its GPU cost."]
    page = "\n".join(lines) + "\n"
    if args.out:
        Path(args.out).write_text(page)
    print(page)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
