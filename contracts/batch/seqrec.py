"""The seqrec batch format: the one definition that seqrec datamodules produce and seqrec models read.

Sequences are LEFT-padded with item id 0, so position L-1 always holds the most recent item.
Item ids run 1..num_items. Every tensor is batched (first dim B); L is the model's max_len.

Training batch:  input_ids [B,L], target_ids [B,L] (next item per position, 0 = no target),
                 timestamps [B,L] and next_timestamps [B,L] (only on datasets with time; seconds),
                 loss_scale [] float (only with length-grouped batches): the batch's target count over the mean
                 count per batch of the epoch; a model multiplies its batch-mean loss by it, so every target
                 weighs what it weighs under plain batching, however long the batch's rows are.
Evaluation batch: input_ids [B,L] (history), target [B], sample_idx [B] (row of the eval set),
                 timestamps [B,L] and next_timestamps [B,L] (the last entry is the target's time).

Item side information (optional, per item rather than per batch): a datamodule built with `item_features=True`
returns from `item_features()` a dict of tensors indexed by item id (row 0 = the padding item, all zeros):
  item_tokens [N+1, S] long: S slots of side-information tokens; every field owns a disjoint id range of one shared
                             vocabulary 1..V (0 = empty slot), a multi-valued field (genres) fills several slots;
  slot_field  [S] long:      the field (0..F-1) each slot belongs to;
  field_sizes [F] long:      how many token ids each field owns (its ids are contiguous, in field order);
  item_text   [N+1, D] float: a sentence embedding per item (D = 0 when the data has no text; zero rows for items
                             without text).
A model reads it from `trainer.datamodule.item_features()`; a datamodule without side information returns None.
"""
PAD = 0

INPUT_IDS = "input_ids"
TARGET_IDS = "target_ids"
TARGET = "target"
TIMESTAMPS = "timestamps"
NEXT_TIMESTAMPS = "next_timestamps"
SAMPLE_IDX = "sample_idx"
LOSS_SCALE = "loss_scale"

ITEM_TOKENS = "item_tokens"
SLOT_FIELD = "slot_field"
FIELD_SIZES = "field_sizes"
ITEM_TEXT = "item_text"
ITEM_FEATURE_KEYS = (ITEM_TOKENS, SLOT_FIELD, FIELD_SIZES, ITEM_TEXT)
