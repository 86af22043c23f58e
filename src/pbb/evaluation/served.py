"""Servers behind evaluation (``eval.backend: openai`` / ``vllm``): the client, the checks made
before any work, and the ``vllm serve`` subprocess. The generators that use them are
:class:`pbb.evaluation.generators.OpenAIGenerator` and its subclass ``VLLMGenerator``.

The same prompts as the in-process path (one user turn; the run's system prompt, if any, as a
system message), greedy unless ``eval.temperature`` says otherwise, the run's ``max_new_tokens``
per mode; the server stops at the model's end of turn. Completions are scored by the same
:class:`pbb.evaluation.scoring.Scorer`, so a number means the same whichever backend produced the text.
Requests run ``eval.openai.concurrency`` at a time; the client retries failures with backoff
(``max_retries``); results are handed back as they arrive, so an interrupted evaluation resumes
from its partial samples as with the ``hf`` backend.

A model that lives only behind a server is ``model: openai:NAME``: it can be evaluated
(``untuned``) but not trained here. A finetuned model served elsewhere is named per curriculum
(``eval.openai.models: {proactive: NAME}``).

``eval.backend: vllm`` trains as usual and evaluates each curriculum's model through a ``vllm
serve`` that pbb starts on it (:class:`VLLMServer`), waits for, and stops. There pbb renders every
prompt itself (the chat template as in training, without a default system prompt) and uses the
completions endpoint with the model's end-of-turn ids as stop tokens, so the server sees the
very text the ``hf`` backend would feed the model.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

from pbb.config import OPENAI_PREFIX, RunConfig
from pbb.errors import PbbError, first_line


def openai_client(cfg: RunConfig):
    """The openai client for ``eval.openai`` (the package is optional: one error without it)."""
    try:
        import openai
    except ModuleNotFoundError:
        raise PbbError("eval.backend: openai needs the openai package (pip install "
                       "'pbb[openai]')") from None
    o = cfg.eval.openai
    return openai.OpenAI(base_url=o.base_url or os.environ.get("OPENAI_BASE_URL"),
                         api_key=os.environ.get(o.api_key_env) or "none",
                         max_retries=o.max_retries, timeout=o.timeout)


def served_model(cfg: RunConfig, curriculum: str) -> str:
    """The served model that stands for ``curriculum``; a clear error when there is none."""
    if curriculum in cfg.eval.openai.models:
        return cfg.eval.openai.models[curriculum]
    if curriculum == "untuned" and cfg.model.startswith(OPENAI_PREFIX):
        return cfg.model[len(OPENAI_PREFIX):]
    raise PbbError(f"eval.openai.models.{curriculum}: no served model for curriculum "
                   f"{curriculum!r} (name the model trained with it, or evaluate untuned only)")


def check_server(cfg: RunConfig) -> None:
    """Before any work: every curriculum has a served model, and the server answers."""
    for name in cfg.curricula:
        served_model(cfg, name)
    client = openai_client(cfg)
    try:
        client.with_options(max_retries=0, timeout=10).models.list()
    except Exception as e:  # noqa: BLE001 - connection refused, DNS, 401...: one line
        raise PbbError(f"eval.openai: server {client.base_url} does not answer "
                       f"({first_line(e, 120)})") from None


def _has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def check_vllm(cfg: RunConfig) -> None:
    """Before any work: the vLLM command exists and there is a GPU for it."""
    if shutil.which(cfg.eval.vllm.executable) is None:
        raise PbbError(f"eval.backend: vllm needs vLLM: {cfg.eval.vllm.executable!r} not found "
                       "(pip install 'pbb[vllm]' on a GPU machine, or eval.vllm.executable)")
    if not _has_gpu():
        raise PbbError("eval.backend: vllm needs a CUDA GPU and there is none here "
                       "(eval.backend: hf generates on the CPU)")


def check_rl_vllm() -> None:
    """``rl.use_vllm``: TRL generates rollouts with vLLM, which needs the package and a GPU."""
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        raise PbbError("rl.use_vllm needs the vllm package (pip install 'pbb[vllm]', the range "
                       "the installed TRL supports)")
    if not _has_gpu():
        raise PbbError("rl.use_vllm needs a CUDA GPU and there is none here (rl.use_vllm: false)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class VLLMServer:
    """``vllm serve MODEL_DIR`` as a subprocess for one evaluation: started, waited for (its
    ``/health``), stopped on exit, its output in ``log``. A server that exits or never gets
    healthy is one error with the last lines of its log."""

    SERVED_NAME = "pbb"

    def __init__(self, cfg: RunConfig, model_dir: Path | str, log: Path):
        self.cfg, self.model_dir, self.log = cfg.eval.vllm, Path(model_dir), Path(log)
        self.proc: subprocess.Popen | None = None

    def command(self, port: int) -> list[str]:
        v = self.cfg
        return [shutil.which(v.executable) or v.executable, "serve", str(self.model_dir),
                "--host", "127.0.0.1", "--port", str(port),
                "--served-model-name", self.SERVED_NAME,
                "--gpu-memory-utilization", str(v.gpu_memory_utilization),
                *(["--max-model-len", str(v.max_model_len)] if v.max_model_len else []),
                *v.extra_args]

    def _tail(self) -> str:
        try:
            lines = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(lines[-3:])[-300:]

    def __enter__(self) -> str:
        port = self.cfg.port or _free_port()
        self.log.parent.mkdir(parents=True, exist_ok=True)
        out = open(self.log, "ab")  # noqa: SIM115 - the server's lifetime
        self.proc = subprocess.Popen(self.command(port), stdout=out, stderr=subprocess.STDOUT)
        out.close()
        try:
            return self._wait_until_healthy(f"http://127.0.0.1:{port}")
        except BaseException:  # Ctrl-C or SIGTERM while it starts: stop it, or it keeps a GPU
            self.__exit__(None, None, None)
            raise

    def _wait_until_healthy(self, url: str) -> str:
        deadline = time.time() + self.cfg.startup_timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise PbbError(f"vllm serve {self.model_dir} exited with code {self.proc.returncode} "
                               f"before it was ready (log {self.log}: {self._tail()})")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                    if r.status == 200:
                        return f"{url}/v1"
            except OSError:
                pass
            time.sleep(1)
        raise PbbError(f"vllm serve {self.model_dir}: not healthy after "
                       f"{self.cfg.startup_timeout:.0f} s (eval.vllm.startup_timeout; log {self.log}: "
                       f"{self._tail()})")

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
