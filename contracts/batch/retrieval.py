"""The retrieval batch format: the one definition that retrieval datamodules produce and two-tower models read.

A sample is a user's history (LEFT-padded with item id 0, most recent item last) and the item that followed it.
Item ids run 1..num_items. Training samples are every target of the training part; evaluation samples hold one
target per user (leave-one-out) and where the user's seen items end, so the model can filter them.

Training batch:   history [B,L], target [B].
Evaluation batch: history [B,L], target [B], user [B] (row of the per-user item lists), seen_end [B] (exclusive
                  end, in the flat per-user item array, of the items this user has seen before the target).

Item side information is not in batches: a datamodule hands it to the model once (`item_features()`), as
tensors over every item id: `attributes` [N+1, A] multi-hot, `text` [N+1, D] sentence embeddings, `behaviour`
[N+1, K] co-occurrence factors, `count` [N+1] training-target counts, and the flat seen lists `seen_items`,
`user_starts`.
"""
PAD = 0

HISTORY = "history"
TARGET = "target"
USER = "user"
SEEN_END = "seen_end"
