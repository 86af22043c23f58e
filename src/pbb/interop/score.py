"""Scoring completions produced outside pbb (``pbb score SOURCE COMPLETIONS --out DIR``).

A hosted model finetuned on an ``openai`` export, a ``vllm serve`` endpoint, another harness:
whatever answered the evaluation queries, its completions are scored here with pbb's own
extraction, verifiers and recall check (:class:`pbb.evaluation.scoring.Scorer`, the code ``pbb run``
scores with), and written as a run directory: ``config.yaml``, ``eval/<curriculum>/<mode>/
samples.jsonl``, ``summary.json``, ``report.md`` (``pbb report DIR`` re-renders it).

COMPLETIONS is JSONL, one line per query, keyed by the ``custom_id`` of the ``openai`` export's
``eval/<mode>.jsonl`` (``mode|behaviour_id|k``), either ``{"custom_id": ..., "completion": "..."}``,
a line of OpenAI's Batch API output (``{"custom_id": ..., "response": {"body": {"choices":
[{"message": {"content": "..."}}]}}}``), or a sample lm-eval logged for an ``lm-eval`` export's
task (``--log_samples``: the id is in its ``doc``, the text in ``filtered_resps``; the files of
several tasks concatenated). Every query of a mode that appears must be answered:
a rate over the answered ones only would not be the rate the report claims.
"""

from __future__ import annotations

from pathlib import Path

from pbb.config import check_curriculum_name, dump_config
from pbb.errors import PbbError
from pbb.evaluation.scoring import Scorer
from pbb.folders import check_out, mark
from pbb.interop.export import eval_queries, open_source
from pbb.jsonio import atomic_write_text, directory_in_place, jsonl_lines, write_jsonl
from pbb.rows import curricula as curricula_mod
from pbb.store import RunStore


def _custom_id(rec: dict) -> str | None:
    """The query's id: ``custom_id``, or in an lm-eval logged sample its doc's ``custom_id``."""
    if "custom_id" in rec:
        return rec["custom_id"]
    doc = rec.get("doc")
    return doc.get("custom_id") if isinstance(doc, dict) else None


def _completion(rec: dict) -> str | None:
    if isinstance(rec.get("completion"), str):
        return rec["completion"]
    if "filtered_resps" in rec:  # an lm-eval logged sample (--log_samples)
        resp = rec["filtered_resps"]
        while isinstance(resp, list) and resp:
            resp = resp[0]
        return resp.strip() if isinstance(resp, str) else None
    try:
        content = rec["response"]["body"]["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return None
    return content if isinstance(content, str) else None


def read_completions(path: Path) -> dict[str, str]:
    """custom_id -> completion text; a bad line is a ``file:line`` error."""
    out: dict[str, str] = {}
    for lineno, rec, problem in jsonl_lines(Path(path)):
        where = f"{path}:{lineno}"
        if problem is None and not isinstance(rec, dict):
            problem = "not a JSON object"
        if problem:
            raise PbbError(f"{where}: {problem}")
        qid, text = _custom_id(rec), _completion(rec)
        if not isinstance(qid, str):
            raise PbbError(f"{where}: missing string field 'custom_id'")
        if text is None:
            raise PbbError(f"{where}: no completion text ('completion', or a Batch API "
                           "response's choices[0].message.content)")
        if qid in out:
            raise PbbError(f"{where}: custom_id {qid!r} appears twice")
        out[qid] = text
    if not out:
        raise PbbError(f"{path}: no completions")
    return out


def score(source: Path, completions: Path, out: Path, *, curriculum: str,
          config: Path | None = None, force: bool = False) -> dict:
    """Score ``completions`` against ``source``'s evaluation queries; returns the summary."""
    from pbb.evaluation.report import build_summary, write_report

    cfg, ds = open_source(source, config)
    try:
        check_curriculum_name(curriculum, cfg.curriculum.custom)
    except ValueError as e:
        raise PbbError(f"--curriculum {curriculum!r}: not a curriculum (it names what the model "
                       f"that wrote the completions was trained with): {e}") from None
    out = Path(out)
    parent = check_out(out, "score", force=force)  # before any work
    trained = bool(curricula_mod.build(curriculum, ds, cfg.curriculum, cfg.data.instruction_format))
    got = read_completions(completions)
    by_mode: dict[str, dict[str, str]] = {}
    for qid, text in got.items():
        by_mode.setdefault(qid.split("|", 1)[0], {})[qid] = text
    unknown = sorted(set(by_mode) - set(cfg.eval.modes))
    if unknown:
        raise PbbError(f"{completions}: custom_id mode(s) {unknown} are not evaluation modes of "
                       f"this run ({', '.join(cfg.eval.modes)})")
    modes = [m for m in cfg.eval.modes if m in by_mode]
    samples, ignored = {}, 0
    for mode in modes:
        queries = eval_queries(cfg, ds, mode, trained)
        # answers to queries the run asks other curricula (an untuned model answering every
        # exported query, train behaviours included) are not this curriculum's: left out
        other = set(eval_queries(cfg, ds, mode)) - set(queries)
        ignored += len(other & set(by_mode[mode]))
        stray = sorted(set(by_mode[mode]) - set(queries) - other)
        if stray:
            raise PbbError(f"{completions}: custom_id {stray[0]!r} is no query of this run "
                           f"({len(stray)} such)")
        missing = [qid for qid in queries if qid not in by_mode[mode]]
        if missing:
            raise PbbError(f"{completions}: {len(missing)} of {len(queries)} {mode} queries have "
                           f"no completion (first: {missing[0]!r})")
        scorer = Scorer(ds, curriculum, mode, cfg.data.instruction_format)
        samples[mode] = [scorer(q, by_mode[mode][qid]) for qid, q in queries.items()]

    data_dir = ds.path.resolve() if ds.path else None
    scored = cfg.model_copy(update={
        "curricula": [curriculum], "eval": cfg.eval.model_copy(update={"modes": modes}),
        "data": cfg.data.model_copy(update={"path": str(data_dir)})})
    with directory_in_place(out, parent) as tmp:
        mark(tmp, "score")
        store = RunStore(tmp)
        atomic_write_text(store.config, dump_config(scored))
        for mode, recs in samples.items():
            write_jsonl(store.samples(curriculum, mode), recs)
        summary = {**build_summary(tmp, scored, ds), "scored_from": str(completions)}
        if ignored:
            summary["ignored_completions"] = ignored
        write_report(tmp, summary)
    return summary
