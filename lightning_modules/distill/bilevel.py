"""The bi-level loop of dataset distillation for sequential recommendation, shared by TD3 and Farzi: a subclass
brings its summary (`make_summary`: a module with `logits(users, item_factor)` and `floats()`), the loop is this.

One outer step per real minibatch (`training_step`, manual optimisation inside Lightning):
  1. the inner learner (a SASRec, run functionally through `torch.func.functional_call`) is set, at the start of
     every outer epoch, to the full-data pretraining checkpoint of a random epoch in `trajectory_epochs`; within
     the epoch it persists (`persistent_learner=True`, TD3's code): each outer step starts where the previous
     one's plain steps left it, because the code's plain steps update the learner in place and only the
     W-step window runs on a copy (`higher.innerloop_ctx(copy_initial_weights=True)`); the inner Adam state
     is fresh every outer step, as the code builds a new optimiser per outer step;
  2. RaT-BPTT (Feng et al., ICLR'24): draw c ~ U{0..K-W}; take c inner Adam steps on the summary with nothing
     recorded, then W differentiable Adam steps (`rat_bptt_unroll`), fixed cyclic summary minibatches;
     the inner loss is `summary_loss`: KL to the soft next item at the last position and at one random prefix
     end (the code's SASRec prefix augmentation);
  3. outer loss on the real minibatch: cross-entropy over all items for every next item, plus the MSE between
     the unrolled learner's last-layer hidden states and those of the SASRec pretrained on real data
     (feature alignment, `feature_weight`);
  4. summary step: gradient-norm clip 1.0, Adam (seq_lr, weight decay 1e-4), cosine schedule, no warm-up.
The inner optimiser is Adam written out (`adam_step`), so that the outer gradient flows through the window's
updates: the role of `higher`'s DifferentiableAdam in TD3's code (torch.optim cannot be differentiated through).
"""
from __future__ import annotations

import random
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call
from torch.nn.attention import SDPBackend, sdpa_kernel

from contracts.batch import distill as B
from contracts.registry import MODELS
from lightning_modules.base_arguments import base_arguments
from lightning_modules.distill.base import DistillModule, item_logits, summary_loss

LEARNER_DEFAULTS = {"embed_dim": 32, "num_blocks": 1, "num_heads": 1, "dropout": 0.2, "loss": "ce"}


def adam_step(params: dict, grads: tuple, state: dict, lr: float, weight_decay: float,
              betas=(0.9, 0.999), eps: float = 1e-8) -> tuple[dict, dict]:
    """One Adam update (L2 weight decay, as torch.optim.Adam) as plain tensor maths, so it can be differentiated
    through when `grads` carry a graph (the role of `higher`'s DifferentiableAdam in the official code)."""
    b1, b2 = betas
    t = state["t"] + 1
    new_params, m, v = {}, {}, {}
    for (name, p), g in zip(params.items(), grads):
        if g is None:
            g = torch.zeros_like(p)
        if weight_decay:
            g = g + weight_decay * p
        m[name] = b1 * state["m"][name] + (1 - b1) * g
        v[name] = b2 * state["v"][name] + (1 - b2) * g * g
        m_hat, v_hat = m[name] / (1 - b1 ** t), v[name] / (1 - b2 ** t)
        new_params[name] = p - lr * m_hat / (torch.sqrt(v_hat + 1e-24) + eps)
    return new_params, {"t": t, "m": m, "v": v}


def adam_state(params: dict) -> dict:
    return {"t": 0, "m": {k: torch.zeros_like(p) for k, p in params.items()},
            "v": {k: torch.zeros_like(p) for k, p in params.items()}}


class BilevelDistillation(DistillModule):
    """The bi-level loop shared by TD3 and Farzi; a subclass brings its summary (`make_summary`)."""

    iterative = True

    def __init__(
        self,
        num_items: int,
        max_len: int,
        synthetic_users: int = 30,
        synthetic_len: int = 50,
        temperature: float = 1.0,
        inner_steps: int = 200,
        window: int = 40,
        inner_batch: int = 15,
        net_lr: float = 0.005,
        net_weight_decay: float = 5e-5,
        seq_lr: float = 0.03,
        seq_weight_decay: float = 1e-4,
        grad_clip: float = 1.0,
        feature_weight: float = 1.0,
        learner: str = "sasrec",
        learner_args: dict | None = None,
        learner_init: str = "trajectory",
        persistent_learner: bool = True,
        pretrain_epochs: int = 100,
        trajectory_epochs: tuple[int, int] = (5, 30),
        teacher_features_train_mode: bool = False,
        targets: tuple[str, ...] = ("sasrec", "gru4rec"),
        target_args: dict | None = None,
        target_steps: int = 200,
        prefix_augmentation_for: tuple[str, ...] = ("sasrec",),
        min_prefix: int = 5,
        reference_max_epochs: int = 200,
        reference_patience: int = 10,
        reference_batch_size: int = 128,
        eval_ks: tuple[int, ...] = (10, 20),
        inner_optimizer: str = "adam",
    ):
        super().__init__(**base_arguments(DistillModule, locals()))
        self.save_hyperparameters()  # the subclass's arguments too (Lightning collects every __init__ frame)
        if not 0 < window <= inner_steps:
            raise ValueError(f"window must be in 1..inner_steps ({inner_steps}), got {window}")
        if learner_init not in ("trajectory", "random"):
            raise ValueError(f"learner_init must be 'trajectory' or 'random', got {learner_init!r}")
        self.num_summary_users, self.summary_len = synthetic_users, synthetic_len
        self.temperature = temperature
        self.inner_steps, self.window = inner_steps, window
        self.seq_lr, self.seq_weight_decay, self.grad_clip = seq_lr, seq_weight_decay, grad_clip
        self.feature_weight = feature_weight
        self.learner_name = learner
        self.learner_args = {**LEARNER_DEFAULTS, **(learner_args or {})}
        self.learner_init, self.pretrain_epochs = learner_init, pretrain_epochs
        self.persistent_learner = persistent_learner
        self.trajectory_epochs = tuple(trajectory_epochs)
        self.teacher_features_train_mode = teacher_features_train_mode
        # The teacher: the learner architecture pretrained on the full real data. Its item table is the summary's
        # item factor and its hidden states the alignment targets. The inner learner is a second instance used
        # only as a functional shell (its own weights are never read), kept out of the state dict.
        self.teacher = MODELS.get(learner).cls(num_items=num_items, max_len=max_len, **self.learner_args)
        self._shell = [MODELS.get(learner).cls(num_items=num_items, max_len=max_len, **self.learner_args)]
        self.summary = self.make_summary()
        self.trajectory: dict[int, dict] = {}
        self.pretrain_seconds = 0.0

    @property
    def learner(self) -> nn.Module:
        return self._shell[0].to(self.device)

    # ----- the summary ---------------------------------------------------------------------------------------
    def item_factor(self) -> torch.Tensor:
        return self.teacher.item_embedding.weight[1:].detach()

    def summary_logits(self, users: torch.Tensor) -> torch.Tensor:
        return self.summary.logits(users, self.item_factor())

    def summary_distributions(self, users: torch.Tensor):
        dist = torch.softmax(self.summary_logits(users) / self.temperature, dim=-1)
        return dist, torch.ones(dist.shape[:2], dtype=torch.bool, device=dist.device)

    def make_summary(self) -> nn.Module:
        raise NotImplementedError

    def summary_floats(self) -> int:
        """Stored numbers: the optimised summary, plus the item factor where the summary needs it to rebuild P."""
        return self.summary.floats() + (self.item_factor().numel() if self.needs_item_factor() else 0)

    # ----- pretraining (the expert trajectory and the teacher) -------------------------------------------------
    def build_summary(self) -> None:
        if self.learner_init == "random" and self.feature_weight == 0 and not self.needs_item_factor():
            return
        t0 = time.perf_counter()
        lo, hi = self.trajectory_epochs
        snapshot_epochs = tuple(e for e in range(lo, hi + 1) if e <= self.pretrain_epochs)
        teacher = MODELS.get(self.learner_name).cls(num_items=self.num_items, max_len=self.max_len,
                                                    **self.learner_args).to(self.device)
        # Pretraining runs all `pretrain_epochs` (the code: 100 epochs) and keeps the best validation epoch.
        teacher, _, _, self.trajectory = self.fit_on_real(teacher, self.pretrain_epochs, snapshot_epochs,
                                                          patience=self.pretrain_epochs + 1)
        self.teacher.load_state_dict(teacher.state_dict())
        self.teacher.requires_grad_(False)
        if not self.trajectory:  # fewer pretraining epochs than the trajectory range: use the last state
            self.trajectory = {self.pretrain_epochs: teacher.state_dict()}
        self.pretrain_seconds = time.perf_counter() - t0

    def needs_item_factor(self) -> bool:
        """Whether the summary is built on the pretrained learner's item table (TD3) or has its own (Farzi)."""
        return True

    def on_train_epoch_start(self) -> None:
        """Each outer epoch the inner learner restarts from a random pretraining epoch (code: U{5..30}) or, with
        `learner_init="random"`, from a fresh random initialisation."""
        self._learner_state = self.draw_learner_init()

    def draw_learner_init(self) -> dict:
        if self.learner_init == "trajectory" and self.trajectory:
            state = self.trajectory[random.choice(sorted(self.trajectory))]
        else:
            state = MODELS.get(self.learner_name).cls(num_items=self.num_items, max_len=self.max_len,
                                                      **self.learner_args).state_dict()
        return {n: state[n].detach().clone().to(self.device) for n, _ in self.learner.named_parameters()}

    def initial_params(self) -> dict:
        """Where this outer step's inner run starts: the learner as the previous outer steps of the epoch left it
        (`persistent_learner`, the code), or a fresh draw (`persistent_learner=False`, Farzi)."""
        if not self.persistent_learner:
            self._learner_state = self.draw_learner_init()
        return {n: p.detach().clone().requires_grad_(True) for n, p in self._learner_state.items()}

    # ----- RaT-BPTT ------------------------------------------------------------------------------------------
    def rat_bptt_unroll(self, params: dict, skip: int, window: int, distributions=None) -> dict:
        """`skip` inner Adam steps with nothing recorded, then `window` steps through which the outer gradient
        flows (create_graph). Step s trains on synthetic users `cyclic_users(s)`. Returns the final parameters,
        differentiable w.r.t. the summary through the last `window` steps only. The parameters after the `skip`
        plain steps are kept in `self.after_skip` (the code's learner keeps them: its plain steps update the model
        in place, while the `window` steps run on a copy)."""
        distributions = distributions or self.summary_distributions
        shell = self.learner.train()
        buffers = dict(shell.named_buffers())
        state = adam_state(params)
        prefix = self.learner_name in self.prefix_augmentation_for
        self.after_skip = {k: v.detach() for k, v in params.items()}
        for step in range(skip + window):
            in_window = step >= skip
            users = self.cyclic_users(step)
            with torch.set_grad_enabled(in_window):
                dist, valid = distributions(users)
            # The math attention kernel: the fused CPU kernels have no second derivative.
            with torch.enable_grad(), sdpa_kernel(SDPBackend.MATH):
                loss = summary_loss(shell, {**params, **buffers}, dist, valid, prefix, self.min_prefix)
                grads = torch.autograd.grad(loss, list(params.values()), create_graph=in_window, allow_unused=True)
            params, state = self.inner_update(params, grads, state)
            if not in_window:  # cut the (empty) history: the next step starts from plain leaves
                params = {k: v.detach().requires_grad_(True) for k, v in params.items()}
                state = {"t": state["t"], "m": {k: v.detach() for k, v in state["m"].items()},
                         "v": {k: v.detach() for k, v in state["v"].items()}}
                if step + 1 == skip:
                    self.after_skip = {k: v.detach() for k, v in params.items()}
        return params

    def inner_update(self, params: dict, grads: tuple, state: dict) -> tuple[dict, dict]:
        if self.inner_optimizer == "adam":
            return adam_step(params, grads, state, self.net_lr, self.net_weight_decay)
        new = {k: p - self.net_lr * ((torch.zeros_like(p) if g is None else g) + self.net_weight_decay * p)
               for (k, p), g in zip(params.items(), grads)}
        return new, state

    def outer_loss(self, params: dict, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """CE of the unrolled learner on real next items + feature_weight * MSE to the pretrained teacher's
        last-layer hidden states, over every position that has a next item."""
        shell = self.learner.train()
        with sdpa_kernel(SDPBackend.MATH):
            hidden = functional_call(shell, {**params, **dict(shell.named_buffers())}, (batch[B.INPUT_IDS],))
        valid = batch[B.TARGET_IDS] != B.PAD
        h = hidden[valid]
        real_ce = F.cross_entropy(item_logits(shell, params, h), batch[B.TARGET_IDS][valid] - 1)
        if self.feature_weight == 0:
            return real_ce, real_ce.detach(), torch.zeros(())
        self.teacher.train(self.teacher_features_train_mode)
        with torch.no_grad():
            f_real = self.teacher(batch[B.INPUT_IDS])[valid]
        feature_mse = F.mse_loss(h, f_real)
        return real_ce + self.feature_weight * feature_mse, real_ce.detach(), feature_mse.detach()

    def training_step(self, batch: dict, batch_idx: int) -> None:
        optimizer, scheduler = self.optimizers(), self.lr_schedulers()
        skip = random.randint(0, self.inner_steps - self.window)
        params = self.rat_bptt_unroll(self.initial_params(), skip, self.window)
        if self.persistent_learner:  # the code: the plain steps stay on the learner for the next outer step
            self._learner_state = self.after_skip
        loss, real_ce, feature_mse = self.outer_loss(params, batch)
        optimizer.zero_grad()
        self.manual_backward(loss)
        self.clip_gradients(optimizer, gradient_clip_val=self.grad_clip, gradient_clip_algorithm="norm")
        optimizer.step()
        scheduler.step()
        n = batch[B.INPUT_IDS].shape[0]
        self.log_dict({"train/outer_loss": loss.detach(), "train/real_ce": real_ce, "train/feature_mse": feature_mse},
                      prog_bar=True, batch_size=n)

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.summary.parameters(), lr=self.seq_lr, weight_decay=self.seq_weight_decay)
        total = max(1, int(self.trainer.estimated_stepping_batches)) if self._trainer is not None else 1
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()
        self.log("test/pretrain_s", self.pretrain_seconds)
