"""RankGPT: zero-shot listwise reranking with one prompt per window (Sun et al., "Is ChatGPT Good at Search?",
EMNLP 2023), LLM4Rerank's single-prompt LLM baseline.

The official `rank_gpt.py` conversation, with the user's recent items as the query and candidates as passages:
a system line ("You are RankGPT ..."), the task, then one user turn per candidate `[i] title (genre: ...)` answered
"Received ...", and the instruction to answer `[] > []` with the most relevant first. The answer is read as that
code reads it (`receive_permutation`): every run of digits is an identifier, repeats and identifiers out of range
are dropped, and the candidates the answer left out follow in their current order; there is no re-prompt. Lists
longer than `window_size` are reranked by a window sliding from the bottom of the list to the top in steps of
`step` (20 and 10, the official defaults; the official loop starts its first window's end at the list's start, a
slip fixed here). An answer that needed filling counts as invalid, one with no usable identifier as a fallback.
"""
from __future__ import annotations

import re

from contracts.batch import rerank as B
from contracts.registry import register_model
from lightning_modules.rerank.llm_base import LLMReranker


def receive_permutation(answer: str, size: int) -> tuple[list[int], int]:
    """The order of `size` window positions an answer gives (0-based; identifiers are 1-based), and how many of
    them the answer itself placed."""
    order = []
    for number in re.findall(r"\d+", answer):
        position = int(number) - 1
        if 0 <= position < size and position not in order:
            order.append(position)
    placed = len(order)
    return order + [p for p in range(size) if p not in order], placed


def windows(n: int, window_size: int, step: int) -> list[tuple[int, int]]:
    """(start, end) of the sliding windows over a list of n, bottom window first."""
    if n <= window_size:
        return [(0, n)]
    spans, end = [], n
    while True:
        start = max(end - window_size, 0)
        spans.append((start, end))
        if start == 0:
            return spans
        end -= step


@register_model("rankgpt", family="rerank")
class RankGPT(LLMReranker):
    def __init__(self, num_users: int, num_items: int, num_genres: int, num_candidates: int, history_len: int,
                 item_titles: list[str] | None = None, genre_names: list[str] | None = None,
                 group_names: list[str] | None = None, eval_k: int = 10, alpha: float = 0.5,
                 llm: str | None = None, llm_cache: str | None = None, llm_timeout: float = 60.0,
                 llm_retries: int = 2, llm_workers: int = 1, max_tokens: int = 256, temperature: float = 0.0,
                 history_max: int = 5, window_size: int = 20, step: int = 10, item_kind: str = "movie"):
        super().__init__(num_users, num_items, num_genres, num_candidates, history_len, item_titles, genre_names,
                         group_names, eval_k, alpha, llm, llm_cache, llm_timeout, llm_retries, llm_workers,
                         max_tokens, temperature, history_max)
        if window_size < 2 or not 1 <= step <= window_size:
            raise ValueError(f"window_size={window_size} must be >= 2 and step={step} in 1..window_size")
        self.window_size, self.step, self.item_kind = window_size, step, item_kind
        self.save_hyperparameters()

    def query(self, batch: dict, row: int) -> str:
        history = batch[B.HISTORY][row]
        titles = [self.title(int(i)) for i in history[history > 0].tolist()[-self.history_max:]] \
            if self.history_max else []
        return (f"the {self.item_kind} a user who recently chose {'; '.join(titles)} will choose next" if titles
                else f"the {self.item_kind} a new user will choose")

    def messages(self, query: str, lines: list[str]) -> list[dict]:
        kind, num = self.item_kind, len(lines)
        messages = [
            {"role": "system", "content": f"You are RankGPT, an intelligent assistant that can rank {kind}s based "
                                          f"on their relevancy to the query."},
            {"role": "user", "content": f"I will provide you with {num} {kind}s, each indicated by number identifier "
                                        f"[]. \nRank the {kind}s based on their relevance to query: {query}."},
            {"role": "assistant", "content": f"Okay, please provide the {kind}s."}]
        for rank, line in enumerate(lines, 1):
            messages += [{"role": "user", "content": f"[{rank}] {line}"},
                         {"role": "assistant", "content": f"Received {kind} [{rank}]."}]
        messages.append({"role": "user", "content": (
            f"Search Query: {query}. \nRank the {num} {kind}s above based on their relevance to the search query. "
            f"The {kind}s should be listed in descending order using identifiers. The most relevant {kind}s should "
            f"be listed first. The output format should be [] > [], e.g., [2] > [1]. Only response the ranking "
            f"results, do not say any word or explain.")})
        return messages

    def rerank_list(self, batch: dict, row: int, stats: dict) -> list[int]:
        ids, genres = batch[B.CANDIDATES][row].tolist(), batch[B.GENRES][row]
        query = self.query(batch, row)
        order = list(range(len(ids)))  # candidate positions, current order
        for start, end in windows(len(ids), self.window_size, self.step):
            window = order[start:end]
            lines = [f"{self.title(ids[p])} (genre: {self.genres_text(genres[p])})" for p in window]
            answer = self.ask(self.messages(query, lines), stats)
            permutation, placed = receive_permutation(answer, len(window))
            stats["invalid_answers"] += placed < len(window)
            stats["fallbacks"] += placed == 0
            stats["node_visits"] += 1
            order[start:end] = [window[p] for p in permutation]
        return order
