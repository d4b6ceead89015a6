"""The rerank batch format: the one definition that rerank datamodules produce and rerankers read.

One sample is one user's candidate list: the N items (N = 20 in LLM4Rerank) that the upstream ranker (GMF) put
first for that user, in the ranker's order (position 0 = the ranker's best), and the user's held-out item. Item
ids run 1..num_items (0 pads). Every split has the same keys:

  USER            [B]        long   user row, 0..num_users-1
  HISTORY         [B, H]     long   the user's last H items before the target, LEFT-padded with 0, most recent last
  HISTORY_GENRES  [B, H, G]  float  their genres, multi-hot (zeros on padding)
  CANDIDATES      [B, N]     long   candidate item ids in the ranker's order
  SCORES          [B, N]     float  the ranker's scores of the candidates (non-increasing along N)
  GENRES          [B, N, G]  float  candidate genres, multi-hot (the diversity attribute)
  GROUP           [B, N]     long   candidate item group, 0 or 1 (the fairness attribute; names in `group_names`)
  TARGET_POS      [B]        long   position of the held-out item among the candidates, -1 when it is not there
  RELEVANCE       [B, N]     float  1.0 at the held-out item's position, else 0.0

A reranker returns, per row, a permutation of the positions 0..N-1 (best first); see
`lightning_modules.rerank.base.RerankModule.rerank`.

What the models need about the catalogue arrives as constructor arguments (`model_kwargs()` of the datamodule):
num_users, num_items, num_genres, num_candidates, history_len, item_titles (list[str] indexed by item id, entry 0
empty), genre_names (list[str], G names in multi-hot order), group_names (two names, group 0 then group 1).
"""
USER = "user"
HISTORY = "history"
HISTORY_GENRES = "history_genres"
CANDIDATES = "candidates"
SCORES = "scores"
GENRES = "genres"
GROUP = "group"
TARGET_POS = "target_pos"
RELEVANCE = "relevance"

KEYS = (USER, HISTORY, HISTORY_GENRES, CANDIDATES, SCORES, GENRES, GROUP, TARGET_POS, RELEVANCE)
PAD = 0
