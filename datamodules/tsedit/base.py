"""The tsedit datamodule base: a multivariate series -> chronological splits -> normalised sliding windows with an
attribute, plus frozen edit tasks for validation and test.

A subclass provides `load_windows()` (CSV sources: chronological splits -> `normalise_rows`, which slides windows
over each split) and, optionally, its own attributes. Everything else is shared and vectorised:
- normalisation with the training split's per-channel mean and std (stored for the model, so edits can be
  mapped back to the original units);
- training windows at `train_stride`; the attribute of a window is by default its trend class on the target
  (last) channel: terciles, fitted on the training windows, of mean(second half) - mean(first half);
- the edit-task generator `make_edit_tasks`: from a seed, for every task a source window, 0..max_anchors point
  anchors and 0..max_segments segment statistics (at least one constraint), each target set away from the source
  by a random shift, and the edited region (anchors +- edit_radius, segment windows). Drawn once per split;
  every method is evaluated on exactly these tasks, and their hash is part of the data hash;
- held-out real windows for the realism score (`realism_reference`): for test edits the validation split's windows
  at stride 1 (never a test window, never the edit's own source), for validation edits a fixed subset of the
  training windows; and the training windows the realism encoder learns from (`realism_encoder_windows`).
"""
from __future__ import annotations

import numpy as np
import torch

from contracts.batch import tsedit as B
from datamodules.base import DataError, PaperboardDataModule, TensorBatchDataset, arrays_hash


def sliding_windows(series: np.ndarray, window: int, stride: int) -> np.ndarray:
    """[T, C] -> [N, C, window] (channels first), windows starting every `stride` rows."""
    if len(series) < window:
        raise DataError(f"a split has {len(series)} rows, fewer than the window length {window}")
    starts = np.arange(0, len(series) - window + 1, stride)
    index = starts[:, None] + np.arange(window)[None, :]
    return np.ascontiguousarray(series[index].transpose(0, 2, 1))


def trend_statistic(windows: np.ndarray) -> np.ndarray:
    half = windows.shape[-1] // 2
    target = windows[:, -1]
    return target[:, half:].mean(axis=1) - target[:, :half].mean(axis=1)


def make_edit_tasks(windows: np.ndarray, attrs: np.ndarray, num_tasks: int, seed: int, max_anchors: int = 3,
                    max_segments: int = 2, edit_radius: int = 4, anchor_shift: tuple = (0.5, 1.5),
                    segment_shift: tuple = (0.3, 1.0), segment_length: tuple = (8, 24),
                    confidences: tuple = (0.5, 0.75, 1.0)) -> dict[str, np.ndarray]:
    """Reproducible edit tasks (see `contracts.batch.tsedit` for the arrays). Shifts are in training standard deviations, drawn
    uniformly in +-[lo, hi]; a sum's target shift is scaled by its length, so it is the same per point."""
    rng = np.random.default_rng(seed)
    n, C, L = windows.shape
    if n == 0:
        raise DataError("no windows to draw edit tasks from")
    lo_len, hi_len = min(segment_length[0], L), min(segment_length[1], L)
    pick = rng.choice(n, size=num_tasks, replace=num_tasks > n)
    x = windows[pick].astype(np.float32)
    rows = np.arange(num_tasks)
    n_anchor = rng.integers(0, max_anchors + 1, num_tasks)
    n_seg = rng.integers(0, max_segments + 1, num_tasks)
    n_anchor[(n_anchor + n_seg) == 0] = 1
    anchor_value = np.zeros_like(x)
    anchor_conf = np.zeros_like(x)
    edit_mask = np.zeros_like(x)
    pos = np.arange(L)[None, :]
    margin = min(2, L // 4)
    for slot in range(max_anchors):  # a handful of slots, each vectorised over all tasks
        on = rows[slot < n_anchor]
        c = rng.integers(0, C, len(on))
        t = rng.integers(margin, L - margin, len(on))
        shift = rng.uniform(*anchor_shift, len(on)) * rng.choice([-1.0, 1.0], len(on))
        anchor_value[on, c, t] = x[on, c, t] + shift
        anchor_conf[on, c, t] = rng.choice(confidences, len(on))
        edit_mask[on, c] = np.maximum(edit_mask[on, c], (np.abs(pos - t[:, None]) <= edit_radius).astype(np.float32))
    seg_weight = np.zeros((num_tasks, max_segments, C, L), dtype=np.float32)
    seg_target = np.zeros((num_tasks, max_segments), dtype=np.float32)
    seg_scale = np.ones((num_tasks, max_segments), dtype=np.float32)
    seg_active = np.zeros((num_tasks, max_segments), dtype=np.float32)
    for k in range(max_segments):
        on = rows[k < n_seg]
        c = rng.integers(0, C, len(on))
        length = rng.integers(lo_len, hi_len + 1, len(on))
        start = (rng.random(len(on)) * (L - length + 1)).astype(np.int64)
        inside = ((pos >= start[:, None]) & (pos < (start + length)[:, None])).astype(np.float32)
        is_sum = rng.random(len(on)) < 0.5
        scale = np.where(is_sum, length, 1).astype(np.float32)
        per_point = np.where(is_sum, 1.0, 1.0 / length).astype(np.float32)
        seg_weight[on, k, c] = inside * per_point[:, None]
        current = (seg_weight[on, k, c] * x[on, c]).sum(axis=1)
        shift = rng.uniform(*segment_shift, len(on)) * rng.choice([-1.0, 1.0], len(on))
        seg_target[on, k] = current + shift * scale
        seg_scale[on, k] = scale
        seg_active[on, k] = 1.0
        edit_mask[on, c] = np.maximum(edit_mask[on, c], inside)
    return {B.X: x, B.ATTR: attrs[pick].astype(np.int64), B.ANCHOR_VALUE: anchor_value, B.ANCHOR_CONF: anchor_conf,
            B.SEG_WEIGHT: seg_weight, B.SEG_TARGET: seg_target, B.SEG_SCALE: seg_scale, B.SEG_ACTIVE: seg_active,
            B.EDIT_MASK: edit_mask, B.SAMPLE_IDX: rows.astype(np.int64)}


class TSEditDataModule(PaperboardDataModule):
    channel_names: list[str] = []

    def __init__(self, data_dir: str | None = None, window: int = 96, train_stride: int = 1, eval_stride: int = 12,
                 num_val_tasks: int = 64, num_test_tasks: int = 256, task_seed: int = 2024, max_anchors: int = 3,
                 max_segments: int = 2, edit_radius: int = 4, anchor_shift: tuple = (0.5, 1.5),
                 segment_shift: tuple = (0.3, 1.0), segment_length: tuple = (8, 24), num_classes: int = 3,
                 batch_size: int = 64, eval_batch_size: int = 128, num_workers: int = 0):
        super().__init__(data_dir, batch_size, eval_batch_size, num_workers)
        self.window, self.train_stride, self.eval_stride = window, train_stride, eval_stride
        self.num_val_tasks, self.num_test_tasks, self.task_seed = num_val_tasks, num_test_tasks, task_seed
        self.task_args = dict(max_anchors=max_anchors, max_segments=max_segments, edit_radius=edit_radius,
                              anchor_shift=tuple(anchor_shift), segment_shift=tuple(segment_shift),
                              segment_length=tuple(segment_length))
        self.num_classes = num_classes
        self.train_set = None

    # ----- what a subclass provides ----------------------------------------------------------------------
    def load_windows(self) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
        """{"train"|"val"|"test": (normalised windows [N,C,L], attributes [N] or None)}; sets self.mean/std."""
        raise NotImplementedError

    def attribute_edges(self, train_windows: np.ndarray) -> np.ndarray:
        """Class boundaries fitted on the training windows (default: trend terciles of the target channel)."""
        return np.quantile(trend_statistic(train_windows), np.linspace(0, 1, self.num_classes + 1)[1:-1])

    def attributes(self, windows: np.ndarray, edges: np.ndarray) -> np.ndarray:
        return np.searchsorted(edges, trend_statistic(windows)).astype(np.int64)

    def normalise_rows(self, train: np.ndarray, val: np.ndarray, test: np.ndarray):
        """Per-channel z-scores with the training rows' statistics; the three splits as windows."""
        for name, rows in (("train", train), ("val", val), ("test", test)):
            if not np.isfinite(rows).all():
                raise DataError(f"{self.registry_name}: the {name} split has missing or non-numeric values")
        self.mean, self.std = train.mean(axis=0), train.std(axis=0)
        self.std[self.std == 0] = 1.0
        norm = lambda s: ((s - self.mean) / self.std).astype(np.float32)
        return {"train": (sliding_windows(norm(train), self.window, self.train_stride), None),
                "val": (sliding_windows(norm(val), self.window, self.eval_stride), None),
                "test": (sliding_windows(norm(test), self.window, self.eval_stride), None),
                "reference": (sliding_windows(norm(val), self.window, 1), None)}

    # ----- shared pipeline -------------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        splits = self.load_windows()
        train_w = splits["train"][0]
        self.edges = self.attribute_edges(train_w)
        attrs = {name: a if a is not None else self.attributes(w, self.edges) for name, (w, a) in splits.items()}
        train_attr = attrs["train"]
        val_tasks = make_edit_tasks(splits["val"][0], attrs["val"], self.num_val_tasks, self.task_seed,
                                    **self.task_args)
        test_tasks = make_edit_tasks(splits["test"][0], attrs["test"], self.num_test_tasks, self.task_seed + 1,
                                     **self.task_args)
        train_arrays = {B.X: train_w, B.ATTR: train_attr}
        self.data_hash = arrays_hash({**{f"train/{k}": v for k, v in train_arrays.items()},
                                      **{f"val/{k}": v for k, v in val_tasks.items()},
                                      **{f"test/{k}": v for k, v in test_tasks.items()}})
        to_tensors = lambda arrays: {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}
        self.train_set = TensorBatchDataset(to_tensors(train_arrays))
        self.val_set = TensorBatchDataset(to_tensors(val_tasks))
        self.test_set = TensorBatchDataset(to_tensors(test_tasks))
        self.channels = train_w.shape[1]
        self.windows = {name: len(w) for name, (w, _) in splits.items() if name != "reference"}
        reference = "reference" if "reference" in splits else "val"
        subset = np.linspace(0, len(train_w) - 1, min(len(train_w), 2048)).round().astype(np.int64)
        self._realism = {"test": (torch.from_numpy(np.ascontiguousarray(splits[reference][0])), torch.from_numpy(attrs[reference])),
                         "val": (torch.from_numpy(train_w[subset]), torch.from_numpy(train_attr[subset])),
                         "encoder": torch.from_numpy(np.ascontiguousarray(train_w))}

    def realism_reference(self, stage: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Held-out real windows [N,C,L] and their attributes [N] that the `stage` split's edits are compared with."""
        self.setup()
        return self._realism["test" if stage == "test" else "val"]

    def realism_encoder_windows(self) -> torch.Tensor:
        """The training windows the realism encoder is trained on."""
        self.setup()
        return self._realism["encoder"]

    def model_kwargs(self) -> dict:
        self.setup()
        names = list(self.channel_names) or [f"ch{i}" for i in range(self.channels)]
        return {"channels": self.channels, "window": self.window, "num_classes": self.num_classes,
                "channel_mean": [float(v) for v in self.mean], "channel_std": [float(v) for v in self.std],
                "channel_names": names, "data_hash": self.data_hash}

    def describe(self) -> dict:
        return {"data_hash": self.data_hash, "channels": self.channels, "window": self.window, "windows": self.windows,
                "train_windows": len(self.train_set), "val_tasks": len(self.val_set), "test_tasks": len(self.test_set),
                "task_seed": self.task_seed, **{k: list(v) if isinstance(v, tuple) else v for k, v in self.task_args.items()}}
