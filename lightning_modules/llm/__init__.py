"""The LLM client every family that prompts a language model shares: `make_client(spec)` for a local Hugging Face
causal LM (`hf:PATH`) or an OpenAI-compatible server (`http://host:port/v1#model=NAME`), `CachedClient` to keep
answers on disk, and `LLMUnavailable` when no model is configured or reachable (the runner records such a run as
`needs_llm`). `lightning_modules.llm.testing.serve_tiny_model` serves a tiny random model for tests."""
from lightning_modules.llm.cache import CachedClient, cache_key
from lightning_modules.llm.client import (ENV_VAR, HOW_TO_CONFIGURE, HFClient, LLMClient, LLMError, LLMUnavailable,
                                          OpenAIClient, make_client)

__all__ = ["CachedClient", "ENV_VAR", "HFClient", "HOW_TO_CONFIGURE", "LLMClient", "LLMError", "LLMUnavailable",
           "OpenAIClient", "cache_key", "make_client"]
