"""eval.backend: openai against a real OpenAI-compatible server process, not a stand-in:
`transformers serve` (transformers' own FastAPI/uvicorn server, the `[serving]` extra) serving
the bundled SmolLM2-135M-Instruct on localhost, started and killed by the test.

The same queries answered in process (`hf`) and by the server come back as the same text, so
extraction and scoring agree sample by sample; a server killed mid-evaluation leaves the
answers so far, and the next `pbb run` asks the restarted server only for the rest."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from pbb.jsonio import read_jsonl
from pbb.models import resolve_model_path
from tests.conftest import free_port, run_cli

pytestmark = pytest.mark.slow
for module in ("openai", "fastapi", "uvicorn"):
    pytest.importorskip(module)

# SmolLM2's chat template adds this system turn when a conversation has none, and a chat server
# applies the template as it is; naming it as the run's system prompt makes pbb's own rendering
# (hf backend) the very text the server feeds the model, so greedy answers must match.
TEMPLATE_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
ARGS = ["configs/quickstart.yaml", "--smoke", "--no-progress",
        "--set", 'curricula=["untuned"]', "--set", f"chat.system_prompt={TEMPLATE_SYSTEM}",
        "--set", "eval.precision=fp32", "--set", 'eval.max_new_tokens={"recall":32,"cot":32}',
        "--set", "data.behaviours=24"]


class Server:
    """`transformers serve MODEL --port P` as a subprocess; its access log counts requests."""

    def __init__(self, model: Path, port: int, log: Path):
        self.model, self.port, self.log = model, port, log

    def __enter__(self):
        code = "import sys; from transformers.cli.transformers import main; sys.argv[0] = " \
               "'transformers'; sys.exit(main())"
        self.proc = subprocess.Popen(  # a session of its own: kill() ends all its processes
            [sys.executable, "-c", code, "serve", str(self.model), "--port", str(self.port)],
            stdout=self.log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 180
        while time.time() < deadline:
            assert self.proc.poll() is None, self.log.read_text()[-2000:]
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2)
                return self
            except OSError:
                time.sleep(0.5)
        raise AssertionError("transformers serve did not answer /health in 180 s")

    def kill(self):
        """SIGKILL to the server and every process it started: its generation worker (a process
        `transformers serve` spawns) killed with it, not left generating on a core while the
        test's runs wait for theirs (a server killed is one that answers nothing more)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.kill()

    def chat_requests(self) -> int:
        return self.log.read_text().count('"POST /v1/chat/completions HTTP/1.1" 200')


def _served_args(model: Path, port: int) -> list[str]:
    # no retries, so a killed server is one failed request; a long timeout, so that a request
    # queued behind another on a loaded machine (the default 120 s ran out beside a training
    # run on 2 cores) is not taken for one
    return [*ARGS, "--set", f"model=openai:{model}", "--set", "eval.backend=openai",
            "--set", f"eval.openai.base_url=http://127.0.0.1:{port}/v1",
            "--set", "eval.openai.max_retries=0", "--set", "eval.openai.concurrency=2",
            "--set", "eval.openai.timeout=900"]


@pytest.fixture(scope="module")
def model() -> Path:
    return Path(resolve_model_path("smollm2-135m-instruct"))


@pytest.fixture(scope="module")
def in_process(tmp_path_factory, model):
    out = tmp_path_factory.mktemp("hf") / "run"
    done = run_cli("run", *ARGS, "--set", f"model={model}", "--out", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    return out


def _samples(run: Path, mode: str) -> list[dict]:
    return read_jsonl(run / "eval" / "untuned" / mode / "samples.jsonl")


def test_the_server_gives_the_in_process_answers_and_the_same_scores(tmp_path, model, in_process):
    port = free_port()
    with Server(model, port, tmp_path / "server.log") as server:
        done = run_cli("run", *_served_args(model, port), "--out", str(tmp_path / "run"))
        assert done.returncode == 0, done.stderr[-2000:]
        requests = server.chat_requests()
    total = 0
    for mode in ("recall", "cot"):
        local, served = _samples(in_process, mode), _samples(tmp_path / "run", mode)
        assert len(served) == len(local) > 0
        total += len(served)
        for a, b in zip(local, served):
            assert (b["behaviour_id"], b["input"], b["prompt"]) == (a["behaviour_id"], a["input"], a["prompt"])
            assert b["completion"] == a["completion"]  # greedy, same text in, same text out
            assert (b["prediction"], b["score"], b.get("recall_exact")) == \
                   (a["prediction"], a["score"], a.get("recall_exact"))
        assert any(len(s["completion"]) > 20 for s in served)  # real text, not empty answers
    assert requests == total  # one request a query
    a = json.loads((in_process / "summary.json").read_text())["results"]
    b = json.loads((tmp_path / "run" / "summary.json").read_text())["results"]
    assert a == b


def test_a_server_killed_mid_evaluation_resumes_from_the_written_samples(tmp_path, model, in_process):
    port, out = free_port(), tmp_path / "run"
    partial = out / "eval" / "untuned" / "cot" / "samples.partial.jsonl"
    with Server(model, port, tmp_path / "first.log") as server:
        proc = subprocess.Popen([sys.executable, "-m", "pbb", "run", *_served_args(model, port),
                                 "--out", str(out)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 900  # two CoT samples written (recall first): minutes under load
        while time.time() < deadline and proc.poll() is None:
            if partial.is_file() and len(partial.read_text().splitlines()) >= 2:
                server.kill()
                break
            time.sleep(0.05)
        _, err = proc.communicate(timeout=300)
    assert proc.returncode != 0, "the evaluation finished before the server was killed"
    assert "eval.openai: request for query" in err and "run again to resume" in err, err[-2000:]
    kept = len(read_jsonl(partial))
    cot_total = len(_samples(in_process, "cot"))
    assert 2 <= kept < cot_total
    assert (out / "eval" / "untuned" / "recall" / "samples.jsonl").is_file()  # done before the kill

    with Server(model, port, tmp_path / "second.log") as server:
        again = run_cli("run", *_served_args(model, port), "--out", str(out))
        assert again.returncode == 0, again.stderr[-2000:]
        assert server.chat_requests() == cot_total - kept  # only what was missing
    assert [s["completion"] for s in _samples(out, "cot")] == \
           [s["completion"] for s in _samples(in_process, "cot")]
    assert not partial.exists()
