"""SAFER's sensitivity to its premise: SAFER minus its best baseline (and minus SAFER-F, no risk-aware fine-tuning)
as the ICU-Sepsis stand-in's label-reliability knob `unreliable_rate` grows (0 = no unreliable labels).

  paperboard run dtr-icu-sepsis-knob --seeds 1 --data.unreliable_rate 0.0      (and 1.0; the knob board)
  python -m benchmarks.dtr_sensitivity --records benchmarks/results/runs --out benchmarks/results/dtr-icu-sepsis-knob

Reads the finished records of the knob board and of dtr-icu-sepsis (its default knob), groups them by the knob
each run's data was generated with, keeps the seeds every row has at that knob, and writes <out>.json (per knob:
each row's mean and its runs, SAFER minus the best baseline, SAFER minus SAFER-F) and <out>.png. Numbers come only
from records; a knob without SAFER and a baseline is left out.
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

BOARDS = ("dtr-icu-sepsis-knob", "dtr-icu-sepsis")
BASELINES = ("bc_mlp", "lstm", "retain", "srl_rnn", "acil", "cql")


def knob_table(records: list[dict], metric: str) -> dict:
    """{knob: {model: {seed: value}}} from finished, untuned records (the newest per board, model, seed, knob)."""
    newest: dict = {}
    for r in sorted(records, key=lambda r: r["created_at"]):
        if r.get("status") != "ok" or r.get("tuned") or metric not in r["metrics"].get("test", {}):
            continue
        knob = float(r["config"]["dataset_args"].get("unreliable_rate", 0.0))
        newest[(knob, r["model"], r["seed"])] = r
    table: dict = defaultdict(lambda: defaultdict(dict))
    for (knob, model, seed), r in newest.items():
        table[knob][model][seed] = (float(r["metrics"]["test"][metric]), r["run_id"], r["board"])
    return table


def summarise(table: dict, metric: str) -> dict:
    out = {"metric": metric, "knobs": {}}
    for knob in sorted(table):
        rows = table[knob]
        if "safer" not in rows or not any(b in rows for b in BASELINES):
            continue
        seeds = set(rows["safer"])
        for model in rows:
            if model in BASELINES:
                seeds &= set(rows[model])
        if not seeds:
            continue
        seeds = sorted(seeds)
        mean = {m: float(np.mean([rows[m][s][0] for s in seeds])) for m in rows if all(s in rows[m] for s in seeds)}
        baselines = {m: v for m, v in mean.items() if m in BASELINES}
        best = max(baselines, key=baselines.get)
        per_seed = [rows["safer"][s][0] - max(rows[b][s][0] for b in baselines) for s in seeds]
        entry = {"seeds": seeds, "mean": mean, "best_baseline": best,
                 "safer_minus_best": mean["safer"] - baselines[best],
                 "safer_minus_best_per_seed": per_seed,
                 "runs": {m: [rows[m][s][1] for s in seeds] for m in mean}}
        if "safer_f" in mean:
            entry["safer_minus_safer_f"] = mean["safer"] - mean["safer_f"]
        out["knobs"][f"{knob:g}"] = entry
    return out


def plot(summary: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    knobs = sorted(summary["knobs"], key=float)
    x = [float(k) for k in knobs]
    fig, ax = plt.subplots(figsize=(6, 4))
    y = [summary["knobs"][k]["safer_minus_best"] for k in knobs]
    ax.plot(x, y, marker="o", label="SAFER - best baseline")
    for k, xi in zip(knobs, x):
        ax.scatter([xi] * len(summary["knobs"][k]["safer_minus_best_per_seed"]),
                   summary["knobs"][k]["safer_minus_best_per_seed"], color="C0", alpha=0.35, s=12)
    z = [summary["knobs"][k].get("safer_minus_safer_f") for k in knobs]
    if all(v is not None for v in z):
        ax.plot(x, z, marker="s", label="SAFER - SAFER-F (fine-tuning's effect)")
    ax.axhline(0, color="k", lw=1)
    ax.set_xlabel("unreliable_rate (share of deceased patients with unreliable care)")
    ax.set_ylabel(f"difference in test {summary['metric']}")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    ax.set_title("dtr-icu-sepsis: when does SAFER's idea pay off? (mean over seeds; dots = seeds)", fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out.with_suffix(".png"), dpi=120)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=Path, required=True, help="folder of exported run records")
    parser.add_argument("--out", type=Path, required=True, help="output path without suffix (.png and .json)")
    parser.add_argument("--metric", default="mrr@3")
    args = parser.parse_args(argv)
    from benchmarks.store import load_records_dir

    records = [r for board in BOARDS for r in load_records_dir(args.records, board)]
    summary = summarise(knob_table(records, args.metric), args.metric)
    if not summary["knobs"]:
        raise SystemExit(f"no knob with finished SAFER and baseline runs in {args.records} for {', '.join(BOARDS)}")
    plot(summary, args.out)
    args.out.with_suffix(".json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    for knob, entry in summary["knobs"].items():
        print(f"knob {knob}: SAFER - {entry['best_baseline']} = {entry['safer_minus_best']:+.4f}"
              + (f", SAFER - SAFER-F = {entry['safer_minus_safer_f']:+.4f}" if "safer_minus_safer_f" in entry else ""))


if __name__ == "__main__":
    main()
