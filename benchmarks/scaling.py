"""The scaling study's plot: test NDCG@10 against non-embedding parameters and against training FLOPs, one line per
backbone ("Scaling New Frontiers: Insights into Large Recommendation Models", arXiv 2412.00714, RQ1).

A scaling board lists each (backbone, depth) as a row `backbone@N` (e.g. `hstu@4: {num_blocks: 4}`), so
`paperboard run seqrec-ml1m-scaling` trains them with the ordinary runner; this module turns the board's run records
into `benchmarks/results/<board>-scaling.png` and a Markdown table beside it, and logs both to W&B (unless
WANDB_MODE=disabled). Re-plot from committed records with
    python -m benchmarks.scaling seqrec-ml100k-scaling --records benchmarks/results/runs

How the x-axes are counted (analytic, from the model actually built for the run):
- non-embedding parameters: every parameter outside `nn.Embedding` tables (item table, learned positions) and the
  [MASK] vector; relative-bias tables, norms and biases are counted.
- forward FLOPs per padded position (a multiply-add = 2 FLOPs; the dense L x L attention is computed for every
  position, padding included, so it is counted as computed):
    2 x (entries of every 2-D non-embedding weight: projections, FFNs, HSTU/FuXi W_uvqk, GRU weights)
  + per attention block 2 L h (d_qk + channels x d_v)  (QK^T and A V; softmax models: h d_qk = h d_v = d;
    FuXi-alpha: one A V per active channel, QK^T only with its semantic channel)
  + per training target the loss: 2 d (1 + negatives) for sampled softmax, 2 d |I| for full softmax, 4 d for BCE.
- training FLOPs = 3 x forward FLOPs (backward ~ 2 x forward) x (training rows x L, targets) x epochs run.
Norms, activations, the softmax and the optimiser are left out (small against the matmuls).
"""
from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path

from torch import nn

RESULTS_DIR = Path(__file__).parent / "results"


def backbone_of(model_label: str) -> str:
    return model_label.split("@", 1)[0]


def non_embedding_params(model: nn.Module) -> int:
    embedding = {id(p) for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters()}
    mask = getattr(model, "mask_embedding", None)
    if isinstance(mask, nn.Parameter):
        embedding.add(id(mask))
    return sum(p.numel() for p in model.parameters() if id(p) not in embedding)


def _weight_flops(model: nn.Module) -> int:
    embedding = {id(p) for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters()}
    return 2 * sum(p.numel() for p in model.parameters() if p.dim() == 2 and id(p) not in embedding)


def attention_flops_per_position(model: nn.Module, length: int) -> int:
    """2 L h (d_qk + channels x d_v) per block, by backbone (see the module docstring)."""
    hp = dict(getattr(model, "hparams", {}))
    name = getattr(model, "registry_name", "")
    blocks = int(hp.get("num_blocks", hp.get("num_layers", 0)))
    if name == "hstu":
        h, dqk, dv = hp["num_heads"], hp["qk_dim"], hp["v_dim"]
        return blocks * 2 * length * h * (dqk + dv)
    if name == "fuxi_alpha":
        h, dqk, dv = hp["num_heads"], hp["qk_dim"], hp["v_dim"]
        channels = sum(bool(hp.get(c, True)) for c in ("semantic_channel", "positional_channel", "temporal_channel"))
        return blocks * 2 * length * h * ((dqk if hp.get("semantic_channel", True) else 0) + channels * dv)
    if name in ("sasrec", "llama_rec", "gpt_rec", "bert4rec"):
        return blocks * 2 * length * 2 * int(hp["embed_dim"])
    return 0  # recurrent or non-attentive models: their weights are in _weight_flops


def loss_flops_per_target(model) -> int:
    d = int(model.embed_dim)
    if model.loss_name == "sampled_softmax":
        return 2 * d * (1 + int(model.num_negatives))
    if model.loss_name == "ce":
        return 2 * d * int(model.num_items)
    return 4 * d


def forward_flops(model: nn.Module, positions: int, targets: int, length: int) -> float:
    per_position = _weight_flops(model) + attention_flops_per_position(model, length)
    return float(positions) * per_position + float(targets) * loss_flops_per_target(model)


def training_flops(model: nn.Module, train_inputs, train_targets, epochs: int) -> float:
    """3 x forward FLOPs over the training set (dense [rows, L] inputs, the non-padding targets) x epochs."""
    rows, length = train_inputs.shape
    targets = int((train_targets != 0).sum())
    return 3.0 * forward_flops(model, rows * length, targets, length) * max(int(epochs), 1)


# ----- from run records to points ---------------------------------------------------------------------------------
def scaling_points(board, records: list[dict], data_dir: str | None = None, metric: str = "ndcg@10") -> list[dict]:
    """One point per finished run (the newest per model label and seed): backbone, blocks, params, FLOPs, metric."""
    import datamodules  # noqa: F401
    import lightning_modules  # noqa: F401
    from benchmarks.records import latest_per_seed
    from contracts.batch import seqrec as B
    from contracts.registry import DATASETS, MODELS

    data_cache: dict[str, object] = {}
    points = []
    for r in sorted(latest_per_seed([r for r in records if r.get("status") == "ok" and r["board"] == board.name]),
                    key=lambda r: r["model"]):
        config = r["config"]
        key = json.dumps(config["dataset_args"], sort_keys=True)
        if key not in data_cache:
            dm = DATASETS.get(board.dataset).cls(data_dir=data_dir, **config["dataset_args"])
            dm.setup("fit")
            data_cache[key] = dm
        dm = data_cache[key]
        model = MODELS.get(backbone_of(r["model"])).cls(**config["model_args"])
        train = dm.train_set.tensors
        points.append({
            "model": r["model"], "backbone": backbone_of(r["model"]), "seed": r["seed"],
            "blocks": int(config["model_args"].get("num_blocks", 0)),
            "non_embedding_params": non_embedding_params(model),
            "train_flops": training_flops(model, train[B.INPUT_IDS], train[B.TARGET_IDS], r.get("epochs") or 1),
            "epochs": r.get("epochs"), "best_epoch": r.get("best_epoch"),
            metric: float(r["metrics"]["test"].get(metric, math.nan)), "run_id": r["run_id"],
        })
    return points


def plot_points(points: list[dict], path: Path, title: str, metric: str = "ndcg@10") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from matplotlib.ticker import FuncFormatter

    def mantissa_2_and_5(value, _pos):  # label only 2x and 5x between decades: all minor labels collide
        mantissa = value / 10 ** math.floor(math.log10(value))
        return f"{value:.0e}".replace("e+0", "e").replace("e+", "e") if round(mantissa) in (2, 5) else ""

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6))
    for backbone in sorted({p["backbone"] for p in points}):
        # mean over seeds per depth, one line per backbone in order of depth
        by_blocks: dict[int, list[dict]] = {}
        for p in points:
            if p["backbone"] == backbone:
                by_blocks.setdefault(p["blocks"], []).append(p)
        rows = [by_blocks[b] for b in sorted(by_blocks)]
        y = [sum(p[metric] for p in ps) / len(ps) for ps in rows]
        for ax, key in zip(axes, ("non_embedding_params", "train_flops")):
            x = [sum(p[key] for p in ps) / len(ps) for ps in rows]
            ax.plot(x, y, marker="o", label=backbone)
            for xi, yi, ps in zip(x, y, rows):
                ax.annotate(f"{ps[0]['blocks']}", (xi, yi), textcoords="offset points", xytext=(3, 3), fontsize=7)
    for ax, label in zip(axes, ("non-embedding parameters", "training FLOPs (analytic)")):
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel(f"test {metric.upper()}")
        ax.grid(True, which="both", alpha=0.3)
        ax.xaxis.set_minor_formatter(FuncFormatter(mantissa_2_and_5))
        ax.tick_params(axis="x", which="minor", labelsize=7)
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, title="backbone (point labels: blocks)", loc="lower center", ncol=len(names),
               fontsize=8, title_fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def points_markdown(board, points: list[dict], metric: str = "ndcg@10") -> str:
    lines = [f"# {board.name}: scaling points", "", f"Rendered by `python -m benchmarks.scaling {board.name}` from the "
             "board's run records; FLOPs and parameters counted as the module docstring of benchmarks/scaling.py says.",
             "", f"| model | blocks | non-embedding params | training FLOPs | epochs run | best epoch | test {metric} | run |",
             "|---|---|---|---|---|---|---|---|"]
    for p in sorted(points, key=lambda p: (p["backbone"], p["blocks"], p["seed"])):
        lines.append(f"| {p['model']} | {p['blocks']} | {p['non_embedding_params']:,} | {p['train_flops']:.3g} | "
                     f"{p['epochs']} | {p['best_epoch']} | {p[metric]:.4f} | {p['run_id'][:8]} |")
    return "\n".join(lines) + "\n"


def log_to_wandb(board, png: Path, points: list[dict]) -> None:
    from benchmarks.runner import wandb_mode

    mode = wandb_mode()
    if mode == "disabled" or not points:
        return
    import wandb

    from benchmarks.runner import paperboard_home

    run = wandb.init(project=os.environ.get("WANDB_PROJECT", "paperboard"), group=board.name, job_type="scaling-plot",
                     name=f"scaling-{board.name}", mode=mode, dir=str(paperboard_home() / "wandb"),
                     reinit="finish_previous")
    columns = list(points[0])
    run.log({"scaling_plot": wandb.Image(str(png)),
             "scaling_points": wandb.Table(columns=columns, data=[[p[c] for c in columns] for p in points])})
    run.finish()


def plot_board(board, records: list[dict], out_dir: Path | None = None, data_dir: str | None = None,
               wandb_log: bool = True) -> Path | None:
    """Write <out_dir>/<board>-scaling.png and .md from the board's records; returns the PNG path (None if no runs)."""
    points = scaling_points(board, records, data_dir)
    if not points:
        return None
    out_dir = Path(out_dir or RESULTS_DIR)
    png = plot_points(points, out_dir / f"{board.name}-scaling.png", board.title)
    (out_dir / f"{board.name}-scaling.md").write_text(points_markdown(board, points))
    if wandb_log:
        log_to_wandb(board, png, points)
    return png


def main(argv: list[str] | None = None) -> int:
    from benchmarks.boards import load_board
    from benchmarks.store import load_records_dir

    parser = argparse.ArgumentParser(prog="python -m benchmarks.scaling", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("board")
    parser.add_argument("--records", help="a folder of exported run records (default: the results store)")
    parser.add_argument("--storage", help="results database URL")
    parser.add_argument("--out-dir", default=str(RESULTS_DIR))
    parser.add_argument("--data-dir", help="data folder, to count training targets")
    args = parser.parse_args(argv)
    board = load_board(args.board)
    if args.records:
        records = load_records_dir(Path(args.records), board.name)
    else:
        from benchmarks.store import ResultStore

        records = ResultStore(args.storage).records(board=board.name)
    png = plot_board(board, records, Path(args.out_dir), args.data_dir)
    print(f"wrote {png}" if png else f"no finished runs on {board.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
