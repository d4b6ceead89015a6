"""The tsedit family base: one conditional diffusion backbone, trained once, and the editing loop every method shares.

Training (the board's training, identical for every editing method): DDPM (Ho et al. 2020, Eq. 14, the
epsilon-prediction loss) on multivariate windows conditioned on an attribute, with classifier-free attribute
dropout, an EMA of the weights, and, in the same optimiser step, the noisy-statistic regressor used by the
classifier form of segment control (its own loss on its own parameters).

Editing (validation/test): SDEdit-style (Meng et al. 2022) — noise the source to step t0 = edit_strength * (T-1),
then DDIM (Song et al. 2021, Eq. 12) down to 0 with `round(edit_strength * sampling_steps)` steps. A method
changes only `step` (one denoising step with its control) and/or `finalize` (post-processing), so the methods
differ in their control and nothing else.

How methods become board rows: each editing method is a registered model (a subclass). With
`share_backbone=True` (default) the first method run on a board for a seed trains the backbone and stores its
weights in the datamodule's cache folder (`<cache>/<dataset>/tsedit-backbones/<key>.pt`); every later method with the same key (backbone
hyper-parameters, data hash, seed, training budget) loads them in `on_fit_start` and skips training. So each
row of the rendered board is one method, all rows of a seed edit with the same frozen backbone, and the
backbone's training time is logged on every row as `backbone_train_s`. The backbone's architecture is an argument
(`backbone`: conv | transformer | csdi, see `layers`), so a board compares every method on every backbone with rows
`method@backbone`. The training loss curve (mean epsilon loss per `loss_every` steps) is stored with the weights and
logged as `backbone_loss` (the last tenth of the steps) and `backbone_loss_drop` (relative fall of the loss from the
second-to-last to the last tenth: near 0 when the curve has flattened).

Evaluation computes the set-level editing metrics of `metrics.edit_report` over every task of the split (realism
against held-out real windows of the same attribute through a small encoder trained on the training windows; see
`metrics`), and the diversity of two samples on the first `diversity_tasks` tasks.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from copy import deepcopy
from pathlib import Path

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import CatMetric, MeanMetric

from contracts.batch import tsedit as B
from lightning_modules.safe_load import load_cached
from lightning_modules.tsedit.layers import NoisyStatisticRegressor, build_denoiser, cosine_alpha_bar
from lightning_modules.tsedit.metrics import REPORT_KEYS, edit_metrics, edit_report, realism_encoder, spectral_distance

EDIT_METRICS = ("anchor_error", "segment_error", "anchor_met", "segment_met", "constraint_met", "preservation_mse",
                "anchor_roughness", "anchor_roughness_src", "sec_per_edit", "diversity")


class TSEditModule(pl.LightningModule):
    """Shared backbone training and the editing loop. Subclasses implement their control in `step`/`finalize`
    and call `save_hyperparameters()`."""

    def __init__(
        self,
        channels: int,
        window: int,
        num_classes: int,
        channel_mean: list | None = None,
        channel_std: list | None = None,
        channel_names: list | None = None,
        data_hash: str = "",
        backbone: str = "conv",
        hidden_dim: int = 64,
        num_blocks: int = 4,
        num_heads: int = 4,
        diffusion_steps: int = 200,
        p_uncond: float = 0.1,
        regressor_dim: int = 32,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        ema_decay: float = 0.995,
        use_ema: bool = True,
        edit_strength: float = 0.5,
        sampling_steps: int = 50,
        eta: float = 0.0,
        anchor_tol: float = 0.1,
        segment_tol: float = 0.1,
        diversity_tasks: int = 32,
        encoder_steps: int = 300,
        loss_every: int = 25,
        noise_seed: int = 0,
        share_backbone: bool = True,
    ):
        super().__init__()
        if not 0 < edit_strength <= 1:
            raise ValueError(f"edit_strength must be in (0, 1], got {edit_strength}")
        if sampling_steps < 1 or diffusion_steps < 2:
            raise ValueError("sampling_steps must be >= 1 and diffusion_steps >= 2")
        self.channels, self.window, self.num_classes = channels, window, num_classes
        self.diffusion_steps = diffusion_steps
        self.p_uncond = p_uncond
        self.lr, self.weight_decay, self.ema_decay, self.use_ema = lr, weight_decay, ema_decay, use_ema
        self.edit_strength, self.sampling_steps, self.eta = edit_strength, sampling_steps, eta
        self.anchor_tol, self.segment_tol = anchor_tol, segment_tol
        self.diversity_tasks, self.encoder_steps, self.loss_every = diversity_tasks, encoder_steps, loss_every
        self.noise_seed, self.share_backbone = noise_seed, share_backbone
        self.channel_mean, self.channel_std, self.channel_names = channel_mean, channel_std, channel_names
        self.data_hash = data_hash
        self.backbone_config = dict(channels=channels, window=window, num_classes=num_classes, data_hash=data_hash,
                                    backbone=backbone, hidden_dim=hidden_dim, num_blocks=num_blocks, num_heads=num_heads,
                                    diffusion_steps=diffusion_steps, p_uncond=p_uncond, regressor_dim=regressor_dim,
                                    lr=lr, weight_decay=weight_decay, ema_decay=ema_decay)
        self.net = build_denoiser(backbone, channels, window, num_classes, hidden_dim, num_blocks, num_heads)
        self.ema_net = deepcopy(self.net).requires_grad_(False)
        self.regressor = NoisyStatisticRegressor(channels, regressor_dim)
        self.register_buffer("alpha_bar", cosine_alpha_bar(diffusion_steps), persistent=False)
        self.backbone_train_s = 0.0
        self.backbone_cpu_s = 0.0
        self.loss_curve: list[float] = []
        self._loss_sum, self._loss_count = 0.0, 0
        self._loaded_backbone = False
        self._step_seconds = 0.0
        for stage in ("val", "test"):
            # nan_strategy="disable": a non-finite edit's NaN error reaches the mean instead of being dropped from it
            setattr(self, f"{stage}_metrics", nn.ModuleDict({k: MeanMetric(nan_strategy="disable") for k in EDIT_METRICS}))
            # the edits and their tasks, for the set-level report ("warn" would drop NaNs and flatten)
            setattr(self, f"{stage}_edits", CatMetric(nan_strategy="disable"))
            setattr(self, f"{stage}_tasks", nn.ModuleDict({k: CatMetric(nan_strategy="disable") for k in REPORT_KEYS}))

    # ----- diffusion ------------------------------------------------------------------------------------------
    def ab(self, t: int) -> torch.Tensor:
        """alpha_bar at integer step t; t = -1 is the clean end (alpha_bar = 1)."""
        return self.alpha_bar[t] if t >= 0 else torch.ones((), device=self.alpha_bar.device)

    def eps(self, x_t: torch.Tensor, t: int, attr: torch.Tensor) -> torch.Tensor:
        net = self.ema_net if self.use_ema else self.net
        return net(x_t, torch.full((len(x_t),), t, device=x_t.device, dtype=torch.long), attr)

    def predict_x0(self, x_t: torch.Tensor, eps: torch.Tensor, t: int) -> torch.Tensor:
        """x0_hat = (x_t - sqrt(1 - ab_t) eps) / sqrt(ab_t)  (DDPM Eq. 15 rearranged)."""
        ab = self.ab(t)
        return (x_t - (1 - ab).sqrt() * eps) / ab.sqrt()

    def ddim_step(self, x_t: torch.Tensor, x0: torch.Tensor, t: int, t_prev: int, generator: torch.Generator,
                  eta: float | None = None) -> torch.Tensor:
        """x_{t_prev} from x_t and a (possibly controlled) x0_hat (DDIM Eq. 12). The noise direction is recomputed
        from x0_hat, so a control that changed x0_hat yields the DDPM/DDIM posterior for that x0_hat."""
        eta = self.eta if eta is None else eta
        ab_t, ab_p = self.ab(t), self.ab(t_prev)
        eps = (x_t - ab_t.sqrt() * x0) / (1 - ab_t).sqrt()
        sigma = eta * ((1 - ab_p) / (1 - ab_t)).sqrt() * (1 - ab_t / ab_p).sqrt()
        out = ab_p.sqrt() * x0 + (1 - ab_p - sigma ** 2).clamp(min=0).sqrt() * eps
        if eta > 0 and t_prev >= 0:
            out = out + sigma * self.noise_like(x_t, generator)
        return out

    @staticmethod
    def noise_like(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return torch.randn(x.shape, generator=generator, dtype=x.dtype, device="cpu").to(x.device)

    def start_step(self) -> int:
        """t0 = round(edit_strength * (T-1)), the step the source is noised to (schedules are relative to it)."""
        return round(self.edit_strength * (self.diffusion_steps - 1))

    def timesteps(self) -> list[int]:
        """Descending DDIM steps from t0 = round(edit_strength * (T-1)) to 0, then -1 (the clean end)."""
        t0 = self.start_step()
        count = max(1, round(self.edit_strength * self.sampling_steps))
        steps = torch.linspace(t0, 0, count + 1 if count > 1 else 2).round().long().unique_consecutive().tolist()
        return steps + [-1]

    def generator_for(self, batch: dict) -> torch.Generator:
        """One noise stream per batch, seeded from `noise_seed` and the batch's first task: every method sees
        the same starting noise for the same tasks."""
        first = int(batch[B.SAMPLE_IDX][0]) if B.SAMPLE_IDX in batch else 0
        return torch.Generator().manual_seed(self.noise_seed * 1_000_003 + first)

    # ----- editing ------------------------------------------------------------------------------------------
    def edit(self, batch: dict, generator: torch.Generator | None = None) -> torch.Tensor:
        """Edit every row of an edit batch (see `contracts.batch.tsedit`); returns the edited series [B,C,L].

        Runs outside Lightning's inference mode (the batch is cloned out of it), because guided methods take
        gradients through the denoiser; everything else runs under no_grad."""
        generator = generator or self.generator_for(batch)
        with torch.inference_mode(False), torch.no_grad():
            batch = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
            x_src = batch[B.X]
            steps = self.timesteps()
            ab0 = self.ab(steps[0]).clone()
            x = ab0.sqrt() * x_src + (1 - ab0).sqrt() * self.noise_like(x_src, generator)
            for t, t_prev in zip(steps[:-1], steps[1:]):
                x = self.step(x, t, t_prev, batch, generator)
            return self.finalize(x, batch)

    def step(self, x: torch.Tensor, t: int, t_prev: int, batch: dict, generator: torch.Generator) -> torch.Tensor:
        """One uncontrolled denoising step (the `no_control` method); methods override this."""
        x0 = self.predict_x0(x, self.eps(x, t, batch[B.ATTR]), t)
        return self.ddim_step(x, x0, t, t_prev, generator)

    def finalize(self, x: torch.Tensor, batch: dict) -> torch.Tensor:
        return x

    # ----- training -----------------------------------------------------------------------------------------
    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        x, attr = batch[B.X], batch[B.ATTR]
        n = len(x)
        attr = torch.where(torch.rand(n, device=x.device) < self.p_uncond, torch.full_like(attr, self.num_classes), attr)
        t = torch.randint(0, self.diffusion_steps, (n,), device=x.device)
        noise = torch.randn_like(x)
        ab = self.alpha_bar[t][:, None, None]
        x_t = ab.sqrt() * x + (1 - ab).sqrt() * noise
        loss_eps = F.mse_loss(self.net(x_t, t, attr), noise)
        self._loss_sum, self._loss_count = self._loss_sum + float(loss_eps.detach()), self._loss_count + 1
        seg_weight = random_segment_weights(n, self.channels, self.window, x.device)
        target = torch.einsum("bkcl,bcl->bk", seg_weight, x)
        loss_reg = F.mse_loss(self.regressor(x_t, t, seg_weight), target)
        self.log("train/loss_eps", loss_eps, prog_bar=True, batch_size=n)
        self.log("train/loss_regressor", loss_reg, batch_size=n)
        return loss_eps + loss_reg

    def on_train_batch_start(self, batch, batch_idx):
        self._batch_start = time.perf_counter()

    @torch.no_grad()
    def on_train_batch_end(self, outputs, batch, batch_idx):
        ema, online = list(self.ema_net.parameters()), list(self.net.parameters())
        torch._foreach_lerp_(ema, online, 1 - self.ema_decay)
        self._step_seconds += time.perf_counter() - self._batch_start
        if self._loss_count >= self.loss_every:
            self.loss_curve.append(self._loss_sum / self._loss_count)
            self._loss_sum, self._loss_count = 0.0, 0

    def configure_optimizers(self):
        params = list(self.net.parameters()) + list(self.regressor.parameters())
        return torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)

    # ----- one trained backbone per (board data, seed, budget), shared by every method -----------------------
    def backbone_key(self) -> str:
        trainer = self.trainer
        budget = {"max_epochs": trainer.max_epochs, "max_steps": trainer.max_steps,
                  "limit_train_batches": trainer.limit_train_batches,
                  "accumulate_grad_batches": trainer.accumulate_grad_batches,
                  "gradient_clip_val": trainer.gradient_clip_val}
        key = {"backbone": self.backbone_config, "budget": budget,
               "seed": torch.initial_seed(), "world_size": trainer.world_size}
        return hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def backbone_path(self) -> Path:
        """Beside the datamodule's other caches: the data side owns where caches live, the model only its key."""
        return Path(self.trainer.datamodule.cache_dir) / "tsedit-backbones" / f"{self.backbone_key()}.pt"

    def on_fit_start(self):
        self._step_seconds = 0.0
        self._cpu_start = _cpu_seconds()
        if not self.share_backbone:
            return
        path = self.backbone_path()
        saved = load_cached(path, map_location=self.device, required=("state_dict", "train_seconds"))
        if saved is not None:
            self.load_state_dict(saved["state_dict"])
            self.backbone_train_s = float(saved["train_seconds"])
            self.backbone_cpu_s = float(saved.get("train_cpu_seconds", 0.0))
            self.loss_curve = list(saved.get("loss_curve", []))
            self._loaded_backbone = True
            self.trainer.should_stop = True  # nothing to train: validate/test this method on the shared backbone
            print(f"tsedit: loaded the shared backbone {path.name} (trained in {self.backbone_train_s:.1f}s)")

    def on_train_end(self):
        if self._loaded_backbone:
            return
        self.backbone_train_s = self._step_seconds
        self.backbone_cpu_s = _cpu_seconds() - self._cpu_start
        if self.share_backbone and self.trainer.is_global_zero:
            path = self.backbone_path()
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            os.close(fd)
            torch.save({"state_dict": self.state_dict(), "train_seconds": self.backbone_train_s,
                        "train_cpu_seconds": self.backbone_cpu_s, "loss_curve": self.loss_curve,
                        "loss_every": self.loss_every, "seed": torch.initial_seed(), "hparams": dict(self.hparams)}, tmp)
            os.replace(tmp, path)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["backbone_train_s"] = self.backbone_train_s or self._step_seconds
        checkpoint["backbone_cpu_s"] = self.backbone_cpu_s
        checkpoint["loss_curve"] = self.loss_curve

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.backbone_train_s = float(checkpoint.get("backbone_train_s", 0.0))
        self.backbone_cpu_s = float(checkpoint.get("backbone_cpu_s", 0.0))
        self.loss_curve = list(checkpoint.get("loss_curve", []))

    # ----- evaluation: every method on the same frozen edit tasks --------------------------------------------
    def _evaluate(self, batch: dict, stage: str) -> None:
        start = time.perf_counter()
        edited = self.edit(batch)
        elapsed = time.perf_counter() - start
        n = len(edited)
        metrics = getattr(self, f"{stage}_metrics")
        for name, (values, weights) in edit_metrics(edited, batch, self.anchor_tol, self.segment_tol).items():
            if values.numel():
                metrics[name].update(values, weights if weights is not None else 1.0)
        metrics["sec_per_edit"].update(torch.tensor(elapsed / n, device=edited.device), n)
        diverse = batch[B.SAMPLE_IDX] < self.diversity_tasks
        if diverse.any():  # a second sample with its own noise stream: how much the method's edits vary
            part = {k: v[diverse] for k, v in batch.items()}
            other = self.edit(part, torch.Generator().manual_seed(self.noise_seed * 1_000_003 + 7_777_777 + int(part[B.SAMPLE_IDX][0])))
            mask = part[B.EDIT_MASK] > 0
            spread = (((edited[diverse] - other) ** 2) * mask).sum(dim=(1, 2)) / mask.sum(dim=(1, 2)).clamp(min=1)
            metrics["diversity"].update((spread / 2).sqrt(), 1.0)  # per-point std of two samples in the edited region
        getattr(self, f"{stage}_edits").update(edited)
        for key, metric in getattr(self, f"{stage}_tasks").items():
            metric.update(batch[key].float())

    def _log_epoch(self, stage: str) -> None:
        for name, metric in getattr(self, f"{stage}_metrics").items():
            if metric.update_count:
                self.log(f"{stage}/{name}", metric.compute())
            metric.reset()
        edits, tasks = getattr(self, f"{stage}_edits"), getattr(self, f"{stage}_tasks")
        if edits.update_count:
            edited = edits.compute()
            batch = {k: m.compute() for k, m in tasks.items()}
            batch[B.ATTR] = batch[B.ATTR].long()
            reference, reference_attr, encoder = self.realism_reference(stage)
            report = edit_report(edited, batch, reference, reference_attr, encoder)
            for name, value in report.items():
                self.log(f"{stage}/{name}", value)
            self.log(f"{stage}/spectral_dist", spectral_distance(batch[B.X], edited))
        edits.reset()
        for metric in tasks.values():
            metric.reset()
        self.log(f"{stage}/backbone_train_s", float(self.backbone_train_s or self._step_seconds))
        self.log(f"{stage}/backbone_cpu_s", float(self.backbone_cpu_s))
        self.log(f"{stage}/backbone_steps", float(len(self.loss_curve) * self.loss_every))
        if len(self.loss_curve) >= 10:
            tenth = max(1, len(self.loss_curve) // 10)
            last, before = sum(self.loss_curve[-tenth:]) / tenth, sum(self.loss_curve[-2 * tenth:-tenth]) / tenth
            self.log(f"{stage}/backbone_loss", last)
            self.log(f"{stage}/backbone_loss_drop", (before - last) / last)

    def realism_reference(self, stage: str):
        """Held-out real windows with their attributes for the realism score, and the encoder, from the datamodule
        (its `realism_reference(stage)` and `realism_encoder_windows()`); (None, None, None) when it has none, e.g.
        a datamodule without that method: the report then leaves realism out."""
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if datamodule is None or not hasattr(datamodule, "realism_reference"):
            return None, None, None
        reference, reference_attr = datamodule.realism_reference(stage)
        train = datamodule.realism_encoder_windows()
        cache = Path(datamodule.cache_dir) / "tsedit-encoders" / f"{self.data_hash}-{torch.initial_seed()}-{self.encoder_steps}.pt"
        encoder = realism_encoder(train, seed=torch.initial_seed(), steps=self.encoder_steps, cache=cache)
        return reference, reference_attr, encoder

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    @staticmethod
    def search_space(trial) -> dict:
        return {"edit_strength": trial.suggest_float("edit_strength", 0.3, 0.8)}


def random_segment_weights(n: int, channels: int, window: int, device, min_len: int = 4) -> torch.Tensor:
    """One random segment statistic per row for training the regressor: a random channel, a window of random
    start and length in [min_len, window/2], and a mean (half the rows) or a sum: [n, 1, C, L]."""
    channel = torch.randint(0, channels, (n,), device=device)
    length = torch.randint(min_len, max(min_len + 1, window // 2 + 1), (n,), device=device)
    start = (torch.rand(n, device=device) * (window - length + 1)).floor().long()
    pos = torch.arange(window, device=device)[None, :]
    inside = (pos >= start[:, None]) & (pos < (start + length)[:, None])
    is_mean = torch.rand(n, device=device) < 0.5
    per_point = torch.where(is_mean, 1.0 / length.float(), torch.ones_like(length, dtype=torch.float))
    row = inside.float() * per_point[:, None]
    onehot = F.one_hot(channel, channels).float()
    return (onehot[:, :, None] * row[:, None, :]).unsqueeze(1)


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def schedule_weight(schedule: str, t: int, t_start: int, alpha_bar: torch.Tensor | None = None,
                    start: float = 0.5) -> float:
    """A weight lambda_t in [0, 1] for a control at step t of an edit that starts at step t_start (the noised
    source; T-1 when sampling from pure noise). Relative to t_start, so that in SDEdit mode "late" and "linear"
    still mean the later part of the steps actually taken:
    constant 1; linear 1 - t/t_start (stronger as noise falls); late 1 for t <= start * t_start, else 0;
    snr min(1, ab/(1-ab)) (the signal-to-noise ratio, capped)."""
    if schedule == "constant":
        return 1.0
    if schedule == "linear":
        return 1.0 - t / max(1, t_start)
    if schedule == "late":
        return 1.0 if t <= start * t_start else 0.0
    if schedule == "snr":
        ab = float(alpha_bar[t])
        return min(1.0, ab / max(1e-12, 1 - ab))
    raise ValueError(f"unknown schedule {schedule!r}; choose constant, linear, late or snr")


SCHEDULES = ("constant", "linear", "late", "snr")
