"""LLM clients behind one small interface: `complete(messages) -> str` over OpenAI chat messages.

Two backends: a local Hugging Face causal LM (`hf:PATH`) and any OpenAI-compatible `/chat/completions` endpoint
(`http://host:port/v1`, as vLLM, the llama.cpp server and Ollama serve). Nothing heavy is imported here:
transformers is imported only when an `hf:` client is built, and HTTP goes through the standard library.
"""
from __future__ import annotations

import http.client
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from pathlib import Path
from typing import Protocol, runtime_checkable

from contracts.run import RunNeedsLLM

ENV_VAR = "PAPERBOARD_LLM"
API_KEY_ENV_VARS = ("PAPERBOARD_LLM_API_KEY", "OPENAI_API_KEY")
HOW_TO_CONFIGURE = (
    "Point paperboard at a model with the board argument `--llm SPEC`, the model argument `llm`, or the environment "
    f"variable {ENV_VAR}; SPEC is `hf:/path/to/model` (a local Hugging Face causal LM, needs the `llm` extra) or "
    "`http://127.0.0.1:8000/v1#model=NAME` (an OpenAI-compatible server: vLLM, llama.cpp server, Ollama)."
)


class LLMUnavailable(RunNeedsLLM):
    """No model is configured, or the configured one cannot be reached; the message says how to configure one.
    The runner records a run that raises it with status `needs_llm`, not as failed."""


class LLMError(RuntimeError):
    """The model was reached but refused the request (an HTTP 4xx, a malformed reply): a real failure."""


@runtime_checkable
class LLMClient(Protocol):
    name: str  # identifies the model (not where it is served) in cache keys

    def complete(self, messages: list[dict], *, max_tokens: int = 256, temperature: float = 0.0) -> str: ...


def check_messages(messages: list[dict]) -> None:
    """One clear error for a malformed chat: a list of {"role", "content"} with str or text/image_url parts."""
    if not isinstance(messages, list) or not messages:
        raise ValueError("messages must be a non-empty list of {'role': ..., 'content': ...} dicts "
                         "(OpenAI chat format)")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("system", "user", "assistant"):
            raise ValueError(f"messages[{i}] needs a role of system, user or assistant, got {message!r:.80}")
        content = message.get("content")
        if isinstance(content, str):
            continue
        if not isinstance(content, list):
            raise ValueError(f"messages[{i}]['content'] must be a str or a list of parts, got {type(content).__name__}")
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text" and isinstance(part.get("text"), str):
                continue
            if kind == "image_url" and isinstance(part.get("image_url", {}).get("url"), str):
                continue
            raise ValueError(f"messages[{i}] has a part that is neither {{'type': 'text', 'text': str}} nor "
                             f"{{'type': 'image_url', 'image_url': {{'url': str}}}}: {part!r:.80}")


def text_of(content, image_token: str = "<image>") -> tuple[str, int]:
    """The text of a message's content, each image replaced by `image_token`; also the number of images replaced."""
    if isinstance(content, str):
        return content, 0
    texts, images = [], 0
    for part in content:
        if part["type"] == "text":
            texts.append(part["text"])
        else:
            texts.append(image_token)
            images += 1
    return "".join(texts), images


class OpenAIClient:
    """An OpenAI-compatible chat endpoint. Transport failures (refused, timed out, 5xx) are retried `max_retries`
    times with a doubling back-off, then raise `LLMUnavailable`; a 4xx raises `LLMError` at once."""

    def __init__(self, base_url: str, model: str | None = None, *, timeout: float = 60.0, max_retries: int = 2,
                 api_key: str | None = None, backoff: float = 0.5):
        if timeout <= 0 or max_retries < 0:
            raise ValueError(f"timeout must be > 0 and max_retries >= 0, got {timeout} and {max_retries}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.timeout, self.max_retries, self.backoff = float(timeout), int(max_retries), float(backoff)
        self.api_key = api_key if api_key is not None else next(
            (os.environ[v] for v in API_KEY_ENV_VARS if os.environ.get(v)), None)
        # the model, not the address, names the answers: the same model served on another port hits the same cache
        self.name = f"openai:{model}" if model else f"openai:{self.base_url}"
        self.requests = 0  # HTTP requests sent, retries included

    def __repr__(self) -> str:
        return f"OpenAIClient({self.base_url!r}, model={self.model!r})"

    def _request(self, method: str, path: str, body: dict | None = None) -> dict:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        data = None if body is None else json.dumps(body).encode()
        last = None
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            self.requests += 1
            request = urllib.request.Request(self.base_url + path, data=data, headers=headers, method=method)
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return json.loads(response.read().decode())
            except urllib.error.HTTPError as err:
                detail = err.read().decode(errors="replace")[:500]
                if err.code < 500:
                    raise LLMError(f"{self.base_url}{path} answered HTTP {err.code}: {detail}") from None
                last = f"HTTP {err.code}: {detail}"
            except (urllib.error.URLError, http.client.HTTPException, OSError) as err:  # refused, reset, timed out
                reason = getattr(err, "reason", err)
                last = f"{type(reason).__name__}: {reason}"
            except json.JSONDecodeError as err:
                raise LLMError(f"{self.base_url}{path} answered something that is not JSON: {err}") from None
        raise LLMUnavailable(f"the LLM server at {self.base_url} did not answer {path} after {self.max_retries + 1} "
                             f"tries (timeout {self.timeout:g}s): {last}. Is it running? {HOW_TO_CONFIGURE}")

    def _model_id(self) -> str:
        if self.model is None:  # the first model the server lists (vLLM and llama.cpp serve one)
            listed = self._request("GET", "/models").get("data") or []
            if not listed:
                raise LLMError(f"{self.base_url}/models lists no model; name one with `{self.base_url}#model=NAME`")
            self.model = listed[0]["id"]
        return self.model

    def complete(self, messages: list[dict], *, max_tokens: int = 256, temperature: float = 0.0) -> str:
        check_messages(messages)
        body = {"model": self._model_id(), "messages": messages, "max_tokens": int(max_tokens),
                "temperature": float(temperature)}
        reply = self._request("POST", "/chat/completions", body)
        try:
            content = reply["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise LLMError(f"{self.base_url}/chat/completions answered without choices[0].message.content: "
                           f"{json.dumps(reply)[:300]}") from None
        return content or ""


class HFClient:
    """A local Hugging Face causal LM: the tokenizer's chat template when it has one, else the messages joined as
    `role: text` lines. A text-only model sees each image part as the text `<image>` (counted in `images_dropped`).
    Greedy decoding at temperature 0, sampling otherwise."""

    def __init__(self, path: str | Path, *, device: str | None = None, dtype: str = "auto"):
        path = Path(path).expanduser()
        if not (path / "config.json").exists():
            raise LLMUnavailable(f"no Hugging Face model at {path} (expected {path / 'config.json'}). "
                                 f"{HOW_TO_CONFIGURE}")
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as err:
            raise LLMUnavailable(f"`hf:` models need transformers ({err}); pip install -e '.[llm]'. "
                                 f"{HOW_TO_CONFIGURE}") from None
        self._torch = torch
        self.path = path.resolve()
        self.name = f"hf:{self.path}"
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        self.model = AutoModelForCausalLM.from_pretrained(self.path, dtype=dtype).to(self.device).eval()
        self.images_dropped = 0

    def __repr__(self) -> str:
        return f"HFClient({str(self.path)!r})"

    def prompt_ids(self, messages: list[dict]):
        chat = []
        for message in messages:
            text, images = text_of(message["content"])
            self.images_dropped += images
            chat.append({"role": message["role"], "content": text})
        if getattr(self.tokenizer, "chat_template", None):
            ids = self.tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=True,
                                                     return_dict=True, return_tensors="pt")["input_ids"]
        else:
            text = "".join(f"{m['role']}: {m['content']}\n" for m in chat) + "assistant:"
            ids = self.tokenizer(text, return_tensors="pt")["input_ids"]
        return ids.to(self.device)

    def complete(self, messages: list[dict], *, max_tokens: int = 256, temperature: float = 0.0) -> str:
        check_messages(messages)
        ids = self.prompt_ids(messages)
        sampling = {"do_sample": True, "temperature": float(temperature)} if temperature > 0 else {"do_sample": False}
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        with self._torch.inference_mode(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*generation flags are not valid.*")
            out = self.model.generate(ids, attention_mask=self._torch.ones_like(ids), max_new_tokens=int(max_tokens),
                                      pad_token_id=pad, **sampling)
        return self.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)


def make_client(spec: str | None, *, timeout: float = 60.0, max_retries: int = 2) -> LLMClient:
    """A client from a spec: `hf:PATH`, `http(s)://host:port/v1[#model=NAME]`; None or "" reads $PAPERBOARD_LLM;
    with neither, `LLMUnavailable` saying how to configure one."""
    spec = (spec or os.environ.get(ENV_VAR, "")).strip()
    if not spec:
        raise LLMUnavailable(f"no LLM is configured. {HOW_TO_CONFIGURE}")
    if spec.startswith("hf:"):
        return HFClient(spec[3:])
    if spec.startswith(("http://", "https://")):
        url, _, fragment = spec.partition("#")
        options = dict(urllib.parse.parse_qsl(fragment))
        unknown = set(options) - {"model"}
        if unknown:
            raise ValueError(f"unknown option(s) {sorted(unknown)} after '#' in LLM spec {spec!r}; only model=NAME")
        return OpenAIClient(url, options.get("model"), timeout=timeout, max_retries=max_retries)
    raise ValueError(f"LLM spec {spec!r} is neither `hf:PATH` nor an http(s):// URL. {HOW_TO_CONFIGURE}")
