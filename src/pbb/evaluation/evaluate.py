"""Evaluation: one query per (behaviour, test input), answered by a generator, scored by the
domain's verifier.

Where the model runs is the generator's business (:mod:`pbb.evaluation.generators`: in this
process, a server, canned text in a test); how a completion is scored is :mod:`pbb.evaluation.scoring`.

Samples are appended to ``samples.partial.jsonl`` batch by batch, so an interrupted evaluation
resumes where it stopped (the half record a kill may leave at the end is cut first, and logged);
the finished ``samples.jsonl`` is written atomically in query order.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from pbb.data import DataSet
from pbb.errors import PbbError
from pbb.evaluation.generators import Generator
from pbb.evaluation.recall import recall_score
from pbb.evaluation.scoring import Scorer
from pbb.jsonio import (
    append_jsonl,
    iter_jsonl,
    read_jsonl,
    repair_jsonl,
    torn_tail_note,
    write_jsonl,
)
from pbb.records import Sample, check
from pbb.rows.render import instruction_text, make_row, row_rng
from pbb.store import PARTIAL_GLOB, SAMPLES, partial_samples

console = Console(stderr=True, soft_wrap=True)  # a message is one line in a log file


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
    queries = []
    for b, d, row in _query_rows(ds, mode, max_test_inputs, max_train_behaviours, fmt):
        queries.append({"behaviour_id": b.id, "split": b.split, "mode": mode,
                        "input": "" if d is None else d.input,
                        "prompt": row["prompt"][0]["content"],
                        "target": instruction_text(b, fmt) if d is None else d.output})
    return queries


def _query_rows(ds: DataSet, mode: str, max_test_inputs: int | None,
                max_train_behaviours: int | None, fmt: str):
    """(behaviour, test demonstration or None for recall, rendered row) of every query."""
    tests = ds.by_behaviour("test")
    for b in evaluated_behaviours(ds, max_train_behaviours):
        if mode == "recall":
            yield b, None, make_row(ds.domain, b, "declarative",
                                    row_rng(ds.seed, "eval", mode, b.id), fmt=fmt)
            continue
        for d in tests[b.id][:max_test_inputs]:
            yield b, d, make_row(ds.domain, b, mode, row_rng(ds.seed, "eval", mode, b.id, d.input),
                                 d, fmt=fmt)


def token_count(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def gold_lengths(ds: DataSet, mode: str, tokenizer, max_test_inputs: int | None = None,
                 max_train_behaviours: int | None = None, fmt: str = "code") -> list[int]:
    """The tokens of each of ``mode``'s queries' gold completions (what a model that executes
    the behaviour writes)."""
    return completion_tokens(tokenizer, (row for _, _, row in _query_rows(
        ds, mode, max_test_inputs, max_train_behaviours, fmt)))


def completion_tokens(tokenizer, rows) -> list[int]:
    """The tokens of each row's gold completion (rows without one are skipped)."""
    return [token_count(tokenizer, row["completion"][0]["content"]) for row in rows
            if row.get("completion")]


def mean_cut(lengths: list[int], budget: int) -> float | None:
    """The mean of ``lengths``, each cut at the generation budget (what a completion can
    write): what an evaluation's time goes with (:func:`pbb.experiments.rates.eval_rate`);
    None for none."""
    return sum(min(n, budget) for n in lengths) / len(lengths) if lengths else None


def cut_completions(ds: DataSet, mode: str, tokenizer, max_new_tokens: int,
                    max_test_inputs: int | None = None, max_train_behaviours: int | None = None,
                    fmt: str = "code") -> str | None:
    """A warning when the gold completions of ``mode``'s queries (the rows a model is trained
    to write) are longer than ``max_new_tokens``, else None.

    Why: generation stops at the budget, so a model that writes a gold-length answer is cut
    before its answer line and scored wrong, and nothing else says so (a nested composite's CoT
    is ~300 tokens; the composition config's budget was 160)."""
    return cut_warning(mode, gold_lengths(ds, mode, tokenizer, max_test_inputs,
                                          max_train_behaviours, fmt), max_new_tokens)


def cut_warning(mode: str, lengths: list[int], max_new_tokens: int) -> str | None:
    """:func:`cut_completions`' warning from the gold completions' lengths."""
    over = sum(n > max_new_tokens for n in lengths)
    if not over:
        return None
    return (f"eval.max_new_tokens.{mode} is {max_new_tokens}: {over} of {len(lengths)} gold "
            f"{mode} completions are longer (the longest {max(lengths)} tokens), so a model "
            f"that writes them is cut off and scored wrong; raise it")


def recall_rate(generator: Generator, queries: list[dict], *, max_new_tokens: int) -> dict:
    """``{"recall", "n"}``: the share of these ``recall`` queries whose completion is their
    instruction (the stopping rule's check after an epoch; nothing is written)."""
    completions = generator.generate([q["prompt"] for q in queries],
                                     max_new_tokens=max_new_tokens, desc="recall check",
                                     progress=False)
    hits = sum(recall_score(c, q["target"]) for c, q in zip(completions, queries))
    return {"recall": round(hits / max(1, len(queries)), 4), "n": len(queries)}


def evaluate(generator: Generator, ds: DataSet, *, curriculum: str, mode: str, out_dir: Path,
             max_new_tokens: int, max_test_inputs: int | None = None, progress: bool = True,
             max_train_behaviours: int | None = None, fmt: str = "code") -> list[dict]:
    """Evaluate one (curriculum, mode) with ``generator``; resumable; returns the samples.

    Every sample records the completion and the fields its score is computed from, so any
    rate in ``summary.json`` can be recomputed from ``samples.jsonl``. CoT samples also carry
    ``recall_exact`` (:mod:`pbb.evaluation.recall`). The generator decides where the model runs
    (:mod:`pbb.evaluation.generators`); the samples are scored the same whichever it is.
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
    mine = out_dir / partial_samples(dist.rank() if dist.launched() else None)
    to_sample = Scorer(ds, curriculum, mode, fmt)

    def save_batch(items: list[tuple[int, str]]) -> None:
        for i, completion in items:
            append_jsonl(mine, to_sample(todo[i], completion))
        dist.follow_share()  # a sweep's job takes the cores of jobs that have ended

    if todo:
        generator.generate([q["prompt"] for q in todo], max_new_tokens=max_new_tokens,
                           desc=f"eval {curriculum}/{mode}", progress=progress and dist.is_main(),
                           on_batch=save_batch)
    dist.barrier()  # every share answered
    if dist.is_main():
        done = _answered(out_dir)  # every process's answers, each query once
        samples = [check(Sample, done[(q["behaviour_id"], q["input"])], str(out_dir / SAMPLES))
                   for q in queries]
        write_jsonl(out_dir / SAMPLES, samples)
        for f in _partials(out_dir):
            f.unlink(missing_ok=True)
    dist.barrier()
    return samples if dist.is_main() else read_jsonl(out_dir / SAMPLES)


def _partials(out_dir: Path) -> list[Path]:
    """Partial answers: one process's file, or one per process under a launcher."""
    return sorted(out_dir.glob(PARTIAL_GLOB))


def _repair_partials(out_dir: Path) -> None:
    """Cut the torn last line a kill may have left in each partial file (logged)."""
    for f in _partials(out_dir):
        dropped = repair_jsonl(f)
        if dropped:
            console.print(torn_tail_note(f, dropped), markup=False, highlight=False)


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
