"""Baselines of MLLM-MSR's table on its 1 + 20 candidate protocol: popularity (the floor), the ID-based SASRec and
GRU4Rec, and a text-feature-aware UniSRec-style model.

SASRec and GRU4Rec build the seqrec family's architectures (SASRec's official self-attention block from
`lightning_modules.seqrec.sasrec`, GRU4Rec's embedding -> GRU -> tied output table) and score a candidate by the
inner product of the user's last hidden state with its ID embedding. Their recipes differ from the seqrec boards'
in one way the protocol forces: they train on this family's samples (the last position of each training window,
BCE over the positive and its sampled negatives), as every row here does, instead of the next item at every
position.

UniSRec-style (Hou et al., KDD 2022, "Towards Universal Sequence Representation Learning"): frozen item text vectors
-> mixture-of-experts adaptor with parametric whitening (Sec. 2.2: expert e maps (x - b_e) W_e, a softmax gate
mixes them) -> SASRec's self-attention blocks -> the last position is the user; a candidate's vector is its adapted
text vector (plus its ID embedding with `item_ids=True`, the paper's fine-tuned "transductive" setting). The
paper's multi-domain contrastive pre-training is not run (one domain here): the adaptor and encoder are trained
on this board's data only, which the paper calls the inductive, no-pre-training setting.
"""
from __future__ import annotations

import math

import optuna
import torch
from torch import nn

from contracts.batch import mllmrec as B
from contracts.registry import register_model
from lightning_modules.base_arguments import base_arguments
from lightning_modules.mllmrec.base import DEFAULT_KS, CandidateRecModule
from lightning_modules.seqrec.layers import BlockStack, causal_padding_mask, left_to_right_padding
from lightning_modules.seqrec.sasrec import self_attention_block


@register_model("mllmrec_pop", family="mllmrec")
class CandidatePopularity(CandidateRecModule):
    """Score a candidate by how often it was a training positive or a training history item. Counted from the
    training batches once (first epoch), summed across processes; nothing is learned by gradient."""

    def __init__(self, num_items: int, max_history: int = 10, text_dim: int = 0,
                 eval_ks: tuple[int, ...] = DEFAULT_KS):
        super().__init__(num_items=num_items, max_history=max_history, text_dim=0, eval_ks=eval_ks)
        self.save_hyperparameters()
        self.ddp_anchor = nn.Parameter(torch.zeros(1))  # DDP refuses a module with nothing to train
        self.automatic_optimization = False
        self.register_buffer("counts", torch.zeros(num_items + 1))
        self.register_buffer("epoch_counts", torch.zeros(num_items + 1), persistent=False)
        self.counted_epochs = 0

    def training_step(self, batch, batch_idx):
        seen = torch.cat([batch[B.HISTORY].flatten(), batch[B.CANDIDATES][:, B.POSITIVE_COLUMN]])
        self.epoch_counts.index_add_(0, seen, torch.ones_like(seen, dtype=self.epoch_counts.dtype))

    def on_train_epoch_end(self):
        total = self.trainer.strategy.reduce(self.epoch_counts, reduce_op="sum")
        if self.counted_epochs == 0:
            self.counts += total
            self.counts[B.PAD] = 0
        self.counted_epochs += 1
        self.epoch_counts.zero_()

    def score(self, batch):
        return torch.log1p(self.counts[batch[B.CANDIDATES]])

    def configure_optimizers(self):
        return None

    @staticmethod
    def search_space(trial: optuna.Trial) -> dict:
        return {}


def id_table(num_items: int, embed_dim: int) -> nn.Embedding:
    """The item-ID table shared by the input and the candidates: row 0 is padding, N(0, 1/d) initialisation."""
    table = nn.Embedding(num_items + 1, embed_dim, padding_idx=B.PAD)
    nn.init.normal_(table.weight, std=embed_dim ** -0.5)
    return table


class IDSequenceModule(CandidateRecModule):
    """An ID-based sequence encoder scored by the inner product with the candidates' ID embeddings."""

    def encode(self, history: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def score(self, batch):
        u = self.encode(batch[B.HISTORY])
        return torch.einsum("bd,bcd->bc", u, self.item_embedding(batch[B.CANDIDATES]))


@register_model("mllmrec_sasrec", family="mllmrec")
class CandidateSASRec(IDSequenceModule):
    """SASRec (Kang & McAuley, ICDM 2018): learned positions, the official self-attention blocks, final LayerNorm."""

    def __init__(self, num_items: int, max_history: int = 10, text_dim: int = 0, embed_dim: int = 64,
                 num_blocks: int = 2, num_heads: int = 1, dropout: float = 0.2, lr: float = 1e-3,
                 weight_decay: float = 0.0, eval_ks: tuple[int, ...] = DEFAULT_KS):
        super().__init__(num_items=num_items, max_history=max_history, text_dim=0, lr=lr,
                         weight_decay=weight_decay, eval_ks=eval_ks)
        self.save_hyperparameters()
        self.item_embedding = id_table(num_items, embed_dim)
        self.position_embedding = nn.Embedding(max_history, embed_dim)
        self.input_dropout = nn.Dropout(dropout)
        self.blocks = BlockStack(self_attention_block(embed_dim, num_heads, dropout, True) for _ in range(num_blocks))
        self.final_norm = nn.LayerNorm(embed_dim, eps=1e-8)

    def encode(self, history):
        keep = (history != B.PAD).unsqueeze(-1)
        x = self.item_embedding(history) * math.sqrt(self.hparams.embed_dim)
        x = self.input_dropout(x + self.position_embedding.weight[-history.shape[1]:]) * keep
        return self.final_norm(self.blocks(x, keep, causal_padding_mask(history)))[:, -1]

    @staticmethod
    def search_space(trial: optuna.Trial) -> dict:
        return {"lr": trial.suggest_float("lr", 3e-4, 3e-3, log=True),
                "dropout": trial.suggest_float("dropout", 0.1, 0.5),
                "embed_dim": trial.suggest_categorical("embed_dim", [32, 64, 128])}


@register_model("mllmrec_gru4rec", family="mllmrec")
class CandidateGRU4Rec(IDSequenceModule):
    """GRU4Rec (Hidasi et al., ICLR 2016): embedding -> dropout -> GRU -> dropout, tied input/output table."""

    def __init__(self, num_items: int, max_history: int = 10, text_dim: int = 0, embed_dim: int = 64,
                 num_layers: int = 1, dropout_embed: float = 0.25, dropout_hidden: float = 0.25, lr: float = 1e-3,
                 weight_decay: float = 0.0, eval_ks: tuple[int, ...] = DEFAULT_KS):
        super().__init__(num_items=num_items, max_history=max_history, text_dim=0, lr=lr,
                         weight_decay=weight_decay, eval_ks=eval_ks)
        self.save_hyperparameters()
        self.item_embedding = id_table(num_items, embed_dim)
        self.embed_dropout = nn.Dropout(dropout_embed)
        self.gru = nn.GRU(embed_dim, embed_dim, num_layers=num_layers, batch_first=True,
                          dropout=dropout_hidden if num_layers > 1 else 0.0)
        self.hidden_dropout = nn.Dropout(dropout_hidden)

    def encode(self, history):
        # run on right-padded rows so each user's GRU starts from zero at their first item; read their last item
        lengths = (history != B.PAD).sum(1)
        right = left_to_right_padding(history, lengths)
        h, _ = self.gru(self.embed_dropout(self.item_embedding(right)))
        last = h.gather(1, (lengths - 1).clamp(min=0).view(-1, 1, 1).expand(-1, 1, h.shape[-1])).squeeze(1)
        return self.hidden_dropout(last)

    @staticmethod
    def search_space(trial: optuna.Trial) -> dict:
        return {"lr": trial.suggest_float("lr", 3e-4, 1e-2, log=True),
                "embed_dim": trial.suggest_categorical("embed_dim", [32, 64, 128])}


class MoEAdaptor(nn.Module):
    """UniSRec Sec. 2.2: v = sum_e g_e * (x - b_e) W_e, gate g = softmax(x W_g) over `num_experts` experts."""

    def __init__(self, text_dim: int, dim: int, num_experts: int, dropout: float):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(num_experts, text_dim))
        self.weight = nn.Parameter(torch.randn(num_experts, text_dim, dim) * text_dim ** -0.5)
        self.gate = nn.Linear(text_dim, num_experts, bias=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(x)
        experts = torch.einsum("...ek,ekd->...ed", x.unsqueeze(-2) - self.bias, self.weight)
        gate = torch.softmax(self.gate(x), dim=-1).unsqueeze(-1)
        return (gate * experts).sum(-2)


@register_model("unisrec", family="mllmrec")
class UniSRecStyle(CandidateRecModule):
    def __init__(self, num_items: int, max_history: int = 10, text_dim: int = 384, embed_dim: int = 64,
                 num_experts: int = 8, num_blocks: int = 2, num_heads: int = 2, dropout: float = 0.2,
                 adaptor_dropout: float = 0.2, item_ids: bool = False, lr: float = 1e-3, weight_decay: float = 0.0,
                 eval_ks: tuple[int, ...] = DEFAULT_KS):
        super().__init__(**base_arguments(CandidateRecModule, locals()))
        self.save_hyperparameters()
        if text_dim < 1:
            raise ValueError("unisrec reads item text vectors: its datamodule must give text_dim >= 1")
        self.adaptor = MoEAdaptor(text_dim, embed_dim, num_experts, adaptor_dropout)
        self.ids = nn.Embedding(num_items + 1, embed_dim, padding_idx=B.PAD) if item_ids else None
        self.position_embedding = nn.Embedding(max_history, embed_dim)
        self.input_norm = nn.LayerNorm(embed_dim, eps=1e-8)
        self.input_dropout = nn.Dropout(dropout)
        self.blocks = BlockStack(self_attention_block(embed_dim, num_heads, dropout, True) for _ in range(num_blocks))
        self.final_norm = nn.LayerNorm(embed_dim, eps=1e-8)

    def item_vectors(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.adaptor(self.item_text[ids])
        if self.ids is not None:
            x = x + self.ids(ids)
        return x * (ids != B.PAD).unsqueeze(-1)

    def score(self, batch):
        history = batch[B.HISTORY]
        keep = (history != B.PAD).unsqueeze(-1)
        x = self.item_vectors(history) + self.position_embedding.weight[-history.shape[1]:]
        x = self.input_dropout(self.input_norm(x)) * keep
        u = self.final_norm(self.blocks(x, keep, causal_padding_mask(history)))[:, -1]
        return torch.einsum("bd,bcd->bc", u, self.item_vectors(batch[B.CANDIDATES]))

    @staticmethod
    def search_space(trial: optuna.Trial) -> dict:
        return {"lr": trial.suggest_float("lr", 3e-4, 3e-3, log=True),
                "dropout": trial.suggest_float("dropout", 0.1, 0.5),
                "num_experts": trial.suggest_categorical("num_experts", [4, 8])}
