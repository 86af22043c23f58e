"""Generators: what turns user prompts into completions, whatever runs the model.

Evaluation (:func:`pbb.evaluation.evaluate.evaluate`) and the recall check of a stopping rule
(:func:`pbb.evaluation.evaluate.recall_rate`) take a :class:`Generator`, so either runs the same
on the model in this process (:class:`HFGenerator`), a model behind an OpenAI-compatible server
(:class:`OpenAIGenerator`), a ``vllm serve`` pbb starts on a model directory
(:class:`VLLMGenerator`), or canned completions in a test.

The protocol is one method. ``on_batch`` gets ``(index, completion)`` pairs as soon as they are
done, in whatever order the engine finishes them: that is what makes an evaluation resumable
(each answer is saved the moment it exists, and a rerun asks only for the prompts that have
none). torch, transformers and openai are imported by the classes that use them, when used.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from tqdm import tqdm

from pbb.errors import PbbError, first_line

if TYPE_CHECKING:
    from pbb.config import RunConfig

#: receives ``(index into the prompts, completion)`` pairs as they are done
OnBatch = Callable[[list[tuple[int, str]]], None]


class Generator(Protocol):
    def generate(self, prompts: list[str], *, max_new_tokens: int, desc: str = "generate",
                 progress: bool = True, on_batch: OnBatch | None = None) -> list[str]:
        """Completions for user prompts, in the order given, each at most ``max_new_tokens``
        tokens and stripped; ``on_batch`` hears of each as it is done."""
        ...


def _bar(total: int, desc: str, progress: bool) -> tqdm:
    return tqdm(total=total, desc=desc, unit="query", disable=not progress or None, leave=False)


class HFGenerator:
    """A model and tokenizer in this process. Prompts get the chat template as in training (with
    ``system_prompt`` when set); generation stops at the model's end of turn; greedy unless
    ``temperature`` > 0.

    ``engine`` (``eval.generator``, :mod:`pbb.evaluation.generation`): ``hf``, length-sorted
    batches of ``batch_size`` through ``model.generate``; ``static``, the slot engine
    (``batch_size`` slots on a CPU, as many as the GPU's free memory holds on CUDA); ``auto``,
    ``static`` on CUDA and ``hf`` elsewhere."""

    def __init__(self, model, tokenizer, *, batch_size: int, temperature: float = 0.0,
                 system_prompt: str | None = None, engine: str = "hf"):
        self.model, self.tokenizer, self.batch_size = model, tokenizer, batch_size
        self.temperature, self.system_prompt, self.engine = temperature, system_prompt, engine

    def generate(self, prompts: list[str], *, max_new_tokens: int, desc: str = "generate",
                 progress: bool = True, on_batch: OnBatch | None = None) -> list[str]:
        from pbb.evaluation.generation import choose
        from pbb.rows.chat import prompt_text

        texts = [prompt_text(self.tokenizer, p, self.system_prompt) for p in prompts]
        ids = [self.tokenizer(t, add_special_tokens=False).input_ids for t in texts]
        out: list[str | None] = [None] * len(texts)
        bar = _bar(len(texts), desc, progress)

        def done(pairs: list[tuple[int, str]]) -> None:
            for i, text in pairs:
                out[i] = text
            if on_batch:
                on_batch(pairs)
            bar.update(len(pairs))

        if texts and choose(self.engine, self.model, self.temperature) == "static":
            self._static(ids, max_new_tokens, done)
        else:
            self._batched(texts, ids, max_new_tokens, done)
        bar.close()
        return out  # type: ignore[return-value]

    def _stop_ids(self) -> list[int]:
        from pbb.models import end_of_turn_ids

        return end_of_turn_ids(self.tokenizer, getattr(self.model, "generation_config", None))

    def _device(self):
        return next(self.model.parameters()).device

    def _static(self, ids: list[list[int]], max_new_tokens: int, done: OnBatch) -> None:
        """The slot engine: completions handed on as their sequences end."""
        from pbb.evaluation.generation import compute_dtype, cuda_slots, generate_static

        slots = self.batch_size
        if self._device().type == "cuda":
            slots = cuda_slots(self.model, compute_dtype(self.model),
                               max(len(x) for x in ids) + max_new_tokens, len(ids))

        def decoded(items: list[tuple[int, list[int]]]) -> None:
            texts = self.tokenizer.batch_decode([t for _, t in items], skip_special_tokens=True)
            done([(i, text.strip()) for (i, _), text in zip(items, texts)])

        generate_static(self.model, ids, slots=slots, max_new_tokens=max_new_tokens,
                        stop_ids=self._stop_ids(), temperature=self.temperature, on_done=decoded)

    def _batched(self, texts: list[str], ids: list[list[int]], max_new_tokens: int,
                 done: OnBatch) -> None:
        """``model.generate`` on left-padded batches, longest prompts first (little padding)."""
        import torch

        device, stop, tok = self._device(), self._stop_ids(), self.tokenizer
        sampling = dict(do_sample=True, temperature=self.temperature, top_p=1.0) \
            if self.temperature > 0 else dict(do_sample=False, temperature=None, top_p=None,
                                              top_k=None)
        order = sorted(range(len(texts)), key=lambda i: -len(ids[i]))
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            enc = tok([texts[i] for i in idx], return_tensors="pt", padding=True,
                      padding_side="left", add_special_tokens=False).to(device)
            with torch.inference_mode():
                gen = self.model.generate(**enc, max_new_tokens=max_new_tokens, eos_token_id=stop,
                                          pad_token_id=tok.pad_token_id, **sampling)
            decoded = tok.batch_decode(gen[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
            done([(i, text.strip()) for i, text in zip(idx, decoded)])


class OpenAIGenerator:
    """A model behind an OpenAI-compatible server (``eval.backend: openai``), ``concurrency``
    requests at a time; the client retries failures with backoff.

    Chat requests by default (the server applies its template; ``system_prompt`` as a system
    message). With ``render``, the text ``render(prompt)`` goes to the completions endpoint as it
    is, stopping at ``stop_token_ids`` (:class:`VLLMGenerator`: pbb's own prompt text)."""

    def __init__(self, client, model: str, *, temperature: float = 0.0,
                 system_prompt: str | None = None, concurrency: int = 8,
                 render: Callable[[str], str] | None = None,
                 stop_token_ids: list[int] | None = None):
        self.client, self.model, self.temperature = client, model, temperature
        self.system = [{"role": "system", "content": system_prompt}] if system_prompt else []
        self.concurrency, self.render, self.stop_token_ids = concurrency, render, stop_token_ids

    @classmethod
    def from_config(cls, cfg: RunConfig, model: str, **kw) -> OpenAIGenerator:
        """The run's server (``eval.openai``), temperature and system prompt."""
        from pbb.evaluation.served import openai_client

        return cls(openai_client(cfg), model, temperature=cfg.eval.temperature,
                   system_prompt=cfg.chat.system_prompt, concurrency=cfg.eval.openai.concurrency,
                   **kw)

    def one(self, prompt: str, max_new_tokens: int) -> str:
        """One completion, stripped."""
        if self.render is not None:
            reply = self.client.completions.create(
                model=self.model, prompt=self.render(prompt), max_tokens=max_new_tokens,
                temperature=self.temperature,
                extra_body={"stop_token_ids": self.stop_token_ids or [],
                            "skip_special_tokens": True})
            return (reply.choices[0].text or "").strip()
        reply = self.client.chat.completions.create(
            model=self.model, messages=self.system + [{"role": "user", "content": prompt}],
            max_tokens=max_new_tokens, temperature=self.temperature)
        return (reply.choices[0].message.content or "").strip()

    def generate(self, prompts: list[str], *, max_new_tokens: int, desc: str = "generate",
                 progress: bool = True, on_batch: OnBatch | None = None) -> list[str]:
        out: list[str | None] = [None] * len(prompts)
        bar = _bar(len(prompts), desc, progress)
        pool = _Requests(lambda p: self.one(p, max_new_tokens), prompts, self.concurrency)
        try:
            for i, answer, error in pool.answers():
                if error is not None:  # after the client's retries
                    raise PbbError(f"eval.openai: request for query {i} failed after "
                                   f"{self.client.max_retries} retries "
                                   f"({first_line(error, 120)}); the answers so far are kept, "
                                   "run again to resume")
                out[i] = answer
                if on_batch:
                    on_batch([(i, answer)])
                bar.update(1)
        finally:  # that, Ctrl-C or SIGTERM: the queued requests are not sent
            pool.stop()
        bar.close()
        return out  # type: ignore[return-value]


class _Requests:
    """``fn`` on each item, ``workers`` at a time, on daemon threads: stopped (an error, Ctrl-C,
    SIGTERM), the items not yet sent are dropped, and the requests in flight hold neither the
    caller nor the process's exit (a thread pool's workers are joined when Python exits: a long
    answer in flight would keep a stopped point past its sweep's wait, and the vllm server it
    started would be killed with it instead of stopped)."""

    def __init__(self, fn: Callable[[Any], Any], items: list, workers: int):
        self.todo: queue.SimpleQueue = queue.SimpleQueue()
        self.done: queue.SimpleQueue = queue.SimpleQueue()
        self.stopped, self.n = threading.Event(), len(items)
        for i, item in enumerate(items):
            self.todo.put((i, item))
        for _ in range(min(workers, self.n)):
            threading.Thread(target=self._work, args=(fn,), daemon=True).start()

    def _work(self, fn) -> None:
        while not self.stopped.is_set():
            try:
                i, item = self.todo.get_nowait()
            except queue.Empty:
                return
            try:
                self.done.put((i, fn(item), None))
            except Exception as e:  # noqa: BLE001 - the caller's to raise
                self.done.put((i, None, e))

    def answers(self) -> Iterator[tuple[int, Any, Exception | None]]:
        """(index, answer, error) as each request ends."""
        for _ in range(self.n):
            got = None
            while got is None:
                try:  # a timeout, so that Ctrl-C is seen at once
                    got = self.done.get(timeout=0.5)
                except queue.Empty:
                    pass
            yield got

    def stop(self) -> None:
        self.stopped.set()


class VLLMGenerator(OpenAIGenerator):
    """``vllm serve MODEL_DIR`` (:class:`pbb.evaluation.served.VLLMServer`) for as long as the
    ``with`` block lasts, and an :class:`OpenAIGenerator` on it. pbb renders every prompt itself
    (the chat template as in training, without a default system prompt) and stops at the model's
    end-of-turn ids, so the server sees the very text :class:`HFGenerator` would feed the model.
    vLLM is a separate program: nothing of it is imported here."""

    def __init__(self, cfg: RunConfig, model_dir: Path | str, tokenizer: Any, log: Path | str):
        from pbb.evaluation.served import VLLMServer, openai_client
        from pbb.models import end_of_turn_ids
        from pbb.rows.chat import prompt_text

        self.server = VLLMServer(cfg, model_dir, Path(log))
        system = cfg.chat.system_prompt
        super().__init__(openai_client(cfg), VLLMServer.SERVED_NAME,
                         temperature=cfg.eval.temperature, concurrency=cfg.eval.openai.concurrency,
                         render=lambda p: prompt_text(tokenizer, p, system),
                         stop_token_ids=end_of_turn_ids(tokenizer))

    def __enter__(self) -> VLLMGenerator:
        self.client = self.client.with_options(base_url=self.server.__enter__())
        return self

    def __exit__(self, *exc) -> None:
        self.server.__exit__(*exc)
