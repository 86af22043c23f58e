"""eval.backend: openai against a local OpenAI-compatible server: same prompts, same scoring,
retries, one clear error for an unreachable server, resume from partial samples."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pbb import data
from pbb.config import load_config
from pbb.errors import PbbError
from pbb.evaluation.evaluate import build_queries
from pbb.experiments import run as run_mod
from pbb.jsonio import read_jsonl

pytest.importorskip("openai")


class FakeServer:
    """Answers chat completions from a prompt -> text table ("no idea" otherwise); fails the
    first ``flaky`` requests with a 500; records every request body."""

    def __init__(self, answers: dict[str, str], flaky: int = 0):
        self.answers, self.flaky, self.requests = answers, flaky, []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _send(self, code, obj):
                body = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                self._send(200, {"object": "list", "data": [{"id": "fake", "object": "model"}]})

            def do_POST(self):
                req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with lock:
                    server.requests.append(req)
                    fail = server.flaky > 0
                    server.flaky -= fail
                if fail:
                    return self._send(500, {"error": {"message": "overloaded"}})
                text = server.answers.get(req["messages"][-1]["content"], "no idea")
                self._send(200, {"id": "x", "object": "chat.completion", "created": 0,
                                 "model": req["model"], "choices": [{
                                     "index": 0, "finish_reason": "stop",
                                     "message": {"role": "assistant", "content": text}}]})

        lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()


def _config(url: str, **extra):
    return load_config(Path("configs/quickstart.yaml"), {
        "model": "openai:fake", "curricula": ["untuned"], "eval.backend": "openai",
        "eval.openai.base_url": url, "eval.openai.max_retries": 3, "eval.openai.concurrency": 4,
        "data.behaviours": 12, "eval.modes": ["recall", "cot"], **extra})


def test_a_served_model_is_evaluated_and_scored_like_a_local_one(tmp_path):
    cfg = _config("http://unused")
    ds = data.generate(cfg.data.domain, behaviours=12, demos=cfg.data.demos,
                       test_inputs=cfg.data.test_inputs, eval_fraction=cfg.data.eval_fraction,
                       seed=cfg.seed, options=cfg.data.options, progress=False)
    traces = {(d.behaviour_id, d.input): d.trace for d in ds.demonstrations}
    cot = [q for q in build_queries(ds, "cot") if q["split"] == "eval"]
    recall = [q for q in build_queries(ds, "recall") if q["split"] == "eval"]
    # gold for the first half of the CoT queries and every recall query; junk for the rest
    answers = {q["prompt"]: traces[(q["behaviour_id"], q["input"])] for q in cot[::2]}
    answers.update({q["prompt"]: q["target"] for q in recall})
    server = FakeServer(answers, flaky=3)
    try:
        summary = run_mod.run(_config(server.url), tmp_path / "r", progress=False)
    finally:
        server.close()
    samples = read_jsonl(tmp_path / "r" / "eval" / "untuned" / "cot" / "samples.jsonl")
    assert [s["prompt"] for s in samples] == [q["prompt"] for q in cot]  # the same prompts
    assert [s["score"] for s in samples] == [1.0 if k % 2 == 0 else 0.0 for k in range(len(cot))]
    recalled = read_jsonl(tmp_path / "r" / "eval" / "untuned" / "recall" / "samples.jsonl")
    assert [s["score"] for s in recalled] == [1.0] * len(recall)
    # the run's settings reach the server: one user turn (no system prompt), greedy, its budget
    posts = server.requests
    assert len(posts) == len(cot) + len(recall) + 3  # the 3 failures were retried
    assert all([m["role"] for m in p["messages"]] == ["user"] and p["temperature"] == 0.0
               and p["model"] == "fake" for p in posts)
    assert {p["max_tokens"] for p in posts} == {cfg.eval.max_new_tokens["cot"],
                                                cfg.eval.max_new_tokens["recall"]}
    assert summary["served_models"] == {"untuned": "fake"}
    assert not (tmp_path / "r" / "stages").exists()  # nothing was trained


def test_an_unreachable_server_is_one_error_before_any_work(tmp_path):
    with pytest.raises(PbbError, match=r"eval.openai: server http://127.0.0.1:9/v1/ does not answer"):
        run_mod.run(_config("http://127.0.0.1:9/v1"), tmp_path / "r", progress=False)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("extra, message", [
    ({"curricula": ["untuned", "proactive"]}, "eval.openai.models.proactive: no served model"),
    ({"eval.backend": "hf"}, "evaluated with eval.backend: openai"),
])
def test_what_a_server_cannot_do_is_refused(tmp_path, extra, message):
    with pytest.raises(PbbError, match=message):
        run_mod.run(_config("http://127.0.0.1:9/v1", **extra), tmp_path / "r", progress=False)


FAKE_VLLM = r'''
import json, os, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

args = sys.argv[1:]
assert args[0] == "serve"
port = int(args[args.index("--port") + 1])
record = os.environ["FAKE_VLLM_RECORD"]
answers = json.load(open(os.environ["FAKE_VLLM_ANSWERS"]))
with open(record, "a") as f:
    f.write(json.dumps({"argv": args, "pid": os.getpid()}) + "\n")


class H(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def _send(self, obj):
        body = json.dumps(obj).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self._send({"status": "ok"} if self.path == "/health" else {"object": "list", "data": []})

    def do_POST(self):
        req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with open(record, "a") as f:
            f.write(json.dumps({"request": req}) + "\n")
        text = answers.get(req["prompt"], "no idea")
        self._send({"id": "x", "object": "text_completion", "created": 0, "model": req["model"],
                    "choices": [{"index": 0, "text": text, "finish_reason": "stop"}]})


HTTPServer(("127.0.0.1", port), H).serve_forever()
'''


def _fake_vllm(tmp_path, monkeypatch, answers: dict) -> tuple[Path, Path]:
    import os
    import sys

    exe = tmp_path / "bin" / "vllm"
    exe.parent.mkdir()
    exe.write_text(f"#!{sys.executable}\n" + FAKE_VLLM)
    exe.chmod(0o755)
    record, table = tmp_path / "record.jsonl", tmp_path / "answers.json"
    table.write_text(json.dumps(answers))
    monkeypatch.setenv("FAKE_VLLM_RECORD", str(record))
    monkeypatch.setenv("FAKE_VLLM_ANSWERS", str(table))
    monkeypatch.setenv("PATH", f"{exe.parent}{os.pathsep}{os.environ['PATH']}")
    return exe, record


def _vllm_config(**extra):
    from pbb.config import with_smoke

    return load_config(Path("configs/quickstart.yaml"), with_smoke({
        "curricula": ["stage1_only"], "eval.backend": "vllm", "eval.modes": ["cot"],
        "eval.max_new_tokens.cot": 64, **extra}))


@pytest.mark.slow
def test_vllm_backend_serves_the_trained_model_and_gets_pbbs_own_prompt_text(tmp_path, monkeypatch):
    import os

    from pbb.evaluation import served as backends
    from pbb.models import (
        TINY_RANDOM,
        end_of_turn_ids,
        load_tokenizer,
        resolve_model_path,
    )
    from pbb.rows.chat import prompt_text

    cfg = _vllm_config()
    ds = data.generate(cfg.data.domain, behaviours=cfg.data.behaviours, demos=cfg.data.demos,
                       test_inputs=cfg.data.test_inputs, eval_fraction=cfg.data.eval_fraction,
                       seed=cfg.seed, options=cfg.data.options, progress=False)
    tok = load_tokenizer(resolve_model_path(TINY_RANDOM))
    traces = {(d.behaviour_id, d.input): d.trace for d in ds.demonstrations}
    queries = build_queries(ds, "cot", max_train_behaviours=cfg.eval.max_train_behaviours)
    answers = {prompt_text(tok, q["prompt"]): traces[(q["behaviour_id"], q["input"])]
               for q in queries[::2]}
    _, record = _fake_vllm(tmp_path, monkeypatch, answers)
    monkeypatch.setattr(backends, "_has_gpu", lambda: True)
    run_mod.run(cfg, tmp_path / "r", progress=False)

    lines = [json.loads(x) for x in record.read_text().splitlines()]
    (start,) = [x for x in lines if "argv" in x]
    plan = json.loads((tmp_path / "r" / "curricula.json").read_text())
    assert Path(start["argv"][1]) == tmp_path / "r" / plan["stage1_only"][0]["dir"] / "model"
    requests = [x["request"] for x in lines if "request" in x]
    samples = read_jsonl(tmp_path / "r" / "eval" / "stage1_only" / "cot" / "samples.jsonl")
    # the server got the text pbb's own generation would feed the model, and its stop tokens
    assert sorted(r["prompt"] for r in requests) == sorted(prompt_text(tok, s["prompt"]) for s in samples)
    assert all(r["stop_token_ids"] == end_of_turn_ids(tok) and r["max_tokens"] == 64 for r in requests)
    assert [s["score"] for s in samples] == [1.0 if k % 2 == 0 else 0.0 for k in range(len(samples))]
    with pytest.raises(ProcessLookupError):  # stopped after the evaluation
        os.kill(start["pid"], 0)


def test_vllm_without_vllm_or_without_a_gpu_is_one_error_before_work(tmp_path, monkeypatch):
    from pbb.evaluation import served as backends

    with pytest.raises(PbbError, match="eval.backend: vllm needs vLLM: 'no-such-vllm' not found"):
        run_mod.run(_vllm_config(**{"eval.vllm.executable": "no-such-vllm"}), tmp_path / "a",
                    progress=False)
    _fake_vllm(tmp_path, monkeypatch, {})
    monkeypatch.setattr(backends, "_has_gpu", lambda: False)
    with pytest.raises(PbbError, match="eval.backend: vllm needs a CUDA GPU"):
        run_mod.run(_vllm_config(), tmp_path / "b", progress=False)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
