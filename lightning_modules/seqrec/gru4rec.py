"""GRU4Rec: session-based recommendation with recurrent networks (Hidasi et al., ICLR 2016, arXiv 1511.06939),
with the cross-entropy loss and tied ("constrained") embeddings of the later official implementation
(Hidasi & Karatzoglou, CIKM 2018; Hidasi & Czapp, RecSys 2023).

The model: item embedding -> dropout -> GRU layers -> dropout -> score by inner product with the output item
table (Sec. 3.1 of the 2016 paper, with the embedding input variant of Sec. 3.1.1).

Differences from the official code, stated rather than hidden:
- Batching. The official code trains with session-parallel mini-batches and one-step truncated BPTT; here each
  user's (left-padded) sequence is one sample, a full BPTT pass per sequence, as in most benchmark suites.
  The loss per position is the same next-item objective.
- The official output layer has a per-item bias; scores here are the plain inner product shared by the family.
- `constrained_embedding=True` ties input and output tables (the official option of that name); False gives the
  GRU its own input table.
"""
from __future__ import annotations

import optuna
import torch
from torch import nn

from contracts.batch.seqrec import PAD
from contracts.registry import register_model
from lightning_modules.base_arguments import base_arguments
from lightning_modules.seqrec.base import SeqRecModule
from lightning_modules.seqrec.layers import left_to_right_padding


@register_model("gru4rec", family="seqrec")
class GRU4Rec(SeqRecModule):
    def __init__(
        self,
        num_items: int,
        max_len: int = 50,
        embed_dim: int = 64,
        num_layers: int = 1,
        dropout_embed: float = 0.25,
        dropout_hidden: float = 0.25,
        constrained_embedding: bool = True,
        loss: str = "ce",
        num_negatives: int = 128,
        shared_negatives: bool = False,
        temperature: float = 1.0,
        l2_norm: bool = False,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.999),
        filter_seen: bool = True,
        eval_ks: tuple[int, ...] = (10, 20),
    ):
        super().__init__(**base_arguments(SeqRecModule, locals()))
        self.save_hyperparameters()
        self.input_embedding = (
            self.item_embedding if constrained_embedding else nn.Embedding(num_items + 1, embed_dim, padding_idx=PAD)
        )
        self.embed_dropout = nn.Dropout(dropout_embed)
        self.gru = nn.GRU(embed_dim, embed_dim, num_layers=num_layers, batch_first=True,
                          dropout=dropout_hidden if num_layers > 1 else 0.0)
        self.hidden_dropout = nn.Dropout(dropout_hidden)

    def forward(self, input_ids, timestamps=None, next_timestamps=None) -> torch.Tensor:
        # The GRU must start from a zero state at each user's first item, so run it on right-padded rows
        # (padding after the sequence cannot reach earlier outputs) and move the outputs back.
        lengths = (input_ids != PAD).sum(1)
        right = left_to_right_padding(input_ids, lengths)
        h, _ = self.gru(self.embed_dropout(self.input_embedding(right)))
        h = left_to_right_padding(h, input_ids.shape[1] - lengths)
        return self.hidden_dropout(h) * (input_ids != PAD).unsqueeze(-1)

    @staticmethod
    def search_space(trial: optuna.Trial) -> dict:
        return {
            "lr": trial.suggest_float("lr", 3e-4, 1e-2, log=True),
            "embed_dim": trial.suggest_categorical("embed_dim", [32, 64, 128, 256]),
            "num_layers": trial.suggest_categorical("num_layers", [1, 2]),
            "dropout_embed": trial.suggest_float("dropout_embed", 0.0, 0.5),
            "dropout_hidden": trial.suggest_float("dropout_hidden", 0.0, 0.5),
        }
