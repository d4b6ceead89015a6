"""Throughput of the seqrec models: training sequences per second (forward + backward + optimiser step) and
evaluation users per second (full-ranking scores + rank of the target), with peak memory.

    python -m benchmarks.perf.seqrec_throughput --dataset ml-100k --data-dir ../shared/data [--models sasrec,gru4rec]

Each model is measured in a fresh subprocess, so its peak RSS is its own. Timings use the board's settings for
the model (from --board) unless given; numbers depend on the machine: quote them with its description.
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time

import torch


def measure(model_name: str, board_name: str, data_dir: str | None, train_batches: int, warmup: int) -> dict:
    import datamodules  # noqa: F401
    import lightning_modules  # noqa: F401
    from benchmarks.boards import load_board
    from benchmarks.runner import RunSpec, resolve

    board = load_board(board_name)
    data_cls, data_kwargs, model_cls, model_kwargs = resolve(board, RunSpec(board.name, model_name, 0))
    dm = data_cls(data_dir=data_dir, **data_kwargs)
    dm.prepare_data()
    dm.setup()
    torch.manual_seed(0)
    model = model_cls(**{**dm.model_kwargs(), **model_kwargs})
    optimiser = model.configure_optimizers()
    loader = dm.train_dataloader()
    model.train()
    batches = [b for _, b in zip(range(warmup + train_batches), _cycle(loader))]
    seqs = 0
    for i, batch in enumerate(batches):
        if i == warmup:
            start = time.perf_counter()
            seqs = 0
        if optimiser is None:  # nothing to optimise (pop): its training step is the whole cost
            model.training_step(batch, i)
        else:
            loss = model.sequence_loss(model.user_vectors(batch), batch)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
        seqs += batch["input_ids"].shape[0]
    train_rate = seqs / (time.perf_counter() - start)

    model.eval()
    from lightning_modules.seqrec.metrics import target_rank

    users = 0
    start = time.perf_counter()
    with torch.no_grad():
        for batch in dm.test_dataloader():
            scores = model.score_all(batch)
            target_rank(scores, batch["target"], model.candidate_exclusions(batch, scores.shape[1]))
            users += batch["target"].shape[0]
    eval_rate = users / (time.perf_counter() - start)
    return {"model": model_name, "board": board.name, "train_seq_per_s": round(train_rate, 1),
            "eval_users_per_s": round(eval_rate, 1), "batch_size": dm.batch_size, "max_len": dm.max_len,
            "params": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "torch_threads": torch.get_num_threads()}


def _cycle(loader):
    while True:
        yield from loader


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--board", default="seqrec-ml100k", help="whose dataset and model settings to use")
    parser.add_argument("--models", help="comma-separated (default: every seqrec model on the board)")
    parser.add_argument("--data-dir")
    parser.add_argument("--train-batches", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one model in this process
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure(args.one, args.board, args.data_dir, args.train_batches, args.warmup)))
        return 0
    from benchmarks.boards import load_board

    models = args.models.split(",") if args.models else list(load_board(args.board).models)
    rows = []
    for model in models:
        cmd = [sys.executable, "-m", "benchmarks.perf.seqrec_throughput", "--one", model, "--board", args.board,
               "--train-batches", str(args.train_batches), "--warmup", str(args.warmup)]
        if args.data_dir:
            cmd += ["--data-dir", args.data_dir]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"{model}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
            continue
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    print("| model | board | train seq/s | eval users/s | params | batch | max_len | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['board']} | {r['train_seq_per_s']} | {r['eval_users_per_s']} | {r['params']:,} | "
              f"{r['batch_size']} | {r['max_len']} | {r['peak_rss_mb']} |")
    if args.json:
        from pathlib import Path

        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
