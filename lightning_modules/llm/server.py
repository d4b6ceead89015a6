"""A small OpenAI-compatible chat server (standard library `http.server`) in front of a local Hugging Face causal LM.

It serves `GET /v1/models`, `POST /v1/chat/completions` (non-streaming) and `GET /health`, which is what
paperboard's `OpenAIClient` speaks, so tests run the real prompt -> HTTP -> parse path against it. For real work
serve the model with vLLM, the llama.cpp server or Ollama instead; this one answers one request at a time.

    python -m lightning_modules.llm.server --model hf:/path/to/model [--port 8000] [--name NAME]
    python lightning_modules/llm/server.py ...   (the same, without importing every model family first)

Fault injection for tests: `--delay S` waits S seconds before each answer (client timeouts), `--fail-first N`
answers HTTP 503 to the first N completion requests (client retries); `POST /_faults {"delay": S, "fail_next": N}`
changes both while it runs.
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def make_handler(client, model_id: str, delay: float, fail_first: int):
    lock = threading.Lock()  # one generation at a time
    state = {"failures_left": int(fail_first), "delay": float(delay), "served": 0}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format, *args):  # quiet: tests read stdout for the address only
            pass

        def send_json(self, code: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def error(self, code: int, message: str) -> None:
            self.send_json(code, {"error": {"message": message, "type": "invalid_request_error", "code": code}})

        def do_GET(self):
            if self.path.rstrip("/") in ("/v1/models", "/models"):
                self.send_json(200, {"object": "list", "data": [{"id": model_id, "object": "model",
                                                                 "owned_by": "paperboard"}]})
            elif self.path.rstrip("/") == "/health":
                self.send_json(200, {"status": "ok", "served": state["served"]})
            else:
                self.error(404, f"no route {self.path}")

        def do_POST(self):
            if self.path.rstrip("/") == "/_faults":
                try:
                    faults = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                    with lock:
                        state["delay"] = float(faults.get("delay", state["delay"]))
                        state["failures_left"] = int(faults.get("fail_next", state["failures_left"]))
                except (ValueError, TypeError, AttributeError) as err:
                    self.error(400, f"bad faults body: {err}")
                    return
                self.send_json(200, {"delay": state["delay"], "fail_next": state["failures_left"]})
                return
            if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
                self.error(404, f"no route {self.path}")
                return
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                messages = body["messages"]
                max_tokens = int(body.get("max_tokens") or body.get("max_completion_tokens") or 256)
                temperature = float(body.get("temperature", 1.0))
            except (ValueError, KeyError, TypeError) as err:
                self.error(400, f"bad request body: {type(err).__name__}: {err}")
                return
            if body.get("model") not in (None, model_id):
                self.error(404, f"The model `{body.get('model')}` does not exist; this server serves `{model_id}`.")
                return
            with lock:
                if state["failures_left"] > 0:
                    state["failures_left"] -= 1
                    self.error(503, "injected failure (--fail-first)")
                    return
                if state["delay"]:
                    time.sleep(state["delay"])
                try:
                    content = client.complete(messages, max_tokens=max_tokens, temperature=temperature)
                except ValueError as err:
                    self.error(400, str(err))
                    return
                state["served"] += 1
            self.send_json(200, {
                "id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion", "created": int(time.time()),
                "model": model_id,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                             "finish_reason": "length"}],
            })

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="hf:/path/to/model")
    parser.add_argument("--tiny", type=int, default=None, metavar="SEED",
                        help="serve a tiny random model built from a config with this seed (tests)")
    parser.add_argument("--tiny-dir", default=None, help="where --tiny saves its model (default: a temp folder)")
    parser.add_argument("--name", default=None, help="model id the server reports (default: the folder name)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds to wait before each answer")
    parser.add_argument("--fail-first", type=int, default=0, help="answer 503 to this many first completions")
    args = parser.parse_args(argv)
    if not __package__:  # run as a file (as tests do): import this package without every model family's registration
        import types

        root = Path(__file__).resolve().parents[2]
        sys.path.insert(1, str(root))
        shell = types.ModuleType("lightning_modules")
        shell.__path__ = [str(root / "lightning_modules")]
        sys.modules.setdefault("lightning_modules", shell)
    from lightning_modules.llm.client import HFClient
    from lightning_modules.llm.testing import build_tiny_model
    if args.tiny is not None:
        import tempfile

        folder = args.tiny_dir or tempfile.mkdtemp(prefix="paperboard-tiny-llm-")
        args.model = f"hf:{build_tiny_model(folder, seed=args.tiny)}"
    if not (args.model or "").startswith("hf:"):
        parser.error(f"--model must be hf:/path/to/model (or use --tiny SEED), got {args.model!r}")

    client = HFClient(args.model[3:])
    model_id = args.name or (f"tiny-random-llama-s{args.tiny}" if args.tiny is not None else client.path.name)
    server = ThreadingHTTPServer((args.host, args.port), make_handler(client, model_id, args.delay, args.fail_first))
    host, port = server.server_address[:2]
    print(f"serving http://{host}:{port}/v1 model={model_id}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
