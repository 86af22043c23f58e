"""Generation through an OpenAI-compatible server (``eval.backend: openai``).

The same prompts as the in-process path (one user turn; the run's system prompt, if any, as a
system message), greedy unless ``eval.temperature`` says otherwise, the run's ``max_new_tokens``
per mode; the server stops at the model's end of turn. Completions are scored by the same
:class:`pbb.evaluate.Scorer`, so a number means the same whichever backend produced the text.
Requests run ``eval.openai.concurrency`` at a time; the client retries failures with backoff
(``max_retries``); results are handed back as they arrive, so an interrupted evaluation resumes
from its partial samples as with the ``hf`` backend.

A model that lives only behind a server is ``model: openai:NAME``: it can be evaluated
(``untuned``) but not trained here. A finetuned model served elsewhere is named per curriculum
(``eval.openai.models: {proactive: NAME}``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed

from tqdm import tqdm

from pbb.config import OPENAI_PREFIX, RunConfig
from pbb.errors import PbbError


def _client(cfg: RunConfig):
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
    client = _client(cfg)
    try:
        client.with_options(max_retries=0, timeout=10).models.list()
    except Exception as e:  # noqa: BLE001 - connection refused, DNS, 401...: one line
        raise PbbError(f"eval.openai: server {client.base_url} does not answer "
                       f"({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''})") from None


def openai_generator(cfg: RunConfig, model: str) -> Callable:
    """A function (prompts, *, max_new_tokens, desc, progress, on_batch) -> completions."""
    client = _client(cfg)
    system = [{"role": "system", "content": cfg.chat.system_prompt}] if cfg.chat.system_prompt else []
    temperature = cfg.eval.temperature

    def one(prompt: str, max_new_tokens: int) -> str:
        reply = client.chat.completions.create(
            model=model, messages=system + [{"role": "user", "content": prompt}],
            max_tokens=max_new_tokens, temperature=temperature)
        return (reply.choices[0].message.content or "").strip()

    def generate(prompts: list[str], *, max_new_tokens: int, desc: str = "generate",
                 progress: bool = True, on_batch=None) -> list[str]:
        out: list[str | None] = [None] * len(prompts)
        bar = tqdm(total=len(prompts), desc=desc, unit="query", disable=not progress or None,
                   leave=False)
        with ThreadPoolExecutor(cfg.eval.openai.concurrency) as pool:
            futures = {pool.submit(one, p, max_new_tokens): i for i, p in enumerate(prompts)}
            for fut in as_completed(futures):
                i = futures[fut]
                try:
                    out[i] = fut.result()
                except Exception as e:  # noqa: BLE001 - after the client's retries
                    for f in futures:
                        f.cancel()
                    raise PbbError(f"eval.openai: request for query {i} failed after "
                                   f"{cfg.eval.openai.max_retries} retries ({type(e).__name__}: "
                                   f"{str(e).splitlines()[0][:120] if str(e) else ''}); the "
                                   "answers so far are kept, run again to resume") from None
                if on_batch:
                    on_batch([(i, out[i])])
                bar.update(1)
        bar.close()
        return out  # type: ignore[return-value]

    return generate
