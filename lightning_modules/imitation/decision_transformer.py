"""Decision Transformer (Chen et al. 2021, "Decision Transformer: Reinforcement Learning via Sequence Modeling")
conditioned on the SDG, learned from the log alone.

A causal transformer reads the last `context` steps as interleaved tokens (return, state, action), each a linear
embedding plus a per-timestep embedding, and predicts a_t from the output at s_t (tanh into the action box; mean
squared error, as the paper does for continuous actions). The log has no per-step reward, so the return token is
the episode's SDG (percent / 100) at every step, not a return-to-go that falls as rewards arrive (a stated
deviation: the per-step decomposition is what the board withholds). At evaluation the return token is
`target_scale` times the best episode SDG seen in training (the paper conditions on the dataset's best return or a
multiple of it). Acting is deterministic; exploration adds no noise, since the row never rolls out in training."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from contracts.batch import imitation as B
from contracts.registry import register_model
from lightning_modules.imitation.base import ImitationModule


class DecisionTransformerNet(nn.Module):
    def __init__(self, state_dim: int, action_dim: int, horizon: int, context: int, d_model: int, num_heads: int,
                 num_layers: int, dropout: float):
        super().__init__()
        self.context = context
        self.embed_return, self.embed_state = nn.Linear(1, d_model), nn.Linear(state_dim, d_model)
        self.embed_action = nn.Linear(action_dim, d_model)
        self.embed_time = nn.Embedding(horizon + 1, d_model)
        self.norm = nn.LayerNorm(d_model)
        layer = nn.TransformerEncoderLayer(d_model, num_heads, 4 * d_model, dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.head = nn.Linear(d_model, action_dim)
        # padding before an episode's first step is a learned token rather than a key mask: a fully masked
        # attention row is NaN on the fused inference path
        self.pad_token = nn.Parameter(torch.zeros(d_model))
        self.register_buffer("causal", torch.triu(torch.ones(3 * context, 3 * context, dtype=torch.bool), 1),
                             persistent=False)

    def forward(self, returns: torch.Tensor, states: torch.Tensor, actions: torch.Tensor,
                steps: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        """returns [N, K, 1], states [N, K, S], actions [N, K, A], steps [N, K] long, pad [N, K] bool (true = no
        step there) -> predicted actions [N, K, A] (position k reads up to s_k, never a_k)."""
        N, K = steps.shape
        time = self.embed_time(steps)
        tokens = torch.stack([self.embed_return(returns) + time, self.embed_state(states) + time,
                              self.embed_action(actions) + time], 2).reshape(N, 3 * K, -1)
        tokens = torch.where(pad.repeat_interleave(3, 1).unsqueeze(-1), self.pad_token, tokens)
        out = self.encoder(self.norm(tokens), mask=self.causal[: 3 * K, : 3 * K])
        return torch.tanh(self.head(out.reshape(N, K, 3, -1)[:, :, 1]))


def context_windows(x: torch.Tensor, context: int) -> torch.Tensor:
    """[B, T, ...] -> [B, T, K, ...]: at step t the steps t-K+1..t, zeros before the start."""
    padded = torch.cat([x.new_zeros(x.shape[0], context - 1, *x.shape[2:]), x], 1)
    return padded.unfold(1, context, 1).movedim(-1, 2)


@register_model("decision_transformer", family="imitation")
class DecisionTransformer(ImitationModule):
    def __init__(self, state_dim: int, action_dim: int, horizon: int, context: int = 6, d_model: int = 32,
                 num_heads: int = 2, num_layers: int = 2, dropout: float = 0.1, lr: float = 1e-3,
                 weight_decay: float = 1e-4, target_scale: float = 1.0):
        super().__init__(state_dim, action_dim, horizon, 1, "mlp", 8, d_model, num_heads, num_layers, lr)
        self.save_hyperparameters()
        # the family's Gaussian policy is not used: the transformer is the policy
        self.policy = DecisionTransformerNet(state_dim, action_dim, horizon, context, d_model, num_heads,
                                             num_layers, dropout)
        self.register_buffer("best_sdg", torch.tensor(float("-inf")))

    def windows_at(self, returns: torch.Tensor, states: torch.Tensor, actions: torch.Tensor) -> list[torch.Tensor]:
        """returns [B, T], states [B, T, S] (s_0..s_{T-1}), actions [B, T, A] -> the model's inputs (returns, states,
        actions, steps, pad) for the context ending at every step t, each [B, T, K, ...]: steps t-K+1..t, padded
        before the episode's first step."""
        Bn, T = returns.shape
        steps = torch.arange(T, device=states.device).expand(Bn, T)
        real = torch.ones(Bn, T, dtype=torch.bool, device=states.device)
        w = [context_windows(x, self.hparams.context) for x in (returns.unsqueeze(-1), states, actions, steps, real)]
        return w[:4] + [~w[4]]

    def predict(self, returns: torch.Tensor, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """a_t predicted at every t from the context ending at s_t [B, T, A] (inputs as `windows_at`)."""
        Bn, T = returns.shape
        flat = [x.reshape(Bn * T, *x.shape[2:]) for x in self.windows_at(returns, states, actions)]
        return self.policy(*flat)[:, -1].reshape(Bn, T, -1)

    def learn(self, item: dict) -> dict:
        h = item[B.HISTORY]
        S, A = h[B.STATES].to(self.device), h[B.ACTIONS].to(self.device)
        sdg = h[B.SDG].to(self.device) / 100
        self.best_sdg = torch.maximum(self.best_sdg, sdg.max())
        returns = sdg.unsqueeze(1).expand(-1, A.shape[1])
        loss = F.mse_loss(self.predict(returns, S[:, : A.shape[1]], A), A)
        self.step_optimizer(loss, self.optimizers(), self.parameters())
        return {"action_mse": loss.detach()}

    def reset_policy_state(self, num_envs: int):
        return {"states": [], "actions": []}

    def act(self, obs: torch.Tensor, t: int, state, explore: bool):
        state["states"].append(obs.float())
        states = torch.stack(state["states"], 1)
        actions = torch.stack(state["actions"] + [torch.zeros(obs.shape[0], self.action_dim, device=obs.device)], 1)
        target = self.hparams.target_scale * self.best_sdg if torch.isfinite(self.best_sdg) else obs.new_zeros(())
        # only the context ending now is run through the model
        last = [x[:, -1] for x in self.windows_at(target.expand(states.shape[:2]), states, actions)]
        action = self.policy(*last)[:, -1].clamp(-1, 1)
        state["actions"].append(action)
        return action, {}, state

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)

    @staticmethod
    def search_space(trial) -> dict:
        return {"lr": trial.suggest_float("lr", 1e-4, 3e-3, log=True),
                "context": trial.suggest_categorical("context", [3, 6, 12]),
                "target_scale": trial.suggest_categorical("target_scale", [1.0, 1.2])}
