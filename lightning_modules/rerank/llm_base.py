"""What the LLM rerankers (RankGPT, LLM4Rerank) share: the client (built on first use from the `llm` spec, every
answer cached on disk so a board resumes and reruns without asking the model again), the items written as text
for prompts, and counters of how the model answered (calls, invalid answers, fallbacks, cache hits), which are
logged beside the board's metrics so that a row run with a model that never answers validly says so.

A list is one prompt conversation, so rerank() walks the batch's lists in Python; `llm_workers` > 1 sends that
many lists' conversations at once (a served model batches concurrent requests).
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from torchmetrics import SumMetric

from contracts.batch import rerank as B
from lightning_modules.llm import CachedClient, make_client
from lightning_modules.rerank.base import RerankModule

STATS = ("lists", "llm_calls", "invalid_answers", "fallbacks", "cache_hits", "node_visits")


def default_cache_dir() -> Path:
    return Path(os.environ.get("PAPERBOARD_HOME", "~/.cache/paperboard")).expanduser() / "llm-cache"


class LLMReranker(RerankModule):
    """Base of the rerankers that prompt an LLM. `llm`: `hf:PATH`, `http://host:port/v1#model=NAME`, or None for
    $PAPERBOARD_LLM; without a model the run stops with `LLMUnavailable` before any list is scored."""

    needs_llm = True  # no LLM in the registry-wide smoke tests; this family's tests serve a tiny one
    trainable = False

    def __init__(self, num_users: int, num_items: int, num_genres: int, num_candidates: int, history_len: int,
                 item_titles: list[str] | None = None, genre_names: list[str] | None = None,
                 group_names: list[str] | None = None, eval_k: int = 10, alpha: float = 0.5,
                 llm: str | None = None, llm_cache: str | None = None, llm_timeout: float = 60.0,
                 llm_retries: int = 2, llm_workers: int = 1, max_tokens: int = 256, temperature: float = 0.0,
                 history_max: int = 5):
        super().__init__(num_users, num_items, num_genres, num_candidates, history_len, item_titles, genre_names,
                         group_names, eval_k, alpha)
        if llm_timeout <= 0 or llm_retries < 0 or llm_workers < 1 or max_tokens < 1 or temperature < 0:
            raise ValueError(f"need llm_timeout > 0, llm_retries >= 0, llm_workers >= 1, max_tokens >= 1 and "
                             f"temperature >= 0; got {llm_timeout}, {llm_retries}, {llm_workers}, {max_tokens}, "
                             f"{temperature}")
        if history_max < 0:
            raise ValueError(f"history_max={history_max} must be >= 0 (history items shown in the prompt)")
        self.llm, self.llm_cache, self.llm_timeout, self.llm_retries = llm, llm_cache, llm_timeout, llm_retries
        self.llm_workers, self.max_tokens, self.temperature = llm_workers, max_tokens, temperature
        self.history_max = history_max
        self._client: CachedClient | None = None
        self.llm_stats = torch.nn.ModuleDict({f"{stage}_{name}": SumMetric() for stage in ("val", "test")
                                              for name in STATS})
        self._stage = "test"

    # ----- the client ------------------------------------------------------------------------------------------------
    @property
    def client(self) -> CachedClient:
        if self._client is None:
            self._client = CachedClient(make_client(self.llm, timeout=self.llm_timeout, max_retries=self.llm_retries),
                                        Path(self.llm_cache).expanduser() if self.llm_cache else default_cache_dir())
        return self._client

    def setup(self, stage: str) -> None:
        self.client  # no model: stop here, before a training epoch or any list, with LLMUnavailable

    def ask(self, messages: list[dict], stats: dict) -> str:
        answer = self.client.complete(messages, max_tokens=self.max_tokens, temperature=self.temperature)
        stats["llm_calls"] += 1
        return answer

    # ----- items as text ---------------------------------------------------------------------------------------------
    def title(self, item: int) -> str:
        if self.item_titles and 0 < item < len(self.item_titles) and self.item_titles[item]:
            return self.item_titles[item]
        return f"item {item}"

    def genres_text(self, multi_hot: torch.Tensor) -> str:
        names = self.genre_names or [f"genre {g}" for g in range(multi_hot.shape[-1])]
        found = [names[g] for g in multi_hot.nonzero().flatten().tolist()]
        return "|".join(found) if found else "unknown"

    def group_text(self, group: int) -> str:
        return (self.group_names or ["group 0", "group 1"])[group]

    def history_lines(self, batch: dict, row: int) -> list[str]:
        """The user's last `history_max` items, oldest first, as '- title (genre: ...)' lines."""
        history, genres = batch[B.HISTORY][row], batch[B.HISTORY_GENRES][row]
        keep = (history > 0).nonzero().flatten().tolist()[-self.history_max:] if self.history_max else []
        return [f"- {self.title(int(history[i]))} (genre: {self.genres_text(genres[i])})" for i in keep]

    # ----- the reranking loop ----------------------------------------------------------------------------------------
    def rerank_list(self, batch: dict, row: int, stats: dict) -> list[int]:  # pragma: no cover
        """The order of list `row` as candidate positions, best first."""
        raise NotImplementedError

    def rerank(self, batch: dict) -> torch.Tensor:
        rows = range(batch[B.CANDIDATES].shape[0])
        hits_before = self.client.hits
        stats_per_row = [dict.fromkeys(STATS, 0) for _ in rows]
        if self.llm_workers == 1:
            orders = [self.rerank_list(batch, row, stats_per_row[row]) for row in rows]
        else:
            with ThreadPoolExecutor(self.llm_workers) as pool:
                orders = list(pool.map(lambda row: self.rerank_list(batch, row, stats_per_row[row]), rows))
        stats_per_row[0]["cache_hits"] = self.client.hits - hits_before  # the batch's total (threads share it)
        for stats in stats_per_row:
            stats["lists"] = 1
            for name, value in stats.items():
                self.llm_stats[f"{self._stage}_{name}"].update(torch.tensor(float(value), device=self.device))
        return torch.tensor(orders, dtype=torch.long, device=batch[B.CANDIDATES].device)

    # ----- logging ---------------------------------------------------------------------------------------------------
    def validation_step(self, batch: dict, batch_idx: int):
        self._stage = "val"
        super().validation_step(batch, batch_idx)

    def test_step(self, batch: dict, batch_idx: int):
        self._stage = "test"
        super().test_step(batch, batch_idx)

    def _log(self, stage: str) -> None:
        super()._log(stage)
        totals = {name: self.llm_stats[f"{stage}_{name}"].compute() for name in STATS}
        lists = totals["lists"].clamp_min(1)
        calls = totals["llm_calls"].clamp_min(1)
        self.log(f"{stage}/llm_calls_per_user", totals["llm_calls"] / lists)
        self.log(f"{stage}/invalid_answer_rate", totals["invalid_answers"] / calls)
        self.log(f"{stage}/fallback_rate", totals["fallbacks"] / lists)
        self.log(f"{stage}/cache_hit_rate", totals["cache_hits"] / calls)
        self.log(f"{stage}/node_visits_per_user", totals["node_visits"] / lists)
        for name in STATS:
            self.llm_stats[f"{stage}_{name}"].reset()
