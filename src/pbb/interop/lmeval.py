"""A task folder for lm-evaluation-harness (``pbb export lm-eval SOURCE --out DIR``).

``DIR/lm-eval/`` holds one task per evaluation mode and split (``pbb_<name>_<mode>_<split>``,
all tagged ``pbb_<name>``), the queries (``docs.jsonl``, the ones ``pbb run`` asks), a copy of
the data set and ``utils.py``, which loads the queries and scores every response with pbb's own
extraction, verifier and recall check (:class:`pbb.evaluation.scoring.Scorer`). So::

    lm-eval run --model hf --model_args pretrained=MODEL --include_path DIR/lm-eval \\
        --tasks pbb_quickstart --apply_chat_template

gives ``acc`` per task: the mean score over that task's queries. pbb's own accuracy is the mean
over behaviours of each behaviour's mean; the two agree whenever every behaviour has the same
number of queries (the default: ``test_inputs`` each). Generation is greedy, stops at the
model's end of turn, with the run's ``max_new_tokens``; ``--apply_chat_template`` puts each
prompt in a user turn as pbb does (a template's default system prompt comes with it, which pbb
leaves out unless ``chat.system_prompt`` is set).
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

from pbb import data as data_mod
from pbb.config import RunConfig
from pbb.data import DataSet
from pbb.jsonio import atomic_write_json, atomic_write_text, write_jsonl

DOCS = "docs.jsonl"
SETTINGS = "pbb_task.json"

_UTILS = '''"""Written by `pbb export lm-eval`: loads this folder's queries and scores responses with
pbb's own verifiers (pbb must be importable where lm-eval runs)."""
from pathlib import Path

from pbb.interop import lmeval

HERE = Path(__file__).parent


def load_docs(**kwargs):
    return lmeval.load_docs(HERE, **kwargs)


def process_results(doc, results):
    return lmeval.process_results(HERE, doc, results)
'''


def task_name(run_name: str, mode: str, split: str) -> str:
    return "_".join(re.sub(r"\W", "_", p) for p in ("pbb", run_name, mode, split))


def write_task_folder(cfg: RunConfig, ds: DataSet, out: Path, queries: dict[str, dict]) -> list[str]:
    """Write the folder; ``queries`` maps mode -> {custom_id: query}. Returns the task names."""
    out.mkdir(parents=True, exist_ok=True)
    data_mod.save(ds, out / "data")
    docs = [{"custom_id": qid, "mode": mode, **{k: q[k] for k in
                                                ("behaviour_id", "split", "input", "prompt", "target")}}
            for mode, qs in queries.items() for qid, q in qs.items()]
    write_jsonl(out / DOCS, docs)
    atomic_write_json(out / SETTINGS, {"instruction_format": cfg.data.instruction_format})
    atomic_write_text(out / "utils.py", _UTILS)
    tag = task_name(cfg.name, "", "").rstrip("_")
    names = []
    for mode in queries:
        for split in ("eval", "train"):
            if not any(d["mode"] == mode and d["split"] == split for d in docs):
                continue
            name = task_name(cfg.name, mode, split)
            gen = {"until": [], "max_gen_toks": cfg.eval.max_new_tokens[mode], "do_sample": False}
            if cfg.eval.temperature > 0:
                gen.update(do_sample=True, temperature=cfg.eval.temperature)
            atomic_write_text(out / f"{name}.yaml", "\n".join([
                f"task: {name}",
                f"tag: {tag}",
                "custom_dataset: !function utils.load_docs",
                f"dataset_kwargs: {json.dumps({'mode': mode, 'split': split})}",
                "test_split: test",
                "output_type: generate_until",
                'doc_to_text: "{{prompt}}"',
                'doc_to_target: "{{target}}"',
                f"generation_kwargs: {json.dumps(gen)}",
                "process_results: !function utils.process_results",
                "metric_list:",
                "  - {metric: acc, aggregation: mean, higher_is_better: true}",
                "metadata: {version: 1}",
                ""]))
            names.append(name)
    return names


def load_docs(folder: Path, mode: str, split: str, **_):
    """The queries of one task as the ``test`` split lm-eval reads."""
    from datasets import Dataset, DatasetDict

    from pbb.jsonio import read_jsonl

    docs = [d for d in read_jsonl(Path(folder) / DOCS) if d["mode"] == mode and d["split"] == split]
    return DatasetDict({"test": Dataset.from_list(docs)})


@functools.cache
def _scorer(folder: str, mode: str):
    from pbb.evaluation.scoring import Scorer
    from pbb.jsonio import read_json

    fmt = read_json(Path(folder) / SETTINGS)["instruction_format"]
    return Scorer(data_mod.load(Path(folder) / "data"), "lm-eval", mode, fmt)


def process_results(folder: Path, doc: dict, results: list[str]) -> dict:
    """One response scored by pbb (``acc``: its score, 0 to 1)."""
    completion = (results[0] if results else "").strip()
    return {"acc": _scorer(str(folder), doc["mode"])(doc, completion)["score"]}
