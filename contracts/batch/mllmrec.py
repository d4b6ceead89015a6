"""The mllmrec family's batch format: a user's recent history and a candidate list to score (MLLM-MSR's protocol,
one positive and sampled negatives, each candidate answered "would the user interact with it next?").

A batch is a dict of tensors:
  HISTORY    [B, H] long  the user's last H items before the target, oldest first, left-padded with PAD (0)
  CANDIDATES [B, C] long  column 0 is the positive (the user's next item), columns 1.. its sampled negatives
                          (never the positive, never an item of the user's sequence); C = 1 + 20 in evaluation
  USER       [B]    long  the user's index (keys the LLM pipeline's per-user summaries)
The datamodule also offers `item_text_embeddings()` -> [N+1, D] float (row 0 = padding, zeros) and
`item_texts()` -> N+1 strings (the text an item summariser reads; "" for padding), which models take in `setup`.
"""
from __future__ import annotations

PAD = 0
HISTORY, CANDIDATES, USER = "history", "candidates", "user"
POSITIVE_COLUMN = 0
