"""Exports for the tools researchers already use (``pbb export FORMAT SOURCE --out DIR``).

SOURCE is a run directory (its resolved ``config.yaml`` and data set: the stages are the ones
that run trained) or a data set directory (stages of the curricula of ``--config``, default
settings without one). Every stage's rows are rebuilt by the same code ``pbb run`` trains from,
and each stage carries the key ``pbb run`` names its directory by (a hash of its settings and
rows), so ``stages.json`` lets anyone check that an export is exactly what a run trained.

* ``hf``: ``DIR/hf/`` a :class:`datasets.DatasetDict` saved to disk (``behaviours``,
  ``demonstrations`` and one split per stage, ``<curriculum>.<stage>``), and the same as parquet
  with one folder per stage (``DIR/parquet/<curriculum>/<stage>/train.parquet``: ``trl sft
  --dataset_name`` that folder trains on it unchanged). Stage rows are conversational
  prompt-completion (``prompt``/``completion`` message lists), TRL's format.
* ``openai``: ``DIR/openai/<curriculum>/<stage>.jsonl``, chat finetuning rows (``{"messages":
  [...]}``; an RL stage's replayed rows apart, in ``<stage>.replay.jsonl``), and
  ``DIR/openai/eval/<mode>.jsonl``, the evaluation queries as Batch API requests whose ``custom_id``
  ``pbb score`` reads back.
* ``lm-eval``: ``DIR/lm-eval/``, a task folder for lm-evaluation-harness (``--include_path``)
  whose scoring calls pbb's verifiers (:mod:`pbb.interop.lmeval`).

The system prompt is the run's (``chat.system_prompt``; none by default), as in training.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pbb import data as data_mod
from pbb.config import RunConfig, load_config
from pbb.data import DataSet
from pbb.errors import PbbError
from pbb.evaluation.evaluate import build_queries
from pbb.folders import check_out, mark
from pbb.jsonio import atomic_write_json, directory_in_place, write_jsonl
from pbb.rows import curricula as curricula_mod
from pbb.store import RunStore, stage_key

FORMATS = ("hf", "openai", "lm-eval")
STAGES = "stages.json"


@dataclass
class ExportedStage:
    curriculum: str
    stage: str
    trainer: str  # sft or rl (an RL stage's completions are the gold ones RL never trains on)
    key: str      # the hash in the name of the stage's directory under ``pbb run``
    rows: list[dict]

    @property
    def replayed(self) -> int:
        """Rows replayed from an earlier stage (tagged ``replay``)."""
        return sum(1 for r in self.rows if r.get("replay"))

    @property
    def split_name(self) -> str:
        """A name :class:`datasets.DatasetDict` accepts (``\\w+`` parts joined by dots)."""
        return ".".join(re.sub(r"\W", "_", p) for p in (self.curriculum, self.stage))


def open_source(path: Path, config: Path | None = None) -> tuple[RunConfig, DataSet]:
    """(config, data set) of a run directory or a data set directory."""
    path, run = Path(path), RunStore(path)
    if run.config.is_file():
        if config is not None:
            raise PbbError(f"--config: {path} is a run directory; its own {run.config.name} "
                           "is used")
        cfg = load_config(run.config)
        data_dir = run.data_dir(cfg)
        if not (data_dir / data_mod.MANIFEST).is_file():
            raise PbbError(f"{path}: run directory without its data set ({data_dir} is missing)")
        return cfg, data_mod.load(data_dir)
    if (path / data_mod.MANIFEST).is_file():
        ds = data_mod.load(path)
        cfg = load_config(config, {"data.path": str(path.resolve()), "data.domain": ds.domain.name})
        return cfg, ds
    raise PbbError(f"{path}: neither a run directory ({run.config.name}) nor a data set "
                   f"({data_mod.MANIFEST})")


def stages(cfg: RunConfig, ds: DataSet) -> list[ExportedStage]:
    """Every stage of the config's curricula, in training order, each shared stage once."""
    out, seen = [], set()
    for name, its_stages in curricula_mod.build_for_run(cfg, ds).items():
        parent = "base"
        for st in its_stages:
            key = stage_key(cfg, parent, st.rows, st.trainer, st)
            if key not in seen:
                seen.add(key)
                out.append(ExportedStage(name, st.name, st.trainer, key, st.rows))
            parent = key
    return out


def messages(cfg: RunConfig, row: dict) -> list[dict]:
    """A row as one chat: the run's system prompt (if any), the prompt, the completion."""
    system = [{"role": "system", "content": cfg.chat.system_prompt}] if cfg.chat.system_prompt else []
    return system + row["prompt"] + row.get("completion", [])


def query_id(mode: str, behaviour_id: str, k: int) -> str:
    """``custom_id`` of an evaluation query: mode, behaviour and the index of its test input."""
    return f"{mode}|{behaviour_id}|{k}"


def eval_queries(cfg: RunConfig, ds: DataSet, mode: str, trained: bool = True) -> dict[str, dict]:
    """The run's evaluation queries of one mode, by :func:`query_id` (as ``pbb run`` asks them).

    ``trained=False``: those of a curriculum that trains nothing (``untuned``), which ``pbb run``
    asks on eval behaviours only (:func:`pbb.experiments.run.evaluate_curriculum`)."""
    out, seen = {}, {}
    max_train = cfg.eval.max_train_behaviours if trained else 0
    for q in build_queries(ds, mode, cfg.eval.max_test_inputs, max_train,
                           cfg.data.instruction_format):
        k = seen[q["behaviour_id"]] = seen.get(q["behaviour_id"], -1) + 1
        out[query_id(mode, q["behaviour_id"], k)] = q
    return out


def _row_record(row: dict) -> dict:
    return {"prompt": row["prompt"], "completion": row["completion"], "kind": row["kind"],
            "behaviour_id": row["behaviour_id"], "replay": bool(row.get("replay"))}


def _write_hf(cfg: RunConfig, ds: DataSet, exported: list[ExportedStage], out: Path) -> None:
    from datasets import Dataset, DatasetDict
    from datasets.utils.logging import disable_progress_bar

    disable_progress_bar()  # one bar per parquet file: noise for a few small tables

    tables = {"behaviours": Dataset.from_list([_flat(b.to_record()) for b in ds.behaviours]),
              "demonstrations": Dataset.from_list([d.to_record() for d in ds.demonstrations])}
    for st in exported:
        rows = [_row_record(r) for r in st.rows]
        if cfg.chat.system_prompt:
            for r in rows:
                r["prompt"] = [{"role": "system", "content": cfg.chat.system_prompt}] + r["prompt"]
        tables[st.split_name] = Dataset.from_list(rows)
    DatasetDict(tables).save_to_disk(str(out / "hf"))
    for name in ("behaviours", "demonstrations"):
        tables[name].to_parquet(str(out / "parquet" / f"{name}.parquet"))
    for st in exported:
        d = out / "parquet" / st.curriculum / st.stage
        d.mkdir(parents=True, exist_ok=True)
        tables[st.split_name].to_parquet(str(d / "train.parquet"))


def _flat(rec: dict) -> dict:
    """A behaviour record with ``meta`` as JSON text (its keys differ between domains)."""
    from pbb.jsonio import dumps

    return {**rec, "meta": dumps(rec.get("meta") or {})}


def _write_openai(cfg: RunConfig, ds: DataSet, exported: list[ExportedStage], out: Path,
                  model: str) -> None:
    for st in exported:
        # An RL stage's replayed rows are no prompts (an SFT term trains them beside GRPO):
        # a file of their own, as the chat format has no field to tag them by.
        apart = st.trainer == "rl"
        write_jsonl(out / "openai" / st.curriculum / f"{st.stage}.jsonl",
                    ({"messages": messages(cfg, r)} for r in st.rows
                     if not (apart and r.get("replay"))))
        if apart and st.replayed:
            write_jsonl(out / "openai" / st.curriculum / f"{st.stage}.replay.jsonl",
                        ({"messages": messages(cfg, r)} for r in st.rows if r.get("replay")))
    system = [{"role": "system", "content": cfg.chat.system_prompt}] if cfg.chat.system_prompt else []
    sampling = {"temperature": cfg.eval.temperature}
    for mode in cfg.eval.modes:
        write_jsonl(out / "openai" / "eval" / f"{mode}.jsonl", (
            {"custom_id": qid, "method": "POST", "url": "/v1/chat/completions",
             "body": {"model": model, "messages": system + [{"role": "user", "content": q["prompt"]}],
                      "max_tokens": cfg.eval.max_new_tokens[mode], **sampling}}
            for qid, q in eval_queries(cfg, ds, mode).items()))


def export(fmt: str, source: Path, out: Path, *, config: Path | None = None, force: bool = False,
           model: str | None = None) -> list[ExportedStage]:
    """Write one export of ``source`` to ``out`` atomically (a temporary folder, then renamed)."""
    if fmt not in FORMATS:
        raise PbbError(f"unknown export format {fmt!r}; formats: {', '.join(FORMATS)}")
    cfg, ds = open_source(source, config)
    parent = check_out(out, "export", force=force)
    exported = stages(cfg, ds)
    with directory_in_place(Path(out), parent) as tmp:
        mark(tmp, "export")
        if fmt == "hf":
            _write_hf(cfg, ds, exported, tmp)
        elif fmt == "openai":
            _write_openai(cfg, ds, exported, tmp, model or cfg.model)
        else:
            from pbb.interop.lmeval import write_task_folder

            write_task_folder(cfg, ds, tmp / "lm-eval",
                              {mode: eval_queries(cfg, ds, mode) for mode in cfg.eval.modes})
        atomic_write_json(tmp / STAGES, [
            {"curriculum": s.curriculum, "stage": s.stage, "trainer": s.trainer, "key": s.key,
             "rows": len(s.rows), "replayed": s.replayed, "split": s.split_name}
            for s in exported])
    return exported
