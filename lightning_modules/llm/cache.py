"""Answers of an LLM cached on disk, so that a board resumes (and reruns) without asking the model again.

One JSON file per answer, named by the sha256 of (model name, messages, max_tokens, temperature) and written
atomically (temp file, then one rename): a process killed mid-write leaves either the whole entry or none.
"""
from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

from contracts.atomic import atomic_write_bytes


def cache_key(name: str, messages: list[dict], max_tokens: int, temperature: float) -> str:
    payload = json.dumps({"model": name, "messages": messages, "max_tokens": int(max_tokens),
                          "temperature": float(temperature)}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


class CachedClient:
    """The `LLMClient` interface over another client, answering from `cache_dir` when it can. `hits` and `misses`
    count answers taken from the cache and answers asked of the model."""

    def __init__(self, client, cache_dir: str | Path):
        self.client = client
        self.name = client.name
        self.cache_dir = Path(cache_dir).expanduser()
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()  # counters stay exact when threads share the client

    def __repr__(self) -> str:
        return f"CachedClient({self.client!r}, {str(self.cache_dir)!r})"

    def path(self, key: str) -> Path:
        return self.cache_dir / key[:2] / f"{key}.json"

    def lookup(self, messages: list[dict], *, max_tokens: int = 256, temperature: float = 0.0) -> str | None:
        """The cached answer, or None (an unreadable entry counts as absent and is rewritten on the next answer)."""
        try:
            entry = json.loads(self.path(cache_key(self.name, messages, max_tokens, temperature)).read_text())
            return entry["answer"] if isinstance(entry.get("answer"), str) else None
        except (OSError, ValueError, AttributeError):
            return None

    def complete(self, messages: list[dict], *, max_tokens: int = 256, temperature: float = 0.0) -> str:
        answer = self.lookup(messages, max_tokens=max_tokens, temperature=temperature)
        if answer is not None:
            with self._lock:
                self.hits += 1
            return answer
        answer = self.client.complete(messages, max_tokens=max_tokens, temperature=temperature)
        with self._lock:
            self.misses += 1
        entry = {"model": self.name, "max_tokens": int(max_tokens), "temperature": float(temperature),
                 "messages": messages, "answer": answer}
        key = cache_key(self.name, messages, max_tokens, temperature)
        atomic_write_bytes(self.path(key), json.dumps(entry, ensure_ascii=False).encode())
        return answer

    def __len__(self) -> int:
        """Entries on disk."""
        return sum(1 for _ in self.cache_dir.glob("??/*.json")) if self.cache_dir.exists() else 0
