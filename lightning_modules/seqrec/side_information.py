"""Item side information for sequential recommenders: the datamodule's per-item feature table (token slots per
field, a text embedding; format in `contracts.batch.seqrec`) held as buffers, with the layers that embed it.

The table's sizes (fields, vocabulary, text width) belong to the data, and every seqrec model on a board receives
the same data-filled constructor arguments (`num_items`, `max_len`), so a model that reads side information builds
these layers when it meets its data: in Lightning's `setup` hook (before the optimiser is configured), from
`trainer.datamodule.item_features()`, or in `on_load_checkpoint` from the saved buffers' shapes, so a checkpoint
loads into a fresh instance. On a datamodule without side information the model runs on item ids alone and warns.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn

from contracts.batch import seqrec as B

PREFIX = "side"  # the attribute name every side-information model gives its `ItemSideInformation`


class ItemSideInformation(nn.Module):
    """Buffers `item_tokens` [N+1, S], `slot_field` [S], `field_sizes` [F], `item_text` [N+1, D] and, once attached,
    `field_embedding` (one table over every field's token ids, field f's rows its own) and `text_projection` (D -> d).

    `feature_tokens(ids)` gives an item's side-information vectors (one per field, one for the text); `summed(ids)`
    their sum.
    """

    def __init__(self, num_items: int, dim: int):
        super().__init__()
        self.num_items, self.dim = num_items, dim
        self.register_buffer(B.ITEM_TOKENS, torch.zeros(num_items + 1, 0, dtype=torch.long))
        self.register_buffer(B.SLOT_FIELD, torch.zeros(0, dtype=torch.long))
        self.register_buffer(B.FIELD_SIZES, torch.zeros(0, dtype=torch.long))
        self.register_buffer(B.ITEM_TEXT, torch.zeros(num_items + 1, 0))
        self.field_embedding: nn.Embedding | None = None
        self.text_projection: nn.Linear | None = None

    @property
    def attached(self) -> bool:
        return self.field_embedding is not None or self.text_projection is not None

    @property
    def num_fields(self) -> int:
        return int(self.field_sizes.numel())

    @property
    def has_text(self) -> bool:
        return self.item_text.shape[1] > 0

    def attach(self, features: dict[str, torch.Tensor]) -> None:
        """Take the datamodule's table; build the layers the first time (their sizes come from the table)."""
        tokens = features[B.ITEM_TOKENS]
        if tokens.shape[0] != self.num_items + 1:
            raise ValueError(f"the item feature table has {tokens.shape[0] - 1} items, the model {self.num_items}")
        if self.attached and (tokens.shape != self.item_tokens.shape
                              or features[B.ITEM_TEXT].shape != self.item_text.shape
                              or not torch.equal(features[B.FIELD_SIZES].cpu(), self.field_sizes.cpu())):
            raise ValueError("this model was built for another item feature table (its shapes differ)")
        device = self.item_tokens.device
        for key in B.ITEM_FEATURE_KEYS:
            setattr(self, key, features[key].to(device, getattr(self, key).dtype))
        if not self.attached:
            self.build_layers()

    def build_layers(self) -> None:
        device = self.item_tokens.device
        vocabulary = int(self.field_sizes.sum()) + 1
        self.field_embedding = nn.Embedding(vocabulary, self.dim, padding_idx=B.PAD).to(device)
        nn.init.normal_(self.field_embedding.weight, std=0.02)
        with torch.no_grad():
            self.field_embedding.weight[B.PAD].zero_()
        if self.has_text:
            self.text_projection = nn.Linear(self.item_text.shape[1], self.dim).to(device)
        # [S, F] one-hot of the slots' fields, and each field's slot indices
        self.register_buffer("slot_to_field", F.one_hot(self.slot_field, self.num_fields).float(), persistent=False)
        self.field_slots = [torch.nonzero(self.slot_field == f).flatten().tolist() for f in range(self.num_fields)]

    def shape_from_state(self, state: dict[str, torch.Tensor], prefix: str) -> None:
        """Buffers shaped as in a saved state dict (values follow with `load_state_dict`), layers built."""
        if f"{prefix}{B.ITEM_TOKENS}" not in state or self.attached:
            return
        features = {key: torch.zeros_like(state[f"{prefix}{key}"]) for key in B.ITEM_FEATURE_KEYS}
        if features[B.ITEM_TOKENS].shape[1] == 0 and features[B.ITEM_TEXT].shape[1] == 0:
            return  # saved without side information
        features[B.SLOT_FIELD] = state[f"{prefix}{B.SLOT_FIELD}"].clone()
        features[B.FIELD_SIZES] = state[f"{prefix}{B.FIELD_SIZES}"].clone()
        self.attach(features)

    @property
    def num_tokens(self) -> int:
        """How many side-information vectors an item has: one per field, one for the text."""
        return self.num_fields + int(self.has_text)

    def feature_tokens(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """([..., m, d], [..., m] bool): items' side-information vectors (per field the mean of its tokens'
        embeddings, multi-valued fields such as genres pooling their slots; then the projected text), m =
        `num_tokens`, and which of them the item has (a field it lacks, or missing text, is a zero vector)."""
        vectors, present = [], []
        if self.field_embedding is not None and self.num_fields:
            tokens = self.item_tokens[ids].reshape(-1, self.item_tokens.shape[1])  # [n, S]
            # one mean-pooling embedding bag per field: padding slots neither add nor count
            pooled = torch.stack([F.embedding_bag(tokens[:, slots], self.field_embedding.weight, mode="mean",
                                                  padding_idx=B.PAD) for slots in self.field_slots], dim=1)
            vectors.append(pooled.view(*ids.shape, self.num_fields, self.dim))
            present.append((tokens != B.PAD).float().matmul(self.slot_to_field).view(*ids.shape, -1) > 0)
        if self.text_projection is not None:
            text = self.item_text[ids]
            has = (text != 0).any(-1, keepdim=True)
            vectors.append((self.text_projection(text) * has).unsqueeze(-2))
            present.append(has)
        if not vectors:
            return (torch.zeros(*ids.shape, 0, self.dim, device=ids.device),
                    torch.zeros(*ids.shape, 0, dtype=torch.bool, device=ids.device))
        return torch.cat(vectors, dim=-2), torch.cat(present, dim=-1)

    def summed(self, ids: torch.Tensor) -> torch.Tensor:
        """[..., d] every side-information vector of an item, summed (zero without side information)."""
        return self.feature_tokens(ids)[0].sum(-2)


class ItemWithSideInformation(nn.Module):
    """E[item] + the item's summed side information: stands in for the item embedding in an input layer."""

    def __init__(self, item_embedding: nn.Embedding, side: ItemSideInformation):
        super().__init__()
        self.item_embedding = item_embedding
        self.side = side
        self.embedding_dim = item_embedding.embedding_dim

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.item_embedding(ids) + self.side.summed(ids)


class SideInformationMixin:
    """For a SeqRecModule that may hold an `ItemSideInformation` as `self.side` (None: the model reads ids only):
    Lightning hooks that attach the datamodule's table in `setup` and rebuild the layers from a checkpoint's shapes
    in `on_load_checkpoint`; and, where `self.side_candidates` is True, candidate item vectors that add each item's
    summed side information to its id embedding (so an item seen rarely in training still scores by its
    attributes). Listed before the base class. (No class-level default for `side`: it would shadow the submodule,
    which nn.Module keeps outside the instance dict.)"""

    @property
    def side_information(self) -> ItemSideInformation | None:
        return self._modules.get(PREFIX)

    def item_vectors(self, ids: torch.Tensor | None = None) -> torch.Tensor:
        if self.side_information is None or not getattr(self, "side_candidates", False):
            return super().item_vectors(ids)
        rows = torch.arange(self.num_items + 1, device=self.item_embedding.weight.device) if ids is None else ids
        table = self.item_embedding(rows) + self.side.summed(rows)
        return F.normalize(table, dim=-1, eps=1e-6) if self.l2_norm else table

    def setup(self, stage: str) -> None:
        if self.side_information is None:
            return
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        features = datamodule.item_features() if hasattr(datamodule, "item_features") else None
        if features is not None:
            self.side.attach(features)
        elif not self.side.attached and stage == "fit":
            rank_zero_warn(f"{type(self).__name__}: the datamodule has no item side information "
                           f"(item_features off); the model runs on item ids alone")

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if self.side_information is not None:
            self.side.shape_from_state(checkpoint.get("state_dict", {}), f"{PREFIX}.")
