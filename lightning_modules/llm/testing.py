"""A tiny, randomly initialised Hugging Face causal LM served over real HTTP, for tests of every family that calls
an LLM: no weights are downloaded (the model is built from a config: 2 layers, hidden size 32, a byte-level
vocabulary of 259 tokens), and its answers are nonsense by design, so tests check the protocol, never quality.

    with serve_tiny_model() as spec:       # "http://127.0.0.1:PORT/v1#model=tiny-random-llama-s0"
        client = make_client(spec)
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[2]
SPECIAL_TOKENS = ("<|bos|>", "<|eos|>", "<|pad|>")
CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")


def build_tiny_model(path: str | Path, *, seed: int = 0, layers: int = 2, hidden: int = 32, heads: int = 4,
                     max_positions: int = 32768, initializer_range: float = 1.0) -> Path:
    """Save a random Llama-architecture model with a byte-level tokenizer (256 bytes + 3 specials) and a chat
    template under `path`; the same seed gives the same weights. Weights are drawn wide (`initializer_range`) so that
    greedy answers vary with the prompt instead of repeating one token."""
    import torch
    from tokenizers import Tokenizer, decoders, models
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    path = Path(path)
    vocab = {c: i for i, c in enumerate(sorted(ByteLevel.alphabet()))}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(list(SPECIAL_TOKENS))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=SPECIAL_TOKENS[0],
                                        eos_token=SPECIAL_TOKENS[1], pad_token=SPECIAL_TOKENS[2])
    tokenizer.chat_template = CHAT_TEMPLATE
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=max(1, heads // 2),
                         max_position_embeddings=max_positions, tie_word_embeddings=True,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, initializer_range=initializer_range)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).eval()
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


class ServedModel(str):
    """The client spec of a served model (`http://127.0.0.1:PORT/v1#model=NAME`), with its server process."""

    process: subprocess.Popen
    base_url: str
    model: str

    def __reduce__(self):  # copies and pickles (a model's saved hyperparameters) are the plain spec
        return (str, (str(self),))

    def set_faults(self, *, delay: float = 0.0, fail_next: int = 0) -> None:
        """From now on wait `delay` seconds before each answer, and answer HTTP 503 to the next `fail_next`."""
        import json
        import urllib.request

        body = json.dumps({"delay": delay, "fail_next": fail_next}).encode()
        root = self.base_url.rsplit("/v1", 1)[0]
        with urllib.request.urlopen(urllib.request.Request(f"{root}/_faults", data=body, method="POST"), timeout=30):
            pass

    def kill(self) -> None:
        """Kill the server at once (SIGKILL), as a crash would."""
        self.process.kill()
        self.process.wait(timeout=30)


@contextmanager
def serve_tiny_model(port: int = 0, *, seed: int = 0, delay: float = 0.0, fail_first: int = 0,
                     start_timeout: float = 120.0) -> Iterator[ServedModel]:
    """Start `lightning_modules.llm.server` in a subprocess on 127.0.0.1 in front of a freshly built tiny model;
    yield its spec; stop it on exit. `delay` and `fail_first` inject slowness and HTTP 503s."""
    name = f"tiny-random-llama-s{seed}"
    with tempfile.TemporaryDirectory(prefix="paperboard-tiny-llm-") as folder:
        command = [sys.executable, str(Path(__file__).with_name("server.py")), "--tiny", str(seed),
                   "--tiny-dir", folder, "--name", name, "--port", str(port), "--delay", str(delay),
                   "--fail-first", str(fail_first)]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True)
        try:
            first = _read_line(process, start_timeout)
            if not first.startswith("serving "):
                process.kill()
                raise RuntimeError(f"the tiny LLM server did not start: {first!r}\n{process.stderr.read()[-3000:]}")
            base_url = first.split()[1]
            served = ServedModel(f"{base_url}#model={name}")
            served.process, served.base_url, served.model = process, base_url, name
            yield served
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            for stream in (process.stdout, process.stderr):
                stream.close()


_SHARED: dict[int, tuple] = {}


def shared_tiny_model(seed: int = 0) -> ServedModel:
    """One tiny server per seed for the whole test process (its start costs several CPU-seconds of imports),
    stopped when the process exits. Tests that change its faults reset them."""
    import atexit

    if seed not in _SHARED or _SHARED[seed][1].process.poll() is not None:
        context = serve_tiny_model(seed=seed)
        served = context.__enter__()
        _SHARED[seed] = (context, served)
        atexit.register(context.__exit__, None, None, None)
    return _SHARED[seed][1]


def _read_line(process: subprocess.Popen, timeout: float) -> str:
    """The server's first stdout line, or '' when it exits or stays silent for `timeout` seconds."""
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(process.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return line[0].strip() if line else ""
