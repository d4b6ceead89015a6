"""Value decomposition with parameter-shared feed-forward agents and an episode replay buffer (PyMARL style).

- VDN: Sunehag et al. 2018, "Value-Decomposition Networks For Cooperative Multi-Agent Learning", Q_tot = sum_i Q_i.
- QMIX: Rashid et al. 2018, "QMIX: Monotonic Value Function Factorisation", eq. (5): Q_tot from a mixing network
  whose non-negative weights are produced by hypernetworks of the state (embed 32, two-layer hypernets of 64).
Shared by both (and by ROMA and CORD, which subclass `QLearningModule`): double-Q targets from a target network
copied every `target_update_interval` episodes, epsilon-greedy exploration annealed linearly over
`epsilon_anneal_steps` env steps, RMSProp (lr 5e-4, alpha 0.99, eps 1e-5), gradient clip 10, replay of
`batch_size` whole episodes, `train_iters` updates per collected rollout (PyMARL's defaults).
The state s_t is the concatenation of all agents' canonical observations (used by the mixer only, i.e. only in
training; acting is decentralised, so teams of any size can act).
Difference from PyMARL: agents are feed-forward (like COID's `entity_attend_ff`), not GRUs.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from contracts.batch import marl as B
from contracts.registry import register_model
from contracts.run import CONTINUATION_ONLY
from lightning_modules.marl.base import MARLModule, mlp


class AgentNetwork(nn.Module):
    """Q_i(o_i, ·) = head(h(o_i) + z_i): the role z_i (if any) is added to the hidden vector before the Q head
    (COID's agent); without roles it is a plain two-layer MLP."""

    def __init__(self, obs_dim: int, hidden_dim: int, n_actions: int):
        super().__init__()
        self.body = mlp([obs_dim, hidden_dim, hidden_dim], layer_norm_input=True)
        self.head = nn.Linear(hidden_dim, n_actions)

    def forward(self, obs: torch.Tensor, role: torch.Tensor | None = None) -> torch.Tensor:
        h = F.relu(self.body(obs))
        if role is not None:
            h = h + role
        return self.head(h)


class QMixer(nn.Module):
    """QMIX mixing network (Rashid et al. 2018, Sec. 4.1), weights |hyper(s)| keep dQ_tot/dQ_i >= 0."""

    def __init__(self, num_agents: int, state_dim: int, embed_dim: int = 32, hypernet_dim: int = 64):
        super().__init__()
        self.num_agents, self.embed_dim = num_agents, embed_dim
        self.hyper_w1 = nn.Sequential(nn.Linear(state_dim, hypernet_dim), nn.ReLU(), nn.Linear(hypernet_dim, num_agents * embed_dim))
        self.hyper_w2 = nn.Sequential(nn.Linear(state_dim, hypernet_dim), nn.ReLU(), nn.Linear(hypernet_dim, embed_dim))
        self.hyper_b1 = nn.Linear(state_dim, embed_dim)
        self.hyper_b2 = nn.Sequential(nn.Linear(state_dim, embed_dim), nn.ReLU(), nn.Linear(embed_dim, 1))

    def forward(self, q: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """q [..., N], state [..., S] -> Q_tot [...]."""
        w1 = self.hyper_w1(state).abs().view(*q.shape[:-1], self.num_agents, self.embed_dim)
        hidden = F.elu(torch.einsum("...n,...ne->...e", q, w1) + self.hyper_b1(state))
        w2 = self.hyper_w2(state).abs()
        return (hidden * w2).sum(-1) + self.hyper_b2(state).squeeze(-1)


class VDNMixer(nn.Module):
    def forward(self, q: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        return q.sum(-1)


class EpisodeReplayBuffer:
    """Ring buffer of whole episodes, kept as preallocated tensors; a training run's last.ckpt carries its filled rows."""

    def __init__(self, capacity: int):
        self.capacity, self.size, self.pos, self.data = capacity, 0, 0, None

    def push(self, episodes: dict[str, torch.Tensor]) -> None:
        n = next(iter(episodes.values())).shape[0]
        if self.data is None:
            self.data = {k: torch.zeros((self.capacity, *v.shape[1:]), dtype=v.dtype) for k, v in episodes.items()}
        idx = (self.pos + torch.arange(n)) % self.capacity
        for k, v in episodes.items():
            self.data[k][idx] = v
        self.pos = (self.pos + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def sample(self, batch_size: int, device) -> dict[str, torch.Tensor]:
        idx = torch.randint(0, self.size, (batch_size,))
        return {k: v[idx].to(device) for k, v in self.data.items()}

    def state_dict(self) -> dict:
        # rows fill from 0 and wrap only once full, so the first `size` rows are the stored episodes; cloned, since a
        # saved view would carry the whole preallocated storage
        data = None if self.data is None else {k: v[: self.size].clone() for k, v in self.data.items()}
        return {"size": self.size, "pos": self.pos, "data": data}

    def load_state_dict(self, state: dict) -> None:
        self.size, self.pos, self.data = state["size"], state["pos"], None
        if state["data"] is not None:
            self.data = {k: torch.zeros((self.capacity, *v.shape[1:]), dtype=v.dtype) for k, v in state["data"].items()}
            for k, v in state["data"].items():
                self.data[k][: self.size] = v


class QLearningModule(MARLModule):
    """PyMARL-style value-decomposition learner. Subclasses add roles through `roles()` and extra losses."""

    mixer_name = "qmix"
    replay_keys = (B.OBS, B.ACTIONS, B.REWARD, B.TERMINATED)

    def __init__(self, obs_dim: int, n_actions: int, num_agents: int, episode_limit: int, hidden_dim: int = 64,
                 lr: float = 5e-4, gamma: float = 0.99, buffer_size: int = 5000, batch_size: int = 32,
                 train_iters: int = 1, target_update_interval: int = 200, epsilon_start: float = 1.0,
                 epsilon_finish: float = 0.05, epsilon_anneal_steps: int = 50_000, double_q: bool = True,
                 grad_clip: float = 10.0, mixing_embed_dim: int = 32, hypernet_dim: int = 64):
        super().__init__(obs_dim, n_actions, num_agents, episode_limit, gamma)
        self.agent = AgentNetwork(obs_dim, hidden_dim, n_actions)
        state_dim = obs_dim * num_agents
        self.mixer = QMixer(num_agents, state_dim, mixing_embed_dim, hypernet_dim) if self.mixer_name == "qmix" else VDNMixer()
        self.buffer = EpisodeReplayBuffer(buffer_size)
        self._target: nn.Module | None = None
        self._episodes_since_target = 0

    # ----- pieces a subclass may change --------------------------------------------------------------------------
    def online_modules(self) -> nn.ModuleDict:
        """What the target network copies (agent, mixer and, in subclasses, role networks)."""
        return nn.ModuleDict({"agent": self.agent, "mixer": self.mixer})

    def roles(self, batch: dict, nets: nn.ModuleDict, target: bool):
        """Roles for every step of a replay batch ([B, T+1, N, Dz] or None) and an auxiliary loss dict."""
        return None, {}

    def epsilon(self) -> float:
        hp = self.hparams
        frac = min(1.0, float(self.env_steps) / max(1, hp.epsilon_anneal_steps))
        return hp.epsilon_start + frac * (hp.epsilon_finish - hp.epsilon_start)

    def greedy_or_random(self, q: torch.Tensor, explore: bool) -> torch.Tensor:
        actions = q.argmax(-1)
        if explore:
            random = torch.randint(0, self.n_actions, actions.shape, device=q.device)
            actions = torch.where(torch.rand(actions.shape, device=q.device) < self.epsilon(), random, actions)
        return actions

    def act(self, obs, t, state, explore):
        return self.greedy_or_random(self.agent(obs), explore), {}, state

    # ----- learning --------------------------------------------------------------------------------------------------
    @property
    def target(self) -> nn.ModuleDict:
        if self._target is None:
            # kept out of nn.Module's registry: not a parameter, not in checkpoints (rebuilt from the online nets)
            object.__setattr__(self, "_target", copy.deepcopy(self.online_modules()).requires_grad_(False))
        return self._target

    def td_loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        obs, actions = batch[B.OBS], batch[B.ACTIONS]
        Bsz, T1, N, _ = obs.shape
        state = obs.flatten(-2)  # [B, T+1, N*D]
        online, target = self.online_modules(), self.target
        roles, aux = self.roles(batch, online, target=False)
        with torch.no_grad():
            target_roles, _ = self.roles(batch, target, target=True)
        q = online["agent"](obs, roles)  # [B, T+1, N, A]
        chosen = q[:, :-1].gather(-1, actions.unsqueeze(-1)).squeeze(-1)
        q_tot = online["mixer"](chosen, state[:, :-1])  # [B, T]
        with torch.no_grad():
            q_next_target = target["agent"](obs[:, 1:], None if target_roles is None else target_roles[:, 1:])
            if self.hparams.double_q:
                best = q[:, 1:].detach().argmax(-1, keepdim=True)
            else:
                best = q_next_target.argmax(-1, keepdim=True)
            next_tot = target["mixer"](q_next_target.gather(-1, best).squeeze(-1), state[:, 1:])
            y = self.training_reward(batch) + self.gamma * (1 - batch[B.TERMINATED]) * next_tot
        loss = F.mse_loss(q_tot, y)
        return loss, {"td_loss": loss.detach(), "q_tot": q_tot.mean().detach(), **aux}

    def training_reward(self, batch: dict) -> torch.Tensor:
        return batch[B.REWARD]

    def extra_loss(self, aux: dict) -> torch.Tensor:
        return aux.pop("_loss", torch.zeros((), device=self.device))

    def learn(self, rollout: dict) -> dict:
        hp = self.hparams
        self.buffer.push({k: rollout[k] for k in self.replay_keys})
        self._episodes_since_target += int(rollout[B.OBS].shape[0])
        logs = {"epsilon": torch.tensor(self.epsilon())}
        if self.buffer.size < hp.batch_size:
            return logs
        opt = self.optimizers()
        for _ in range(hp.train_iters):
            batch = self.buffer.sample(hp.batch_size, self.device)
            td, aux = self.td_loss(batch)
            loss = td + self.extra_loss(aux)
            self.step_optimizer(loss, opt, self.parameters(), hp.grad_clip)
        if self._episodes_since_target >= hp.target_update_interval:
            self.target.load_state_dict(self.online_modules().state_dict())
            self._episodes_since_target = 0
        logs.update({k: v for k, v in aux.items() if not k.startswith("_")})
        return logs

    def configure_optimizers(self):
        return torch.optim.RMSprop(self.parameters(), lr=self.hparams.lr, alpha=0.99, eps=1e-5)

    def on_save_checkpoint(self, checkpoint):
        # what a continued run needs to go on as an unstopped one would: the target network and, only while the run
        # trains (up to 5,000 episodes: too large for every kept checkpoint), the replay buffer
        super().on_save_checkpoint(checkpoint)
        checkpoint["q_learning"] = {"episodes_since_target": self._episodes_since_target,
                                    "target": None if self._target is None else self._target.state_dict()}
        checkpoint.setdefault(CONTINUATION_ONLY, {})["replay_buffer"] = self.buffer.state_dict()

    def on_load_checkpoint(self, checkpoint):
        super().on_load_checkpoint(checkpoint)
        self._target = None  # rebuilt from the loaded weights on first use, unless the checkpoint has its own
        state = checkpoint.get("q_learning")
        if state is not None:
            self._episodes_since_target = state["episodes_since_target"]
            if state["target"] is not None:
                self.target.load_state_dict(state["target"])
        replay = checkpoint.get(CONTINUATION_ONLY, {}).get("replay_buffer")
        if replay is not None:
            self.buffer.load_state_dict(replay)

    @staticmethod
    def search_space(trial) -> dict:
        return {"lr": trial.suggest_float("lr", 1e-4, 1e-3, log=True),
                "hidden_dim": trial.suggest_categorical("hidden_dim", [64, 128]),
                "epsilon_anneal_steps": trial.suggest_categorical("epsilon_anneal_steps", [10_000, 50_000, 100_000]),
                "target_update_interval": trial.suggest_categorical("target_update_interval", [100, 200])}


@register_model("vdn", family="marl")
class VDN(QLearningModule):
    """VDN (Sunehag et al. 2018): Q_tot = sum_i Q_i(o_i, a_i)."""

    mixer_name = "vdn"

    def __init__(self, obs_dim: int, n_actions: int, num_agents: int, episode_limit: int, hidden_dim: int = 64,
                 lr: float = 5e-4, gamma: float = 0.99, buffer_size: int = 5000, batch_size: int = 32,
                 train_iters: int = 1, target_update_interval: int = 200, epsilon_start: float = 1.0,
                 epsilon_finish: float = 0.05, epsilon_anneal_steps: int = 50_000, double_q: bool = True,
                 grad_clip: float = 10.0):
        super().__init__(obs_dim, n_actions, num_agents, episode_limit, hidden_dim, lr, gamma, buffer_size, batch_size,
                         train_iters, target_update_interval, epsilon_start, epsilon_finish, epsilon_anneal_steps,
                         double_q, grad_clip)
        self.save_hyperparameters()


@register_model("qmix", family="marl")
class QMIX(QLearningModule):
    """QMIX (Rashid et al. 2018): monotonic mixing of Q_i with state-conditioned hypernetworks."""

    mixer_name = "qmix"

    def __init__(self, obs_dim: int, n_actions: int, num_agents: int, episode_limit: int, hidden_dim: int = 64,
                 lr: float = 5e-4, gamma: float = 0.99, buffer_size: int = 5000, batch_size: int = 32,
                 train_iters: int = 1, target_update_interval: int = 200, epsilon_start: float = 1.0,
                 epsilon_finish: float = 0.05, epsilon_anneal_steps: int = 50_000, double_q: bool = True,
                 grad_clip: float = 10.0, mixing_embed_dim: int = 32, hypernet_dim: int = 64):
        super().__init__(obs_dim, n_actions, num_agents, episode_limit, hidden_dim, lr, gamma, buffer_size, batch_size,
                         train_iters, target_update_interval, epsilon_start, epsilon_finish, epsilon_anneal_steps,
                         double_q, grad_clip, mixing_embed_dim, hypernet_dim)
        self.save_hyperparameters()
