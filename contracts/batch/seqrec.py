"""The seqrec batch format: the one definition that seqrec datamodules produce and seqrec models read.

Sequences are LEFT-padded with item id 0, so position L-1 always holds the most recent item.
Item ids run 1..num_items. Every tensor is batched (first dim B); L is the model's max_len.

Training batch:  input_ids [B,L], target_ids [B,L] (next item per position, 0 = no target),
                 timestamps [B,L] and next_timestamps [B,L] (only on datasets with time; seconds).
Evaluation batch: input_ids [B,L] (history), target [B], sample_idx [B] (row of the eval set),
                 timestamps [B,L] and next_timestamps [B,L] (the last entry is the target's time).
"""
PAD = 0

INPUT_IDS = "input_ids"
TARGET_IDS = "target_ids"
TARGET = "target"
TIMESTAMPS = "timestamps"
NEXT_TIMESTAMPS = "next_timestamps"
SAMPLE_IDX = "sample_idx"
