"""Synthetic series with known structure, needing no files (the family's tiny variant and the test fixture).

Each window has a class k in {0, 1, 2} (the attribute) that sets the frequency of a sinusoid (2, 3 or 4 cycles
per window). Channel 0 = a sin(2 pi f t / L + phi) + b t / L + noise; channel 1 follows channel 0 with a lag of
`lag` steps and gain 0.7, plus noise (a cross-channel structure a good model must keep). Amplitude a ~ U(0.8,
1.2), phase ~ U(0, 2 pi), slope b ~ U(-1, 1), noise std `noise`. Generated in one vectorised draw per split.
"""
from __future__ import annotations

import numpy as np

from contracts.registry import register_dataset
from datamodules.tsedit.base import TSEditDataModule


def generate(num: int, window: int, rng: np.random.Generator, noise: float = 0.1, lag: int = 5):
    k = rng.integers(0, 3, num)
    freq = (k + 2).astype(np.float64)
    amp = rng.uniform(0.8, 1.2, num)
    phase = rng.uniform(0, 2 * np.pi, num)
    slope = rng.uniform(-1, 1, num)
    t = np.arange(-lag, window)[None, :]
    base = amp[:, None] * np.sin(2 * np.pi * freq[:, None] * t / window + phase[:, None]) + slope[:, None] * t / window
    ch0 = base[:, lag:] + noise * rng.standard_normal((num, window))
    ch1 = 0.7 * base[:, :window] + noise * rng.standard_normal((num, window))
    return np.stack([ch0, ch1], axis=1), k


@register_dataset("synthetic-tsedit", family="tsedit")
class SyntheticTSEdit(TSEditDataModule):
    folder = "synthetic-tsedit"
    channel_names = ["signal", "lagged"]

    def __init__(self, data_dir: str | None = None, num_train: int = 4096, num_val: int = 256, num_test: int = 512,
                 noise: float = 0.1, lag: int = 5, seed: int = 0, window: int = 64, num_val_tasks: int = 64,
                 num_test_tasks: int = 256, task_seed: int = 2024, max_anchors: int = 3, max_segments: int = 2,
                 edit_radius: int = 4, anchor_shift: tuple = (0.5, 1.5), segment_shift: tuple = (0.3, 1.0),
                 segment_length: tuple = (8, 16), batch_size: int = 64, eval_batch_size: int = 128,
                 num_workers: int = 0):
        super().__init__(data_dir, window=window, train_stride=1, eval_stride=1, num_val_tasks=num_val_tasks,
                         num_test_tasks=num_test_tasks, task_seed=task_seed, max_anchors=max_anchors,
                         max_segments=max_segments, edit_radius=edit_radius, anchor_shift=anchor_shift,
                         segment_shift=segment_shift, segment_length=segment_length, num_classes=3,
                         batch_size=batch_size, eval_batch_size=eval_batch_size, num_workers=num_workers)
        self.generator_args = dict(num_train=num_train, num_val=num_val, num_test=num_test, noise=noise, lag=lag,
                                   seed=seed)

    def prepare_data(self) -> None:
        pass  # generated in memory

    def load_windows(self):
        a = self.generator_args
        rng = np.random.default_rng(a["seed"])
        raw = {name: generate(a[f"num_{name}"], self.window, rng, a["noise"], a["lag"]) for name in ("train", "val", "test")}
        train = raw["train"][0]
        self.mean, self.std = train.mean(axis=(0, 2)), train.std(axis=(0, 2))
        norm = lambda w: ((w - self.mean[None, :, None]) / self.std[None, :, None]).astype(np.float32)
        return {name: (norm(w), k) for name, (w, k) in raw.items()}
