"""LLM4Rerank: LLM-based Auto-Reranking Framework for Recommendations (Gao et al., WWW 2025, arXiv 2406.12433).

A zero-shot LLM walks a fully connected graph of nodes, each a prompt template (Sec. 3):
  - aspect nodes Accuracy, Diversity, Fairness: the LLM reranks the whole candidate list for that aspect and names
    the next node, answering `[id, id, ...]; next_node`;
  - Backward: drops the last entry of the historical reranking pool and asks the LLM only for the next node;
  - Stop: no LLM call; the output is the pool's last list (the ranker's order when the pool is empty).
The walk starts at Accuracy, each node's list joins the pool (shown to every later prompt as "Focus: X. Reranking
Result: [...]"), and the Goal sentence (`focus`) steers which nodes the LLM picks. Algorithm 1 stops when the pool
reaches MC entries; since Backward shrinks the pool, the cap here counts node visits (`max_visits` = MC), so every
walk ends in Stop after at most MC LLM-answered nodes.

Each prompt holds, in the official code's order: the user (here its id and last `history_max` items: the boards'
data carries no demographics), the candidates with their attributes and the ranker's score "for your reference",
the pool, the node's instruction, the nodes allowed next (with what Backward and Stop do), the Goal, and the strict
answer format. An answer is re-prompted (the invalid answer and what is wrong with it appended to the
conversation) when it cannot be parsed, names an ID that is not a candidate, repeats or misses a candidate, or names
an unknown node; after `max_reprompts` invalid answers the node keeps the current list and the walk stops (counted
as a fallback).

Flags for the paper's ablations (Table 4): `pool=False` (-H, prompts without the pool), `fixed_path="accuracy,
accuracy"` (-AR, the path is fixed and the LLM's next node ignored), `other_nodes=False` (-N, Accuracy and Stop
only). Defaults: MC = 5 (the paper's analysis; the official code's default is 3), temperature 0 (zero-shot).
"""
from __future__ import annotations

import re

import torch

from contracts.batch import rerank as B
from contracts.registry import register_model, register_model_variant
from lightning_modules.rerank.llm_base import LLMReranker

ACCURACY, DIVERSITY, FAIRNESS, BACKWARD, STOP = "Accuracy", "Diversity", "Fairness", "Backward", "Stop"
NODES = (ACCURACY, DIVERSITY, FAIRNESS, BACKWARD, STOP)
ASPECTS = (ACCURACY, DIVERSITY, FAIRNESS)

# the Goal sentence of each named focus; any other text is used as the Goal itself
GOALS = {
    "all": "Overall performance: accuracy, diversity and fairness together.",
    "accuracy": "Mainly focus on accuracy: the items the user is most likely to watch next first.",
    "diversity": "Mainly focus on diversity: items of different genres near the top.",
    "fairness": "Mainly focus on fairness: similar average rankings for the two item categories.",
}


class InvalidAnswer(ValueError):
    """An LLM answer that does not follow the format; the message says what is wrong (it is sent back)."""


_LIST_AND_NODE = re.compile(r"\[([^\[\]]*)\]\s*;\s*[`'\"*]*([A-Za-z_]+)")
_TOKEN = re.compile(r"""^[`'"]?(-?\d+)[`'"]?$""")


def canonical_node(word: str, allowed: tuple[str, ...]) -> str:
    for node in allowed:
        if word.strip().lower() == node.lower():
            return node
    raise InvalidAnswer(f"'{word.strip()}' is not a node you may choose; the next node must be one of "
                        f"{', '.join(allowed)}")


def parse_rerank_answer(text: str, candidate_ids: list[int], allowed: tuple[str, ...]) -> tuple[list[int], str]:
    """(positions of the candidates in the answer's order, next node) from an answer `[id, id, ...]; next_node`.
    Accepted: any spacing and line breaks, commas or spaces between IDs, quoted IDs, a quoted or bold node name in
    any case, a trailing period, text before the list or after the node (the last `[...]; node` counts). Raises
    InvalidAnswer naming the problem otherwise."""
    matches = _LIST_AND_NODE.findall(text)
    if not matches:
        raise InvalidAnswer("the answer is not in the format [id, id, ...]; next_node")
    inside, word = matches[-1]
    tokens = [t for t in re.split(r"[,\s]+", inside.strip()) if t]
    ids = []
    for token in tokens:
        match = _TOKEN.match(token)
        if not match:
            raise InvalidAnswer(f"'{token}' in the list is not an item ID")
        ids.append(int(match.group(1)))
    position = {item: i for i, item in enumerate(candidate_ids)}
    strangers = [i for i in ids if i not in position]
    if strangers:
        raise InvalidAnswer(f"ID {strangers[0]} is not among the candidates")
    seen, repeated = set(), []
    for i in ids:
        (repeated.append(i) if i in seen else seen.add(i))
    if repeated:
        raise InvalidAnswer(f"ID {repeated[0]} appears more than once")
    missing = [i for i in candidate_ids if i not in seen]
    if missing:
        raise InvalidAnswer(f"the list must hold all {len(candidate_ids)} candidates; missing: "
                            f"{', '.join(map(str, missing))}")
    return [position[i] for i in ids], canonical_node(word, allowed)


def parse_next_node(text: str, allowed: tuple[str, ...]) -> str:
    """The next node from a Backward answer: the one allowed node name the answer holds (as a whole word, in any
    case); none, several different ones, or an unknown one alone is invalid."""
    words = re.findall(r"[A-Za-z_]+", text)
    named = {node for node in allowed for w in words if w.lower() == node.lower()}
    if len(named) == 1:
        return named.pop()
    if named:
        raise InvalidAnswer(f"the answer names several nodes ({', '.join(sorted(named))}); name exactly one")
    if len(words) == 1:
        canonical_node(words[0], allowed)  # raises, naming the allowed ones
    raise InvalidAnswer(f"the answer names no node; answer with exactly one of {', '.join(allowed)}")


@register_model("llm4rerank", family="rerank")
class LLM4Rerank(LLMReranker):
    def __init__(self, num_users: int, num_items: int, num_genres: int, num_candidates: int, history_len: int,
                 item_titles: list[str] | None = None, genre_names: list[str] | None = None,
                 group_names: list[str] | None = None, eval_k: int = 10, alpha: float = 0.5,
                 llm: str | None = None, llm_cache: str | None = None, llm_timeout: float = 60.0,
                 llm_retries: int = 2, llm_workers: int = 1, max_tokens: int = 256, temperature: float = 0.0,
                 history_max: int = 5, focus: str = "all", max_visits: int = 5, max_reprompts: int = 3,
                 pool: bool = True, other_nodes: bool = True, fixed_path: str = "",
                 item_kind: str = "movie"):
        super().__init__(num_users, num_items, num_genres, num_candidates, history_len, item_titles, genre_names,
                         group_names, eval_k, alpha, llm, llm_cache, llm_timeout, llm_retries, llm_workers,
                         max_tokens, temperature, history_max)
        if not focus.strip():
            raise ValueError("focus must be a named focus (all, accuracy, diversity, fairness) or a Goal sentence")
        if max_visits < 1 or max_reprompts < 0:
            raise ValueError(f"max_visits={max_visits} must be >= 1 and max_reprompts={max_reprompts} >= 0")
        path = [p.strip().capitalize() for p in fixed_path.split(",") if p.strip()]
        bad = [p for p in path if p not in ASPECTS]
        if bad:
            raise ValueError(f"fixed_path={fixed_path!r}: {bad[0]!r} is not an aspect node "
                             f"(comma-separated among {', '.join(a.lower() for a in ASPECTS)})")
        self.goal = GOALS.get(focus.strip().lower(), focus.strip())
        self.focus, self.max_visits, self.max_reprompts = focus, max_visits, max_reprompts
        self.use_pool, self.other_nodes, self.fixed_path, self.item_kind = pool, other_nodes, path, item_kind
        self.allowed = NODES if other_nodes else (ACCURACY, STOP)
        self.last_paths: list[list[str]] = []  # the walks of the last batch, for inspection and tests
        self.save_hyperparameters()

    # ----- prompts ---------------------------------------------------------------------------------------------------
    def instruction(self, node: str) -> str:
        groups = self.group_names or ["group 0", "group 1"]
        return {
            ACCURACY: f"Rerank the candidate {self.item_kind}s by the match between the user and the items: the ones "
                      f"the user is most likely to choose next first.",
            DIVERSITY: f"Rerank the candidate {self.item_kind}s so that more items with different genres are at the "
                       f"top.",
            FAIRNESS: f"Rerank the candidate {self.item_kind}s so that the average ranking of the two categories "
                      f"({groups[0]}; {groups[1]}) is similar.",
            BACKWARD: "The last reranking result was judged not good enough and has been removed from the history.",
        }[node]

    def node_menu(self) -> str:
        meaning = {ACCURACY: "rerank for the match between the user and the items",
                   DIVERSITY: "rerank for more different genres at the top",
                   FAIRNESS: "rerank so that the two item categories get similar average rankings",
                   BACKWARD: "the last reranking result is worse than the one before it: discard it and go back",
                   STOP: "the latest reranking result is good enough: stop and output it"}
        return "\n".join(f"- {node}: {meaning[node]}" for node in self.allowed)

    def context(self, batch: dict, row: int, ids: list[int], pool: list[tuple[str, list[int]]]) -> str:
        scores, genres, group = batch[B.SCORES][row], batch[B.GENRES][row], batch[B.GROUP][row]
        history = self.history_lines(batch, row)
        lines = [f"User: user {int(batch[B.USER][row])}.",
                 f"The user's last {len(history)} {self.item_kind}s, oldest first:" if history else
                 "The user's history is empty.", *history,
                 f"Candidate {self.item_kind}s ({len(ids)}), each with the upstream ranker's score for your "
                 f"reference:"]
        lines += [f"- ID {item}: {self.title(item)}; genre: {self.genres_text(genres[i])}; category: "
                  f"{self.group_text(int(group[i]))}; score: {float(scores[i]):.4f}" for i, item in enumerate(ids)]
        if self.use_pool:
            lines.append("Reranking history:" if pool else "Reranking history: none yet.")
            lines += [f"Focus: {node}. Reranking Result: [{', '.join(str(ids[p]) for p in order)}]"
                      for node, order in pool]
        return "\n".join(lines)

    def node_prompt(self, node: str, context: str, ids: list[int]) -> str:
        example = ", ".join(str(i) for i in sorted(ids)[:3])
        if node == BACKWARD:
            answer = (f"Answer with the name of the next node only, one of {', '.join(self.allowed)}; do not "
                      f"explain.")
        else:
            answer = (f"Answer strictly in the format [id, id, ...]; next_node: the IDs of all {len(ids)} "
                      f"candidates, each exactly once, best first, then the name of the next node. Example answer "
                      f"format for 3 candidates: [{example}]; {STOP}. Do not explain.")
        return (f"{context}\n\nCurrent node: {node}. {self.instruction(node)}\n"
                f"Nodes you may choose next:\n{self.node_menu()}\n"
                f"Goal: {self.goal}\n{answer}")

    # ----- one node --------------------------------------------------------------------------------------------------
    def ask_until_valid(self, prompt: str, parse, stats: dict):
        """Ask, re-prompting with the invalid answer and its problem up to `max_reprompts` times; None when every
        answer was invalid."""
        messages = [{"role": "user", "content": prompt}]
        for attempt in range(self.max_reprompts + 1):
            answer = self.ask(messages, stats)
            try:
                return parse(answer)
            except InvalidAnswer as problem:
                stats["invalid_answers"] += 1
                messages = messages + [{"role": "assistant", "content": answer},
                                       {"role": "user", "content": f"Your answer is invalid: {problem}. Answer "
                                                                   f"again, strictly in the required format."}]
        return None

    def rerank_list(self, batch: dict, row: int, stats: dict) -> list[int]:
        ids = batch[B.CANDIDATES][row].tolist()
        ranker_order = list(range(len(ids)))
        pool: list[tuple[str, list[int]]] = []
        planned = list(self.fixed_path)
        path, node, visits = [], planned.pop(0) if planned else ACCURACY, 0
        while node != STOP:
            if visits >= self.max_visits:  # the visit cap forces Stop
                break
            visits += 1
            path.append(node)
            prompt = self.node_prompt(node, self.context(batch, row, ids, pool), ids)
            if node == BACKWARD:
                if pool:
                    pool.pop()
                chosen = self.ask_until_valid(prompt, lambda a: parse_next_node(a, self.allowed), stats)
                if chosen is None:
                    stats["fallbacks"] += 1
                    break
                node = chosen
            else:
                answer = self.ask_until_valid(prompt, lambda a: parse_rerank_answer(a, ids, self.allowed), stats)
                if answer is None:  # keep the current list and stop
                    stats["fallbacks"] += 1
                    pool.append((node, pool[-1][1] if pool else ranker_order))
                    break
                order, node = answer
                pool.append((path[-1], order))
            if self.fixed_path:  # -AR: the path, not the LLM, picks the next node
                node = planned.pop(0) if planned else STOP
        path.append(STOP)
        stats["node_visits"] += visits
        self.last_paths.append(path)
        return pool[-1][1] if pool else ranker_order

    def rerank(self, batch: dict) -> torch.Tensor:
        self.last_paths = []
        return super().rerank(batch)


for _focus in ("accuracy", "diversity", "fairness"):
    register_model_variant(f"llm4rerank@{_focus}", LLM4Rerank,
                            f"LLM4Rerank-{_focus[0].upper()}: the Goal focuses on {_focus}", focus=_focus)

# Table 4's ablations, all with the accuracy Goal as in the paper's table
register_model_variant("llm4rerank@no_pool", LLM4Rerank, "LLM4Rerank-A without the historical pool (-H)",
                       focus="accuracy", pool=False)
register_model_variant("llm4rerank@fixed_path", LLM4Rerank, "LLM4Rerank-A on the fixed path Accuracy, Accuracy, Stop "
                       "(-AR: no automatic reranking)", focus="accuracy", fixed_path="accuracy,accuracy")
register_model_variant("llm4rerank@accuracy_only", LLM4Rerank, "LLM4Rerank-A with the Accuracy and Stop nodes only "
                       "(-N)", focus="accuracy", other_nodes=False)
