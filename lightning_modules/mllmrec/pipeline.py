"""MLLM-MSR's summarisation stages with a pluggable LLM/MLLM (any object with the LLM client interface: `name` and
`complete(messages, max_tokens=, temperature=)`, OpenAI chat messages; see `lightning_modules.llm`).

1. `ItemSummariser` (paper Sec. 3.2; official `image_summary.py`): one paragraph describing the item from its image
   (an `image_url` part, when an image file exists for it) and its text. Offline there are no images: the prompt
   then carries the text alone, and the summary is the model's paraphrase of it.
2. `RecurrentPreferenceSummariser` (Sec. 3.3; official `preferece_inference_recurrent.py`): the history in blocks
   of `block_size` (3) items, oldest first; each prompt lists the block's items (title + item summary) and the
   previous preference summary, and the model writes the new one ("The user appears to have a preference for...").
   `DirectPreferenceSummariser` is the MLLM-MSR_R ablation (`preferece_inference_direct.py`): one prompt, whole
   history.

Every model call goes through `SummaryCache`: one JSON file per call, named by the sha256 of (model name, messages,
max_tokens, temperature), written atomically (temp file + rename). A run killed midway loses at most the call in
flight; the next run finds every finished call on disk and continues from there. The paper samples summaries at
temperature 0.6; the default here is 0 (greedy), so that a cache rebuilt elsewhere holds the same text (flag
`temperature`).
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Protocol, Sequence

from contracts.atomic import atomic_write_bytes

ITEM_PROMPT = ("Here is an item a user may interact with. Describe it in one detailed paragraph: what it is, its "
               "content and style, and who would like it.\nItem: {text}")
RECURRENT_PROMPT = ("We know this user's previous preference: {previous}\nThe user then interacted with these items, "
                    "in this order:\n{items}\nWrite the user's updated preference in one paragraph, starting with "
                    "\"The user appears to have a preference for\".")
FIRST_PROMPT = ("A user interacted with these items, in this order:\n{items}\nSummarise the user's preference in one "
                "paragraph, starting with \"The user appears to have a preference for\".")
DIRECT_PROMPT = FIRST_PROMPT
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


class ChatClient(Protocol):
    name: str

    def complete(self, messages: list[dict], *, max_tokens: int = 256, temperature: float = 0.0) -> str: ...


class SummaryCache:
    """Model answers on disk by the hash of the request; `hits` and `misses` count this process's lookups."""

    def __init__(self, client: ChatClient, cache_dir: str | os.PathLike):
        self.client, self.dir = client, Path(cache_dir)
        self.hits = self.misses = 0

    def key(self, messages: list[dict], max_tokens: int, temperature: float) -> str:
        request = json.dumps([self.client.name, messages, max_tokens, temperature], sort_keys=True)
        return hashlib.sha256(request.encode()).hexdigest()

    def path(self, key: str) -> Path:
        return self.dir / key[:2] / f"{key}.json"

    def complete(self, messages: list[dict], *, max_tokens: int = 256, temperature: float = 0.0) -> str:
        path = self.path(self.key(messages, max_tokens, temperature))
        if path.exists():
            try:
                answer = json.loads(path.read_text())["answer"]
                self.hits += 1
                return answer
            except (ValueError, KeyError):  # unreadable: ask again and overwrite
                pass
        self.misses += 1
        answer = self.client.complete(messages, max_tokens=max_tokens, temperature=temperature)
        atomic_write_bytes(path, json.dumps({"model": self.client.name, "answer": answer}).encode())
        return answer

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.dir.rglob("*.json")) if self.dir.exists() else 0


def user_message(text: str, image: Path | None = None) -> list[dict]:
    """One user turn: the text, preceded by the image as a data URL when there is one."""
    if image is None:
        return [{"role": "user", "content": text}]
    kind = "png" if image.suffix.lower() == ".png" else "jpeg"
    url = f"data:image/{kind};base64,{base64.b64encode(image.read_bytes()).decode()}"
    return [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                         {"type": "text", "text": text}]}]


class ItemSummariser:
    """Sec. 3.2: item id -> summary text (200 new tokens as in the official script). `image_dir` holds
    `<item id>.jpg|.jpeg|.png` where images exist."""

    def __init__(self, cache: SummaryCache, texts: Sequence[str], image_dir: str | os.PathLike | None = None,
                 max_tokens: int = 200, temperature: float = 0.0):
        self.cache, self.texts = cache, texts
        self.image_dir = Path(image_dir) if image_dir else None
        self.max_tokens, self.temperature = max_tokens, temperature

    def image(self, item: int) -> Path | None:
        if self.image_dir is None:
            return None
        for suffix in IMAGE_SUFFIXES:
            path = self.image_dir / f"{item}{suffix}"
            if path.exists():
                return path
        return None

    def __call__(self, item: int) -> str:
        messages = user_message(ITEM_PROMPT.format(text=self.texts[item]), self.image(item))
        return self.cache.complete(messages, max_tokens=self.max_tokens, temperature=self.temperature)

    def describe(self, item: int) -> str:
        """How the item appears in a preference prompt: its text, then its summary."""
        return f"{self.texts[item]} -- {self(item)}"


class RecurrentPreferenceSummariser:
    """Sec. 3.3: preference after each block of `block_size` items, oldest first; returns the last one."""

    def __init__(self, cache: SummaryCache, items: ItemSummariser, block_size: int = 3, max_tokens: int = 256,
                 temperature: float = 0.0):
        if block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {block_size}")
        self.cache, self.items, self.block_size = cache, items, block_size
        self.max_tokens, self.temperature = max_tokens, temperature

    def blocks(self, history: Sequence[int]) -> list[list[int]]:
        return [list(history[i:i + self.block_size]) for i in range(0, len(history), self.block_size)]

    def __call__(self, history: Sequence[int]) -> str:
        summary = ""
        for block in self.blocks(history):
            listed = "\n".join(f"- {self.items.describe(i)}" for i in block)
            prompt = (RECURRENT_PROMPT.format(previous=summary, items=listed) if summary
                      else FIRST_PROMPT.format(items=listed))
            summary = self.cache.complete(user_message(prompt), max_tokens=self.max_tokens,
                                          temperature=self.temperature)
        return summary


class DirectPreferenceSummariser(RecurrentPreferenceSummariser):
    """MLLM-MSR_R: the whole history in one prompt (one block as long as the history)."""

    def blocks(self, history: Sequence[int]) -> list[list[int]]:
        return [list(history)] if len(history) else []
