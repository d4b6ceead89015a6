"""Do the fast seqrec kernels keep a board's metrics? Re-run board rows on the current code and put them beside the
committed records, and run one short run on both paths (same seed, same random draws) to show they train alike.

    python -m benchmarks.perf.seqrec_verify --board seqrec-ml100k --models hstu,llama_rec --seeds 0,1,2 \
        --data-dir ../shared/data [--short-model hstu --short-epochs 5]

Full runs use the board's protocol (early stopping, epoch cap) in a temporary store; the committed records come
from `benchmarks/results/runs/<board>/<model>/`. The short pair runs `--short-epochs` epochs of one model and seed
with `PAPERBOARD_REFERENCE_KERNELS=1` (the reference code) and without, in separate processes: its metrics should
agree to float rounding, far inside seed noise, and its CPU seconds per epoch are the real-data speed-up.
Writes `benchmarks/results/seqrec-perf-<board>-verify.md` and `.json`, load averages included.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "results"


def run_board(board: str, models: str, seeds: str, data_dir: str | None, url: str, extra: list[str],
              env: dict | None = None) -> tuple[int, list[float], list[float]]:
    seeds = seeds if "," in seeds else seeds + ","  # a list, never a count: "0," is seed 0
    cmd = [sys.executable, "-m", "benchmarks.cli", "run", board, "--models", models, "--seeds", seeds,
           "--storage", url, "--threads", "1", "--quiet", *extra]
    cmd += ["--data-dir", data_dir] if data_dir else []
    load_before = list(os.getloadavg())
    code = subprocess.run(cmd, env={**os.environ, **(env or {})}).returncode
    return code, load_before, list(os.getloadavg())


def records(url: str, board: str) -> list[dict]:
    from benchmarks.store import ResultStore

    return [r for r in ResultStore(url).records(board=board) if r.get("status") == "ok"]


def committed(board: str, model: str) -> list[dict]:
    folder = RESULTS / "runs" / board / model
    rows = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))] if folder.exists() else []
    return [r for r in rows if r.get("status") == "ok"]


def summary(rows: list[dict], metric: str, split: str = "test") -> dict:
    values = [r["metrics"][split][metric] for r in rows if metric in r.get("metrics", {}).get(split, {})]
    epochs = [r["train_seconds"] / r["epochs"] for r in rows if r.get("epochs")]
    return {"n": len(values), "mean": round(statistics.mean(values), 4) if values else None,
            "std": round(statistics.stdev(values), 4) if len(values) > 1 else None,
            "seeds": sorted(r["seed"] for r in rows), "values": [round(v, 4) for v in values],
            "train_s_per_epoch": round(statistics.median(epochs), 2) if epochs else None,
            "git_sha": sorted({r.get("git_sha", "")[:12] for r in rows})}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.perf.seqrec_verify", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--board", default="seqrec-ml100k")
    parser.add_argument("--models", default="hstu,llama_rec")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--data-dir")
    parser.add_argument("--short-model", default="hstu")
    parser.add_argument("--short-seed", default="0")
    parser.add_argument("--short-epochs", type=int, default=5)
    parser.add_argument("--skip-full", action="store_true")
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    from benchmarks.boards import load_board

    board = load_board(args.board)
    metric = board.primary_metric
    out = Path(args.out or RESULTS / f"seqrec-perf-{board.name}-verify.md")
    result = {"board": board.name, "metric": metric, "command": "python -m benchmarks.perf.seqrec_verify "
              + " ".join(argv if argv is not None else sys.argv[1:]), "full": {}, "short": {}}
    with tempfile.TemporaryDirectory(prefix="paperboard-verify-") as tmp:
        env = {"PAPERBOARD_HOME": tmp, "WANDB_MODE": "disabled"}
        for path, flag in (("fast", "0"), ("reference", "1")):
            url = f"sqlite:///{Path(tmp) / f'short-{path}.db'}"
            code, before, after = run_board(board.name, args.short_model, args.short_seed, args.data_dir, url,
                                            ["--max-epochs", str(args.short_epochs)],
                                            {**env, "PAPERBOARD_REFERENCE_KERNELS": flag})
            rows = records(url, board.name)
            result["short"][path] = {"exit": code, "load_before": before, "load_after": after,
                                     "val": rows[0]["metrics"]["val"] if rows else None,
                                     "test": rows[0]["metrics"]["test"] if rows else None,
                                     "train_s_per_epoch": round(rows[0]["train_seconds"] / rows[0]["epochs"], 2)
                                     if rows else None}
        if not args.skip_full:
            url = f"sqlite:///{Path(tmp) / 'full.db'}"
            code, before, after = run_board(board.name, args.models, args.seeds, args.data_dir, url, [], env)
            rows = records(url, board.name)
            result["full_exit"], result["full_load"] = code, [before, after]
            for model in args.models.split(","):
                result["full"][model] = {"now": summary([r for r in rows if r["model"] == model], metric),
                                         "committed": summary(committed(board.name, model), metric)}
    lines = [f"# Fast seqrec kernels on {board.name}: metrics beside the reference", "",
             f"Command: `{result['command']}`. Shared 2-core machine, one thread per run; load averages (1-minute) "
             "before -> after each part are stated.", ""]
    short = result["short"]
    if short.get("fast", {}).get("test") and short.get("reference", {}).get("test"):
        keys = [k for k in (metric, "hr@10", "mrr", "ndcg@50") if k in short["fast"]["test"]]
        keys += [k for k in sorted(short["fast"]["test"]) if k not in keys]
        lines += [f"Short pair: `{args.short_model}` seed {args.short_seed}, {args.short_epochs} epochs, the same "
                  "random draws on both paths (reference = `PAPERBOARD_REFERENCE_KERNELS=1`).", "",
                  "| path | wall s/epoch (load-dependent) | " + " | ".join(f"val {k}" for k in keys[:4]) + " | "
                  + " | ".join(f"test {k}" for k in keys[:4]) + " | load |",
                  "|---|---|" + "---|" * 8 + "---|"]
        for path in ("reference", "fast"):
            s = short[path]
            lines.append(f"| {path} | {s['train_s_per_epoch']} | "
                         + " | ".join(f"{s['val'][k]:.4f}" for k in keys[:4]) + " | "
                         + " | ".join(f"{s['test'][k]:.4f}" for k in keys[:4])
                         + f" | {s['load_before'][0]:.2f} -> {s['load_after'][0]:.2f} |")
    if result["full"]:
        lines += ["", f"Full board runs (early stopping as the board says), test {metric}, mean +- std over seeds; "
                  f"committed = the records on the board page. Load {result['full_load'][0][0]:.2f} -> "
                  f"{result['full_load'][1][0]:.2f}.", "",
                  f"| model | now: {metric} | seeds | wall s/epoch (load-dependent) | committed: {metric} | seeds | wall s/epoch | "
                  "difference of means |", "|---|---|---|---|---|---|---|---|"]
        for model, pair in result["full"].items():
            now, old = pair["now"], pair["committed"]
            diff = (f"{now['mean'] - old['mean']:+.4f}" if now["mean"] is not None and old["mean"] is not None
                    else "n/a")
            lines.append(f"| {model} | {now['mean']} +- {now['std']} ({', '.join(map(str, now['values']))}) | "
                         f"{now['seeds']} | {now['train_s_per_epoch']} | {old['mean']} +- {old['std']} "
                         f"({', '.join(map(str, old['values']))}) | {old['seeds']} | {old['train_s_per_epoch']} | "
                         f"{diff} |")
    out.write_text("\n".join(lines) + "\n")
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
