"""Evaluations shared between runs: the same model, evaluated the same way, is evaluated once.

Several runs often end in the same trained stage (a sweep's points, the claims that share a
setting: ``pbb claims`` evaluates the proactive model of one seed in five claims). Greedy
evaluation is deterministic, so evaluating that model again on the same queries with the same
settings gives the same completions, at the same cost again (seconds a mode for short arithmetic
traces on a CPU, minutes for long traces or big models). So a finished evaluation is kept in the
final stage's directory (``STAGE/evals/<mode>-<key>/``, :mod:`pbb.store`) and a run that would
evaluate that model the same way copies its samples instead.

The key (:func:`eval_key`) hashes everything a sample depends on besides the model: the
queries as this version of pbb renders them (prompts and targets: a changed template is a new
key), the data set's records (what the verifier reads), the mode and its generation settings
(tokens, batch size, engine, temperature, precision, backend), the instruction format (a CoT's
recall is scored against it), the chat settings, the model's load options, the kind of device
(``precision: auto`` and ``generator: auto`` resolve by it) and the number of processes (a
launcher shards the batches). Left out: the curriculum's name (a copy is relabelled, so it is
byte for byte what the run would have written), settings that change no sample
(``eval.modes``, ``eval.bootstrap``) and the caps the queries show (``max_train_behaviours``,
``max_test_inputs``: a cap above what there is asks the same queries). The scoring code is not
in the key: samples kept before a change to a verifier keep their old scores, as a run's own
samples do.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from pbb import dist
from pbb.evaluation.evaluate import build_queries
from pbb.jsonio import atomic_write_json, read_json, read_jsonl, write_jsonl
from pbb.memo import once
from pbb.records import Sample, check
from pbb.store import EVAL_RECORD, PARTIAL_GLOB, SAMPLES, shared_eval_dir

#: eval settings left out of the key's settings: those that change no sample (a run's modes,
#: its intervals' resamples), the other modes' token budgets, and those the queries themselves
#: show (which behaviours and inputs are asked)
_NOT_IN_KEY = ("modes", "bootstrap", "max_new_tokens", "max_train_behaviours", "max_test_inputs")


def eval_key(cfg, ds, mode: str, max_train_behaviours: int | None, device: str) -> str:
    """Hash of everything an evaluation's samples depend on besides the model (module doc)."""
    queries = build_queries(ds, mode, cfg.eval.max_test_inputs, max_train_behaviours,
                            cfg.data.instruction_format)
    settings = {
        "mode": mode,
        "max_new_tokens": cfg.eval.max_new_tokens[mode],
        "format": cfg.data.instruction_format,  # a CoT's recall is scored against it
        "eval": {k: v for k, v in cfg.eval.model_dump(mode="json").items() if k not in _NOT_IN_KEY},
        "chat": cfg.chat.model_dump(mode="json"),
        "model_options": [cfg.model_dtype, cfg.trust_remote_code],
        "device": device,
        "processes": dist.world(),
        "domain": ds.domain.name,
        "domain_config": ds.domain_config.model_dump(mode="json"),
        "seed": ds.seed,
    }
    h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for q in queries:
        h.update(json.dumps(q, ensure_ascii=False, sort_keys=True).encode())
    h.update(once(ds, ("records",), lambda: _records(ds)))  # one update: the same digest
    return h.hexdigest()[:12]


def _records(ds) -> bytes:
    """The data set's behaviours and demonstrations as :func:`eval_key` hashes them."""
    return b"".join(json.dumps(rec.to_record(), ensure_ascii=False).encode()
                    for rec in (*ds.behaviours, *ds.demonstrations))


def kept(stage_dir: Path, cfg, ds, mode: str, max_train_behaviours: int | None,
         device: str) -> Path:
    """The folder an evaluation of ``stage_dir``'s model in ``mode`` is kept in (maybe not yet)."""
    return shared_eval_dir(stage_dir, mode, eval_key(cfg, ds, mode, max_train_behaviours, device))


def is_kept(where: Path) -> bool:
    """Whether ``where`` holds a finished evaluation (its samples are written last)."""
    return (Path(where) / SAMPLES).is_file()


def seconds_of(where: Path) -> float:
    """How long the kept evaluation took where it ran (0 when unknown)."""
    path = Path(where) / EVAL_RECORD
    return float(read_json(path).get("seconds", 0.0)) if path.is_file() else 0.0


def take(where: Path, eval_dir: Path, curriculum: str) -> list[dict]:
    """Copy the kept samples into a run's ``eval_dir``, labelled with its ``curriculum``
    (atomically; partial answers an interrupted evaluation left there are dropped)."""
    source = Path(where) / SAMPLES
    samples = [check(Sample, {**s, "curriculum": curriculum}, str(source))
               for s in read_jsonl(source)]
    eval_dir = Path(eval_dir)
    eval_dir.mkdir(parents=True, exist_ok=True)
    write_jsonl(eval_dir / SAMPLES, samples)
    for f in eval_dir.glob(PARTIAL_GLOB):
        f.unlink(missing_ok=True)
    return samples


def keep(where: Path, samples: list[dict], seconds: float, settings: dict) -> None:
    """Keep a finished evaluation for other runs: its record first, its samples last."""
    where = Path(where)
    where.mkdir(parents=True, exist_ok=True)
    atomic_write_json(where / EVAL_RECORD, {"seconds": round(seconds, 1), **settings})
    write_jsonl(where / SAMPLES, samples)
