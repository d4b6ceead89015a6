"""The shared LLM client against a real OpenAI-compatible server (a tiny random model on loopback): specs, errors
that say how to configure a model, the HTTP round trip, retries, timeouts, a dead server, and the disk cache."""
from __future__ import annotations

import json
import socket
import time

import pytest

from lightning_modules.llm import (CachedClient, LLMError, LLMUnavailable, OpenAIClient, cache_key, make_client)
from lightning_modules.llm.testing import shared_tiny_model

# one test worker starts the tiny server (several CPU-seconds of imports) and every test that talks to it runs there
pytestmark = pytest.mark.xdist_group("tiny-llm-server")

CHAT = [{"role": "system", "content": "You rank movies."}, {"role": "user", "content": "Rank [1, 2, 3]."}]


@pytest.fixture(scope="module")
def served():
    server = shared_tiny_model()
    server.set_faults()
    yield server
    server.set_faults()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_no_model_configured_says_how(monkeypatch):
    monkeypatch.delenv("PAPERBOARD_LLM", raising=False)
    for spec in (None, ""):
        with pytest.raises(LLMUnavailable, match=r"--llm.*PAPERBOARD_LLM.*hf:.*http://"):
            make_client(spec)
    monkeypatch.setenv("PAPERBOARD_LLM", "http://127.0.0.1:9/v1#model=m")
    assert make_client(None).name == "openai:m"


def test_bad_specs_fail_clearly(tmp_path):
    with pytest.raises(ValueError, match="neither `hf:PATH` nor an http"):
        make_client("llama-2-13b")
    with pytest.raises(ValueError, match=r"unknown option.*'temp'"):
        make_client("http://127.0.0.1:8000/v1#temp=1")
    with pytest.raises(LLMUnavailable, match="no Hugging Face model at"):
        make_client(f"hf:{tmp_path / 'missing'}")
    with pytest.raises(ValueError, match="role"):
        OpenAIClient("http://127.0.0.1:9/v1", "m").complete([{"role": "robot", "content": "x"}])
    with pytest.raises(ValueError, match="image_url"):
        OpenAIClient("http://127.0.0.1:9/v1", "m").complete([{"role": "user", "content": [{"type": "audio"}]}])


def test_round_trip_is_deterministic_at_temperature_zero(served):
    client = make_client(served)
    assert client.name == f"openai:{served.model}"
    first = client.complete(CHAT, max_tokens=24)
    assert isinstance(first, str) and first == client.complete(CHAT, max_tokens=24)
    other = client.complete([*CHAT[:1], {"role": "user", "content": "Rank [3, 2, 1]."}], max_tokens=24)
    assert other != first  # the random model's answer depends on the prompt
    # text and image parts travel; the text-only model reads the image as a placeholder
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    parts = [{"role": "user", "content": [{"type": "text", "text": "Which poster? "}, image]}]
    assert isinstance(client.complete(parts, max_tokens=8), str)


def test_model_found_from_the_server_list_and_a_wrong_name_refused(served):
    client = make_client(served.base_url)
    assert client.complete(CHAT, max_tokens=4) == make_client(served).complete(CHAT, max_tokens=4)
    assert client.model == served.model
    with pytest.raises(LLMError, match="HTTP 404.*does not exist"):
        make_client(f"{served.base_url}#model=llama-2-13b").complete(CHAT, max_tokens=4)


def test_retries_after_server_errors_then_gives_up(served):
    client = OpenAIClient(served.base_url, served.model, max_retries=2, backoff=0.01)
    served.set_faults(fail_next=2)
    assert isinstance(client.complete(CHAT, max_tokens=4), str)
    assert client.requests == 3  # two 503s, then the answer
    served.set_faults(fail_next=3)
    client = OpenAIClient(served.base_url, served.model, max_retries=1, backoff=0.01)
    with pytest.raises(LLMUnavailable, match=r"after 2 tries.*HTTP 503"):
        client.complete(CHAT, max_tokens=4)
    served.set_faults()


def test_timeout_raises_unavailable_in_time(served):
    served.set_faults(delay=1.0)
    client = OpenAIClient(served.base_url, served.model, timeout=0.3, max_retries=0)
    start = time.perf_counter()
    with pytest.raises(LLMUnavailable, match=r"timeout 0.3s"):
        client.complete(CHAT, max_tokens=4)
    assert time.perf_counter() - start < 0.9
    served.set_faults()


def test_dead_server_is_unavailable_after_retries():
    client = make_client(f"http://127.0.0.1:{free_port()}/v1#model=m", timeout=2, max_retries=1)
    with pytest.raises(LLMUnavailable, match=r"did not answer.*after 2 tries.*Is it running"):
        client.complete(CHAT)
    assert client.requests == 2


def test_cache_answers_from_disk_and_keys_on_every_input(served, tmp_path):
    cached = CachedClient(make_client(served), tmp_path)
    answer = cached.complete(CHAT, max_tokens=16)
    assert (cached.hits, cached.misses, len(cached)) == (0, 1, 1)
    assert cached.complete(CHAT, max_tokens=16) == answer and (cached.hits, cached.misses) == (1, 1)
    entry = json.loads(cached.path(cache_key(cached.name, CHAT, 16, 0.0)).read_text())
    assert entry["answer"] == answer and entry["messages"] == CHAT and entry["model"] == cached.name
    keys = {cache_key(cached.name, CHAT, 16, 0.0), cache_key(cached.name, CHAT, 17, 0.0),
            cache_key(cached.name, CHAT, 16, 0.5), cache_key("openai:other", CHAT, 16, 0.0),
            cache_key(cached.name, CHAT[:1], 16, 0.0)}
    assert len(keys) == 5
    # a fresh client on a dead address answers every cached prompt and no other
    offline = CachedClient(make_client(f"http://127.0.0.1:{free_port()}/v1#model={served.model}", max_retries=0),
                           tmp_path)
    assert offline.complete(CHAT, max_tokens=16) == answer and offline.hits == 1
    with pytest.raises(LLMUnavailable):
        offline.complete(CHAT, max_tokens=17)
    assert len(offline) == 1 and offline.misses == 0
    # an unreadable entry counts as absent and is rewritten whole
    cached.path(cache_key(cached.name, CHAT, 16, 0.0)).write_text('{"answer": ')
    assert cached.complete(CHAT, max_tokens=16) == answer and cached.misses == 2
    assert json.loads(cached.path(cache_key(cached.name, CHAT, 16, 0.0)).read_text())["answer"] == answer
    assert not list(tmp_path.rglob(".*.tmp"))  # no temp file left behind


def test_hf_client_reads_the_model_folder_directly(tmp_path):
    pytest.importorskip("transformers")
    from lightning_modules.llm.testing import build_tiny_model

    build_tiny_model(tmp_path / "tiny", seed=3)
    client = make_client(f"hf:{tmp_path / 'tiny'}")
    assert client.name == f"hf:{(tmp_path / 'tiny').resolve()}"
    answer = client.complete(CHAT, max_tokens=12)
    assert answer == client.complete(CHAT, max_tokens=12)
    assert len(answer.encode("utf-8", "replace")) <= 4 * 12  # at most max_tokens byte tokens


def test_client_imports_without_the_llm_extra(tmp_path):
    """The client module needs only the standard library until an `hf:` model is asked for."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = """
import importlib.abc, importlib.util, sys
class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("transformers", "tokenizers", "torch"):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked here)", name=name)
sys.meta_path.insert(0, NotInstalled())
spec = importlib.util.spec_from_file_location("client", sys.argv[1])
client = importlib.util.module_from_spec(spec)
spec.loader.exec_module(client)
try:
    client.make_client("hf:" + sys.argv[2])
except client.LLMUnavailable as err:
    assert "pip install" in str(err), err
else:
    raise AssertionError("an hf: model without transformers must be unavailable")
"""
    root = Path(__file__).resolve().parents[1]
    (tmp_path / "config.json").write_text("{}")
    done = subprocess.run([sys.executable, "-c", script, str(root / "lightning_modules/llm/client.py"), str(tmp_path)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(root)})
    assert done.returncode == 0, done.stderr[-2000:]
