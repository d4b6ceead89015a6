"""Edit your own series with a trained tsedit backbone: a Python API and `python -m lightning_modules.tsedit.api`.

    from lightning_modules.tsedit.api import load_editor, edit_csv
    model = load_editor("~/.cache/paperboard/cache/<dataset>/tsedit-backbones/<key>.pt", method="cocktail_edit")
    result = edit_csv(model, "my.csv", anchors=[(40, "OT", 25.0, 1.0)], segments=[(60, 84, "OT", "mean", 18.0)],
                      out_png="edit.png")
    result.frame      # the edited rows, in the CSV's units
    result.metrics    # the board's metrics for this edit (see `metrics.edit_report`) and one entry per constraint

A backbone file is written by every board run (`<cache>/<dataset>/tsedit-backbones/`, the cache being `$PAPERBOARD_CACHE` or `~/.cache/paperboard/cache`, one per board data, seed and
budget; its `hparams` say which) and Lightning checkpoints of board runs load too. Values are in the CSV's own
units: the API z-scores them with the training statistics stored in the model and maps the edit back.
Anchors are (time index, channel name or index, value, confidence in (0, 1]); segments are (start, end exclusive,
channel, "mean" | "sum", target).
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from contracts.batch import tsedit as B
from contracts.registry import MODELS
from lightning_modules.tsedit.constraints import segment_stats
from lightning_modules.tsedit.metrics import anchor_pulls, edit_report, segment_relative_errors


def load_editor(path: str | Path, method: str = "cocktail_edit", **method_args):
    """A registered tsedit method on the weights of a backbone file (.pt) or a board run's checkpoint (.ckpt)."""
    import lightning_modules  # noqa: F401  (fills the registry)
    from lightning_modules.safe_load import safe_load

    saved = safe_load(path, map_location="cpu")  # a received file: weights only, never code
    hparams = dict(saved.get("hparams") or saved.get("hyper_parameters") or {})
    if not hparams:
        raise ValueError(f"{path}: no hyper-parameters stored; expected a tsedit backbone (.pt) or checkpoint (.ckpt)")
    cls = MODELS.get(method).cls
    if cls.family != "tsedit":
        raise ValueError(f"{method!r} is not a tsedit model; choose one of {', '.join(MODELS.names(family='tsedit'))}")
    backbone = {k: v for k, v in hparams.items() if k in _backbone_args()}
    model = cls(**{**backbone, **method_args, "share_backbone": False})
    model.load_state_dict(saved["state_dict"])
    return model.eval()


def _backbone_args() -> set[str]:
    import inspect

    from lightning_modules.tsedit.base import TSEditModule

    return set(inspect.signature(TSEditModule.__init__).parameters) - {"self"}


def _channel(model, channel) -> int:
    if isinstance(channel, (int, np.integer)):
        return int(channel)
    names = list(model.channel_names or [])
    if channel not in names:
        raise ValueError(f"unknown channel {channel!r}; the model's channels are {names}")
    return names.index(channel)


def build_task(model, series: np.ndarray, anchors=(), segments=(), attr: int | None = None) -> dict:
    """One edit task (batch of 1) from a [L, C] series in original units and constraints in original units."""
    series = np.asarray(series, dtype=np.float64)
    L, C = model.window, model.channels
    if series.shape != (L, C):
        raise ValueError(f"the series must be [window={L}, channels={C}], got {list(series.shape)}")
    mean = np.asarray(model.channel_mean if model.channel_mean is not None else np.zeros(C))
    std = np.asarray(model.channel_std if model.channel_std is not None else np.ones(C))
    x = ((series - mean) / std).T.astype(np.float32)
    value, conf = np.zeros((C, L), np.float32), np.zeros((C, L), np.float32)
    mask = np.zeros((C, L), np.float32)
    for t, channel, v, w in anchors:
        c = _channel(model, channel)
        if not (0 <= t < L and 0 < w <= 1):
            raise ValueError(f"anchor {(t, channel, v, w)}: need 0 <= time < {L} and confidence in (0, 1]")
        value[c, t], conf[c, t] = (v - mean[c]) / std[c], w
        mask[c, max(0, t - 4):t + 5] = 1
    K = max(1, len(segments))
    weight, target = np.zeros((K, C, L), np.float32), np.zeros(K, np.float32)
    scale, active = np.ones(K, np.float32), np.zeros(K, np.float32)
    for k, (start, end, channel, stat, m) in enumerate(segments):
        c = _channel(model, channel)
        n = end - start
        if not (0 <= start < end <= L) or stat not in ("mean", "sum"):
            raise ValueError(f"segment {(start, end, channel, stat, m)}: need 0 <= start < end <= {L}, stat mean|sum")
        weight[k, c, start:end] = 1.0 / n if stat == "mean" else 1.0
        # a target in original units -> z units: mean' = (mean - mu)/sd, sum' = (sum - n mu)/sd
        target[k] = (m - mean[c]) / std[c] if stat == "mean" else (m - n * mean[c]) / std[c]
        scale[k], active[k] = (1.0 if stat == "mean" else n), 1.0
        mask[c, start:end] = 1
    if attr is None:  # the trend class the model was trained with (terciles are not stored): middle class
        attr = model.num_classes // 2
    as_t = lambda a, dtype=torch.float32: torch.as_tensor(a, dtype=dtype).unsqueeze(0)
    return {B.X: as_t(x), B.ATTR: as_t(attr, torch.long), B.ANCHOR_VALUE: as_t(value), B.ANCHOR_CONF: as_t(conf),
            B.SEG_WEIGHT: as_t(weight), B.SEG_TARGET: as_t(target), B.SEG_SCALE: as_t(scale),
            B.SEG_ACTIVE: as_t(active), B.EDIT_MASK: as_t(mask), B.SAMPLE_IDX: as_t(0, torch.long)}


def edit(model, series: np.ndarray, anchors=(), segments=(), attr: int | None = None, seed: int = 0) -> np.ndarray:
    """Edit a [L, C] series (original units); returns the edited [L, C] series in the same units."""
    task = build_task(model, series, anchors, segments, attr)
    edited = model.edit(task, torch.Generator().manual_seed(seed))[0].T.numpy().astype(np.float64)
    std = np.asarray(model.channel_std if model.channel_std is not None else np.ones(model.channels))
    mean = np.asarray(model.channel_mean if model.channel_mean is not None else np.zeros(model.channels))
    return edited * std + mean


@dataclass
class EditResult:
    """What `edit_csv` returns: the edited rows, the edit's metrics, the figure's path (None when not drawn)."""
    frame: "object"  # pandas.DataFrame
    metrics: dict = field(default_factory=dict)
    figure: Path | None = None


def edit_metrics_for(model, source: np.ndarray, edited: np.ndarray, anchors=(), segments=(), attr=None,
                     history: np.ndarray | None = None) -> dict:
    """The board's metrics (`metrics.edit_report`: relative errors, pull against confidence, boundary jumps) plus
    preservation outside the edited region and one entry per constraint in the series' own units. `history` [T, C]
    (default: the source) sets the data's own |dx| scale for jump_rate."""
    task = build_task(model, source, anchors, segments, attr)
    mean, std = _stats(model)
    z = lambda a: torch.as_tensor(((np.asarray(a, np.float64) - mean) / std).T, dtype=torch.float32)
    edited_z = z(edited).unsqueeze(0)
    series = z(history if history is not None else source)
    limit = torch.quantile(series.diff(dim=-1).abs().double(), 0.99, dim=1)
    report = edit_report(edited_z, task, jump_limit=limit)
    keep = task[B.EDIT_MASK] <= 0
    report["preservation_mse"] = float((((edited_z - task[B.X]) ** 2) * keep).sum() / keep.sum().clamp(min=1))
    _, pulls = anchor_pulls(edited_z, task)
    order = sorted(range(len(anchors)), key=lambda i: (_channel(model, anchors[i][1]), anchors[i][0]))  # mask order
    report["anchors"] = [None] * len(anchors)
    for rank, i in enumerate(order):
        t, channel, value, confidence = anchors[i]
        c = _channel(model, channel)
        pull = float(pulls[rank])
        report["anchors"][i] = {"time": t, "channel": channel, "target": value, "confidence": confidence,
                                "source": float(source[t, c]), "edited": float(edited[t, c]), "pull": pull,
                                "rel_error": abs(1 - pull)}
    rel = segment_relative_errors(edited_z, task)
    x_src = torch.as_tensor(np.asarray(source, np.float64), dtype=torch.float64).T.unsqueeze(0)
    x_edit = torch.as_tensor(np.asarray(edited, np.float64), dtype=torch.float64).T.unsqueeze(0)
    report["segments"] = []
    for k, (start, end, channel, stat, target) in enumerate(segments):
        c = _channel(model, channel)
        weight = torch.zeros(1, 1, model.channels, model.window, dtype=torch.float64)
        weight[0, 0, c, start:end] = 1.0 / (end - start) if stat == "mean" else 1.0
        report["segments"].append({"start": start, "end": end, "channel": channel, "stat": stat, "target": target,
                                   "source": float(segment_stats(x_src, weight)), "edited": float(segment_stats(x_edit, weight)),
                                   "rel_error": float(rel[k])})
    return report


def _stats(model) -> tuple[np.ndarray, np.ndarray]:
    mean = np.asarray(model.channel_mean if model.channel_mean is not None else np.zeros(model.channels))
    std = np.asarray(model.channel_std if model.channel_std is not None else np.ones(model.channels))
    return mean, std


def plot_edit(source: np.ndarray, edits: dict, anchors=(), segments=(), path: str | Path = "edit.png",
              channel_names=None, title: str = "", channels=None) -> Path:
    """Source and one or more edits ([L, C] each, same units), anchors as dots (size = confidence) and segment
    targets as horizontal bars (means; a sum's bar shows its per-point level), one panel per channel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(channel_names or [f"ch{i}" for i in range(source.shape[1])])
    index = lambda c: names.index(c) if isinstance(c, str) else int(c)
    used = sorted({index(a[1]) for a in anchors} | {index(s[2]) for s in segments}) or [source.shape[1] - 1]
    channels = channels or used
    fig, axes = plt.subplots(len(channels), 1, figsize=(9, 2.4 * len(channels)), squeeze=False)
    for ax, c in zip(axes[:, 0], channels):
        ax.plot(source[:, c], color="black", lw=1.6, label="source")
        for (name, series), color in zip(edits.items(), plt.rcParams["axes.prop_cycle"].by_key()["color"]):
            ax.plot(series[:, c], lw=1.1, color=color, label=name)
        for t, ch, v, w in anchors:
            if index(ch) == c:
                ax.scatter([t], [v], s=30 + 70 * w, color="red", zorder=5, marker="o", edgecolor="black")
                ax.annotate(f"w={w:g}", (t, v), textcoords="offset points", xytext=(5, 5), fontsize=7, color="red")
        for start, end, ch, stat, m in segments:
            if index(ch) == c:
                level = m if stat == "mean" else m / (end - start)
                ax.hlines(level, start, end - 1, color="red", lw=3, alpha=0.6)
                ax.axvspan(start, end - 1, color="red", alpha=0.06)
        ax.set_ylabel(names[c])
    axes[0, 0].legend(loc="upper left", fontsize=7, ncol=len(edits) + 1)
    if title:
        axes[0, 0].set_title(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def edit_csv(model, csv_path: str | Path, anchors=(), segments=(), out_png: str | Path | None = None,
             start: int | None = None, seed: int = 0, attr: int | None = None) -> EditResult:
    """Edit `window` rows of a CSV (columns = the model's channel names; from row `start`, default the last rows;
    anchors/segments index the window, 0..window-1). Returns an `EditResult`: the edited rows, the edit's metrics
    (`edit_metrics_for`; the jump scale is the whole CSV's own) and the figure (source, edit, anchors sized and
    labelled by confidence, segment targets), written when `out_png` is given."""
    import pandas as pd

    frame = pd.read_csv(csv_path)
    names = list(model.channel_names or [])
    missing = [c for c in names if c not in frame.columns]
    if missing:
        raise ValueError(f"{csv_path}: missing column(s) {missing}; the model was trained on {names}")
    start = len(frame) - model.window if start is None else start
    rows = frame.iloc[start:start + model.window]
    if len(rows) != model.window:
        raise ValueError(f"{csv_path}: need {model.window} rows from row {start}, found {len(rows)}")
    source = rows[names].to_numpy(np.float64)
    edited = edit(model, source, anchors, segments, attr, seed)
    figure = None
    if out_png:
        figure = plot_edit(source, {type(model).registry_name: edited}, anchors, segments, out_png, names)
    out = rows.copy()
    out[names] = edited
    metrics = edit_metrics_for(model, source, edited, anchors, segments, attr,
                               history=frame[names].to_numpy(np.float64))
    return EditResult(out, metrics, figure)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lightning_modules.tsedit.api",
                                     description="Edit a CSV series with a trained tsedit backbone.")
    parser.add_argument("backbone", help="backbone .pt (from <cache>/<dataset>/tsedit-backbones) or run .ckpt")
    parser.add_argument("csv")
    parser.add_argument("--method", default="cocktail_edit")
    parser.add_argument("--anchors", default="[]", help='JSON list of [time, channel, value, confidence]')
    parser.add_argument("--segments", default="[]", help='JSON list of [start, end, channel, "mean"|"sum", target]')
    parser.add_argument("--start", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-csv", default="edited.csv")
    parser.add_argument("--out-png", default="edited.png")
    args = parser.parse_args(argv)
    try:
        model = load_editor(args.backbone, args.method)
    except ValueError as err:  # a refused or unreadable file, a wrong method: one message, no traceback
        print(f"error: {err}", file=sys.stderr)
        return 2
    result = edit_csv(model, args.csv, json.loads(args.anchors), json.loads(args.segments), args.out_png, args.start,
                      args.seed)
    result.frame.to_csv(args.out_csv, index=False)
    print(json.dumps(result.metrics, indent=1, default=float))
    print(f"edited {model.window} rows -> {args.out_csv}, figure -> {args.out_png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


def plot_tasks(models: dict, tasks: dict, rows: list[int], path: str | Path, seed: int = 0) -> Path:
    """A grid of edits for a board's figure: one row per task (its most constrained channel), one curve per method.
    `models` maps a label to a tsedit model (all on the same backbone); `tasks` is an edit batch (see `contracts.batch.tsedit`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    picked = {k: v[rows] for k, v in tasks.items()}
    edits = {label: m.edit(picked, torch.Generator().manual_seed(seed)) for label, m in models.items()}
    fig, axes = plt.subplots(len(rows), 1, figsize=(10, 2.5 * len(rows)), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, ax in enumerate(axes[:, 0]):
        load = picked[B.ANCHOR_CONF][i].sum(-1) + (picked[B.SEG_WEIGHT][i] != 0).any(-1).float().sum(0)
        c = int(load.argmax())
        ax.plot(picked[B.X][i, c], color="black", lw=1.8, label="source")
        for (label, edited), color in zip(edits.items(), colors):
            ax.plot(edited[i, c], lw=1.0, color=color, label=label)
        t = torch.nonzero(picked[B.ANCHOR_CONF][i, c] > 0).flatten()
        ax.scatter(t, picked[B.ANCHOR_VALUE][i, c, t], s=30 + 70 * picked[B.ANCHOR_CONF][i, c, t], color="red",
                   edgecolor="black", zorder=5, label="anchors (size = confidence)")
        for k in range(picked[B.SEG_WEIGHT].shape[1]):
            w = picked[B.SEG_WEIGHT][i, k, c]
            if picked[B.SEG_ACTIVE][i, k] > 0 and (w != 0).any():
                span = torch.nonzero(w).flatten()
                level = picked[B.SEG_TARGET][i, k] / picked[B.SEG_SCALE][i, k]
                ax.hlines(float(level), int(span[0]), int(span[-1]), color="red", lw=3, alpha=0.6)
                ax.axvspan(int(span[0]), int(span[-1]), color="red", alpha=0.06)
        ax.set_ylabel(f"task {rows[i]}, ch {c}")
    axes[0, 0].legend(loc="upper left", fontsize=7, ncol=4)
    axes[-1, 0].set_xlabel("time step (z-scored values; red bars = segment targets per point)")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
