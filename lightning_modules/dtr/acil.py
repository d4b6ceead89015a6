"""ACIL (Wang, Zhang, He, Zha et al., WWW 2020, "Adversarial Cooperative Imitation Learning for Dynamic Treatment
Regimes"), a SAFER Table 1 baseline: imitate the treatments of patients who survived and move away from those of
patients who died, with two discriminators.

The paper's pieces, in its order:
  - a policy pi_theta(a | h_t) over the patient's history (an LSTM state, as SRL-RNN's);
  - a positive discriminator D+ tells the survivors' (h, a) pairs from the policy's, a negative discriminator D- the
    deceased patients' pairs from the policy's (each a logistic classifier over [h, one-hot a]);
  - the policy is rewarded for looking like the survivors to D+ and unlike the deceased to D-:
    r(h, a) = log D+(h, a) - `negative_weight` * log D-(h, a), and maximises E_{a ~ pi}[r] plus an entropy bonus
    (`entropy_weight`), alternating with the discriminators' updates (`disc_steps` per policy step).
Offline, as the paper's MIMIC setting: the policy acts on the observed histories only (no transitions are
simulated), and with 25 discrete actions E_{a ~ pi}[r] is the exact sum over actions instead of the paper's
sampled policy gradient; the discriminators' policy side is weighted by pi likewise. `bc_weight` adds the
clinicians' cross-entropy on survivors (0 = the paper's objective; the paper warms the policy up by imitation,
which `bc_weight` > 0 stands in for). The LSTM is trained by the policy's loss; the discriminators read its state
detached. Manual optimisation (two Adam optimisers), so Lightning's strategies and precision apply to both.
"""
from __future__ import annotations

import optuna
import torch
import torch.nn.functional as F
from torch import nn

from contracts.batch import dtr as B
from contracts.registry import register_model
from lightning_modules.dtr.base import DTRModule
from lightning_modules.dtr.srl_rnn import HistoryEncoder


class Discriminator(nn.Module):
    """Logit of "this (h, a) pair comes from the trajectories, not from the policy", for every action at once."""

    def __init__(self, state_dim: int, num_actions: int, hidden_dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(state_dim + num_actions, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, 1))
        self.num_actions = num_actions

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # [B, d] -> logits [B, A]
        n, a = h.shape[0], self.num_actions
        pairs = torch.cat([h.unsqueeze(1).expand(n, a, -1), torch.eye(a, device=h.device).expand(n, a, a)], -1)
        return self.net(pairs).squeeze(-1)


@register_model("acil", family="dtr")
class ACIL(DTRModule):
    def __init__(self, vitals_dim: int, meds_dim: int, notes_dim: int, demo_dim: int, history_len: int = 8,
                 num_actions: int = B.NUM_ACTIONS, mdp: str | None = None, hidden_dim: int = 128,
                 negative_weight: float = 1.0, entropy_weight: float = 0.01, bc_weight: float = 0.0,
                 disc_steps: int = 1, disc_lr: float = 1e-3, use_notes: bool = True, lr: float = 1e-3,
                 weight_decay: float = 0.0, topk: int = 3):
        super().__init__(vitals_dim, meds_dim, notes_dim, demo_dim, history_len, num_actions, mdp, use_notes,
                         "all", lr, weight_decay, topk)
        self.save_hyperparameters()
        if disc_steps < 1:
            raise ValueError(f"disc_steps must be >= 1, got {disc_steps}")
        self.automatic_optimization = False
        self.encoder = HistoryEncoder(self.step_dim, demo_dim, hidden_dim)
        d = self.encoder.out_dim
        self.policy = nn.Sequential(nn.Linear(d, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, num_actions))
        self.positive = Discriminator(d, num_actions, hidden_dim)
        self.negative = Discriminator(d, num_actions, hidden_dim)

    @staticmethod
    def search_space(trial: optuna.Trial) -> dict:
        return {"negative_weight": trial.suggest_float("negative_weight", 0.1, 2.0),
                "entropy_weight": trial.suggest_float("entropy_weight", 1e-3, 0.1, log=True),
                "lr": trial.suggest_float("lr", 1e-4, 1e-2, log=True),
                "hidden_dim": trial.suggest_categorical("hidden_dim", [64, 128, 256])}

    def forward(self, batch: dict) -> dict:
        h = self.encoder(self.step_inputs(batch), batch[B.DEMO])
        return {"h": h, "logits": self.policy(h)}

    def configure_optimizers(self):
        discriminators = list(self.positive.parameters()) + list(self.negative.parameters())
        return (torch.optim.Adam(discriminators, lr=self.hparams.disc_lr, weight_decay=self.weight_decay),
                torch.optim.Adam(list(self.encoder.parameters()) + list(self.policy.parameters()), lr=self.lr,
                                 weight_decay=self.weight_decay))

    @staticmethod
    def discriminator_loss(logits: torch.Tensor, actions: torch.Tensor, pi: torch.Tensor) -> torch.Tensor:
        """BCE with the trajectories' pairs as 1 and the policy's as 0, the policy side weighted by pi (exact
        expectation over the actions)."""
        if logits.shape[0] == 0:
            return logits.sum()
        real = F.binary_cross_entropy_with_logits(logits.gather(1, actions.unsqueeze(1)).squeeze(1),
                                                  torch.ones_like(actions, dtype=logits.dtype))
        fake = (pi * F.softplus(logits)).sum(1).mean()  # -log(1 - sigmoid(l)) = softplus(l)
        return real + fake

    def training_step(self, batch: dict, batch_idx: int):
        disc_opt, policy_opt = self.optimizers()
        died = batch[B.DIED].bool()
        actions = batch[B.ACTION]
        h = self.encoder(self.step_inputs(batch), batch[B.DEMO])
        logits = self.policy(h)
        hd, pi = h.detach(), F.softmax(logits, -1).detach()
        for _ in range(self.hparams.disc_steps):
            d_loss = self.discriminator_loss(self.positive(hd[~died]), actions[~died], pi[~died]) + \
                self.discriminator_loss(self.negative(hd[died]), actions[died], pi[died])
            disc_opt.zero_grad()
            self.manual_backward(d_loss)
            disc_opt.step()
        with torch.no_grad():  # r = log D+ - w log D-, per action
            reward = F.logsigmoid(self.positive(hd)) - self.hparams.negative_weight * F.logsigmoid(self.negative(hd))
        log_pi = F.log_softmax(logits, -1)
        pi = log_pi.exp()
        objective = (pi * reward).sum(1).mean() - self.hparams.entropy_weight * (pi * log_pi).sum(1).mean()
        loss = -objective
        if self.hparams.bc_weight > 0 and (~died).any():
            loss = loss + self.hparams.bc_weight * F.cross_entropy(logits[~died], actions[~died])
        policy_opt.zero_grad()
        self.manual_backward(loss)
        policy_opt.step()
        self.log_dict({"train/loss": loss.detach(), "train/disc": d_loss.detach(),
                       "train/reward": (pi.detach() * reward).sum(1).mean()}, batch_size=actions.shape[0])
