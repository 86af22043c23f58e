"""Batched evaluation: generate, extract the answer, score it with the domain's verifier.

Generation is batched with left padding over *length-sorted* prompts (so a batch wastes little
on padding), greedy by default, and stops each sequence at the end of the assistant turn.
``benchmarks/bench_eval.py`` compares it with a one-prompt-at-a-time loop.

Samples are appended to ``samples.partial.jsonl`` batch by batch, so an interrupted evaluation
resumes where it stopped (the half record a kill may leave at the end is cut first, and logged);
the finished ``samples.jsonl`` is written atomically in query order.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from tqdm import tqdm

from pbb.data import DataSet
from pbb.errors import PbbError
from pbb.evaluation.recall import cot_recall_exact, normalize, recall_score
from pbb.jsonio import (
    append_jsonl,
    iter_jsonl,
    read_jsonl,
    repair_jsonl,
    torn_tail_note,
    write_jsonl,
)
from pbb.rows.render import instruction_text, make_row, row_rng
from pbb.training.rewards import score_completion

SAMPLES = "samples.jsonl"
PARTIAL = "samples.partial.jsonl"
console = Console(stderr=True)


def evaluated_behaviours(ds: DataSet, max_train_behaviours: int | None = None) -> list:
    """Every eval behaviour, and the first ``max_train_behaviours`` train behaviours (by id)."""
    train = sorted(b.id for b in ds.split("train"))[:max_train_behaviours]
    keep = set(train) | {b.id for b in ds.split("eval")}
    return [b for b in ds.behaviours if b.id in keep]


def build_queries(ds: DataSet, mode: str, max_test_inputs: int | None = None,
                  max_train_behaviours: int | None = None, fmt: str = "code") -> list[dict]:
    """One query per (behaviour, test input), for eval and train behaviours alike.

    Mode ``recall`` asks once per behaviour for its instruction (a declarative prompt).
    ``fmt`` is how instructions are shown (``data.instruction_format``), as in training.
    """
    tests = ds.by_behaviour("test")
    queries = []
    behaviours = evaluated_behaviours(ds, max_train_behaviours)
    if mode == "recall":
        for b in behaviours:
            row = make_row(ds.domain, b, "declarative", row_rng(ds.seed, "eval", mode, b.id),
                           fmt=fmt)
            queries.append({"behaviour_id": b.id, "split": b.split, "mode": mode, "input": "",
                            "prompt": row["prompt"][0]["content"],
                            "target": instruction_text(b, fmt)})
        return queries
    for b in behaviours:
        for d in tests[b.id][:max_test_inputs]:
            row = make_row(ds.domain, b, mode, row_rng(ds.seed, "eval", mode, b.id, d.input), d,
                           fmt=fmt)
            queries.append({"behaviour_id": b.id, "split": b.split, "mode": mode,
                            "input": d.input, "prompt": row["prompt"][0]["content"],
                            "target": d.output})
    return queries


class Scorer:
    """Completion -> sample record for one (curriculum, mode): extraction, the domain's verifier,
    recall. Shared by local evaluation and ``pbb score`` (completions produced elsewhere), so a
    rate means the same whichever produced the text."""

    def __init__(self, ds: DataSet, curriculum: str, mode: str, fmt: str = "code"):
        self.ds, self.curriculum, self.mode, self.fmt = ds, curriculum, mode, fmt
        self.behaviours = {b.id: b for b in ds.behaviours}
        self.extra = ds.domain.sample_fields if ds.domain.sample_metrics else None  # validity...
        self.train_out = {k: [d.output for d in v] for k, v in ds.by_behaviour("train").items()}
        self.test_out = {k: [d.output for d in v] for k, v in ds.by_behaviour("test").items()}

    def __call__(self, q: dict, completion: str) -> dict:
        b, mode = self.behaviours[q["behaviour_id"]], self.mode
        rec = {"behaviour_id": q["behaviour_id"], "split": q["split"], "curriculum": self.curriculum,
               "mode": mode, "input": q["input"], "prompt": q["prompt"], "completion": completion}
        if mode == "recall":
            return {**rec, "prediction": normalize(completion), "target": q["target"],
                    "score": recall_score(completion, q["target"])}
        prediction, score = score_completion(self.ds.domain, b, q["input"], completion)
        rec.update(prediction=prediction, target=q["target"], score=score)
        if mode == "cot":
            rec["recall_exact"] = cot_recall_exact(completion, instruction_text(b, self.fmt))
        if self.extra:
            rec.update(self.extra(b, q["input"], prediction, self.train_out[q["behaviour_id"]],
                                  self.test_out[q["behaviour_id"]]))
        return rec


def generate(model, tokenizer, prompts: list[str], *, batch_size: int, max_new_tokens: int,
             temperature: float = 0.0, desc: str = "generate", progress: bool = True,
             on_batch=None, system_prompt: str | None = None, engine: str = "hf") -> list[str]:
    """Completions for user prompts (chat template applied as in training), in the order given.

    ``engine`` (``eval.generator``, :mod:`pbb.evaluation.generation`): ``hf``, batches of ``batch_size``
    through ``model.generate``; ``static``, the slot engine (``batch_size`` slots on a CPU, as many
    as the GPU's free memory holds on CUDA); ``auto``, ``static`` on CUDA and ``hf`` elsewhere.
    ``on_batch`` gets ``(index, completion)`` pairs as they are done."""
    import torch

    from pbb.evaluation.generation import (
        choose,
        compute_dtype,
        cuda_slots,
        generate_static,
    )
    from pbb.models import end_of_turn_ids
    from pbb.rows.chat import prompt_text

    texts = [prompt_text(tokenizer, p, system_prompt) for p in prompts]
    ids = [tokenizer(t, add_special_tokens=False).input_ids for t in texts]
    lengths = [len(x) for x in ids]
    out: list[str | None] = [None] * len(texts)
    device = next(model.parameters()).device
    stop = end_of_turn_ids(tokenizer, getattr(model, "generation_config", None))
    bar = tqdm(total=len(texts), desc=desc, unit="query", disable=not progress or None, leave=False)
    if texts and choose(engine, model, temperature) == "static":
        slots = batch_size
        if device.type == "cuda":
            slots = cuda_slots(model, compute_dtype(model), max(lengths) + max_new_tokens,
                               len(texts))

        def done(items: list[tuple[int, list[int]]]) -> None:
            decoded = tokenizer.batch_decode([t for _, t in items], skip_special_tokens=True)
            for (i, _), text in zip(items, decoded):
                out[i] = text.strip()
            if on_batch:
                on_batch([(i, out[i]) for i, _ in items])
            bar.update(len(items))

        generate_static(model, ids, slots=slots, max_new_tokens=max_new_tokens, stop_ids=stop,
                        temperature=temperature, on_done=done)
        bar.close()
        return out  # type: ignore[return-value]
    order = sorted(range(len(texts)), key=lambda i: -lengths[i])
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        enc = tokenizer([texts[i] for i in idx], return_tensors="pt", padding=True,
                        padding_side="left", add_special_tokens=False).to(device)
        sampling = dict(do_sample=True, temperature=temperature, top_p=1.0) if temperature > 0 \
            else dict(do_sample=False, temperature=None, top_p=None, top_k=None)
        with torch.inference_mode():
            gen = model.generate(**enc, max_new_tokens=max_new_tokens, eos_token_id=stop,
                                 pad_token_id=tokenizer.pad_token_id, **sampling)
        new = gen[:, enc["input_ids"].shape[1]:]
        decoded = tokenizer.batch_decode(new, skip_special_tokens=True)
        for i, text in zip(idx, decoded):
            out[i] = text.strip()
        if on_batch:
            on_batch([(i, out[i]) for i in idx])
        bar.update(len(idx))
    bar.close()
    return out  # type: ignore[return-value]


def evaluate(model, tokenizer, ds: DataSet, *, curriculum: str, mode: str, out_dir: Path,
             batch_size: int, max_new_tokens: int, temperature: float = 0.0,
             max_test_inputs: int | None = None, progress: bool = True,
             system_prompt: str | None = None, max_train_behaviours: int | None = None,
             fmt: str = "code", generator=None, engine: str = "hf") -> list[dict]:
    """Evaluate one (curriculum, mode); resumable; returns the samples.

    Every sample records the completion and the fields its score is computed from, so any
    rate in ``summary.json`` can be recomputed from ``samples.jsonl``. CoT samples also carry
    ``recall_exact`` (:mod:`pbb.evaluation.recall`). ``generator`` replaces the in-process model (e.g. a
    server, :mod:`pbb.evaluation.served`): ``generator(prompts, max_new_tokens=, desc=, progress=,
    on_batch=)``; ``engine`` is the in-process engine otherwise (``eval.generator``,
    :func:`generate`).
    """
    from pbb import dist

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    queries = build_queries(ds, mode, max_test_inputs, max_train_behaviours, fmt)
    if dist.is_main():  # a kill mid-write leaves half a record: cut before reading, appending
        _repair_partials(out_dir)
    dist.barrier()
    done = _answered(out_dir)
    dist.barrier()  # every process has read the same answers before any writes new ones
    # under a launcher each process answers its share of what is left; one process, all of it
    todo = [q for q in queries if (q["behaviour_id"], q["input"]) not in done]
    todo = todo[dist.rank()::dist.world()]
    mine = out_dir / (PARTIAL if not dist.launched() else f"samples.partial.{dist.rank()}.jsonl")
    to_sample = Scorer(ds, curriculum, mode, fmt)

    def save_batch(items: list[tuple[int, str]]) -> None:
        for i, completion in items:
            append_jsonl(mine, to_sample(todo[i], completion))

    if todo and generator is not None:
        generator([q["prompt"] for q in todo], max_new_tokens=max_new_tokens,
                  desc=f"eval {curriculum}/{mode}", progress=progress, on_batch=save_batch)
    elif todo:
        generate(model, tokenizer, [q["prompt"] for q in todo], batch_size=batch_size,
                 max_new_tokens=max_new_tokens, temperature=temperature,
                 desc=f"eval {curriculum}/{mode}", progress=progress and dist.is_main(),
                 on_batch=save_batch, system_prompt=system_prompt, engine=engine)
    dist.barrier()  # every share answered
    if dist.is_main():
        done = _answered(out_dir)  # every process's answers, each query once
        samples = [done[(q["behaviour_id"], q["input"])] for q in queries]
        write_jsonl(out_dir / SAMPLES, samples)
        for f in _partials(out_dir):
            f.unlink(missing_ok=True)
    dist.barrier()
    return samples if dist.is_main() else read_jsonl(out_dir / SAMPLES)


def _partials(out_dir: Path) -> list[Path]:
    """Partial answers: one process's file, or one per process under a launcher."""
    return sorted(out_dir.glob("samples.partial*.jsonl"))


def _repair_partials(out_dir: Path) -> None:
    """Cut the torn last line a kill may have left in each partial file (logged)."""
    for f in _partials(out_dir):
        dropped = repair_jsonl(f)
        if dropped:
            console.print(torn_tail_note(f, dropped), markup=False,
                          highlight=False, soft_wrap=True)


def _answered(out_dir: Path) -> dict[tuple[str, str], dict]:
    """(behaviour, input) -> sample, from every partial file an interrupted evaluation left.

    Their torn last lines were cut (:func:`_repair_partials`); any other bad line is an error
    naming ``file:line``, never skipped: skipping it would hide every answer after it.
    """
    done: dict[tuple[str, str], dict] = {}
    for f in _partials(out_dir):
        try:
            for rec in iter_jsonl(f, required=("behaviour_id", "input")):
                done[(rec["behaviour_id"], rec["input"])] = rec
        except PbbError as e:
            raise PbbError(f"{e} ({f.name} holds the answers of an interrupted evaluation: "
                           "delete that line, or the file to answer every query again, and "
                           "rerun)") from None
    return done
