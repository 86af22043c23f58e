"""Data sets on disk: behaviours + demonstrations + manifest, deterministic from (config, seed).

Files (the contract, also in docs/domains.md, Data sets):

* ``behaviours.jsonl`` - one behaviour per line (id, domain, name, instruction, description,
  split, meta).
* ``demonstrations.jsonl`` - one execution example per line (behaviour_id, input, output, trace,
  use); ``use`` is ``train`` for demonstrations and ``test`` for held-out test inputs.
* ``manifest.json`` - domain, resolved domain config, seed, counts, package version and the
  sha256 of both JSONL files. No timestamps: the same arguments give the same bytes.

A data set directory is written to a temporary sibling and renamed into place, so an interrupted
or failed generation leaves nothing behind.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ValidationError
from tqdm import tqdm

from pbb import folders
from pbb._version import __version__
from pbb.config import error_line
from pbb.domains import Behaviour, Demonstration, Domain, get_domain
from pbb.errors import PbbError
from pbb.jsonio import (
    atomic_write_json,
    directory_in_place,
    feed_file,
    iter_jsonl,
    read_json,
    write_jsonl,
)
from pbb.records import BehaviourRecord, DataManifest, check

BEHAVIOURS = "behaviours.jsonl"
DEMONSTRATIONS = "demonstrations.jsonl"
MANIFEST = "manifest.json"
FORMAT_VERSION = 1
MAX_COUNT = 1_000_000

_DEMO_FIELDS = ("behaviour_id", "input", "output", "use")


@dataclass
class DataSet:
    """A loaded data set; ``demos`` and ``tests`` map behaviour id -> its records."""

    path: Path | None
    domain: Domain
    domain_config: BaseModel
    seed: int
    behaviours: list[Behaviour]
    demonstrations: list[Demonstration]

    def split(self, name: str) -> list[Behaviour]:
        return [b for b in self.behaviours if b.split == name]

    def by_behaviour(self, use: str) -> dict[str, list[Demonstration]]:
        out: dict[str, list[Demonstration]] = {b.id: [] for b in self.behaviours}
        for d in self.demonstrations:
            if d.use == use:
                out[d.behaviour_id].append(d)
        return out

    def behaviour(self, behaviour_id: str) -> Behaviour:
        for b in self.behaviours:
            if b.id == behaviour_id:
                return b
        raise KeyError(behaviour_id)


def parse_domain_config(domain: Domain, options: dict, where: str | None = None) -> BaseModel:
    """Validate domain knobs; the first problem becomes one readable line naming ``where``
    they came from (default: the domain's options)."""
    if not isinstance(options, dict):
        raise PbbError(f"{where or domain.name + ' options'}: a mapping of the {domain.name} "
                       f"domain's knobs, not {type(options).__name__}")
    try:
        return domain.Config(**options)
    except ValidationError as e:
        raise PbbError(error_line(e, where or f"{domain.name} options")) from None


def _check_counts(behaviours: int, demos: int, test_inputs: int, eval_fraction: float) -> None:
    for name, value, least in (("--behaviours", behaviours, 1), ("--demos", demos, 1),
                               ("--test-inputs", test_inputs, 1)):
        if not least <= value <= MAX_COUNT:
            raise PbbError(f"{name} must be between {least} and {MAX_COUNT}, got {value}")
    if not 0.0 <= eval_fraction <= 1.0:
        raise PbbError(f"--eval-fraction must be in [0, 1], got {eval_fraction}")


def assign_splits(behaviours: list[Behaviour], eval_fraction: float, seed: int) -> None:
    """Mark ``round(n * eval_fraction)`` behaviours, drawn from ``seed``, as eval; the rest train.
    Generated and imported data sets alike (the draw is part of the data's bytes)."""
    import random

    n_eval = round(len(behaviours) * eval_fraction)
    eval_ids = set(random.Random(f"{seed}|split").sample([b.id for b in behaviours], n_eval))
    for b in behaviours:
        b.split = "eval" if b.id in eval_ids else "train"


def generate(domain_name: str, *, behaviours: int, demos: int, test_inputs: int,
             eval_fraction: float, seed: int, options: dict | None = None,
             progress: bool = True) -> DataSet:
    """Build a data set in memory. Every random draw flows from ``seed``."""
    import random

    domain = get_domain(domain_name)
    _check_counts(behaviours, demos, test_inputs, eval_fraction)
    cfg = parse_domain_config(domain, options or {})
    domain.check_counts(cfg, demos, test_inputs)

    items = domain.generate(cfg, behaviours, random.Random(f"{seed}|behaviours"))
    assign_splits(items, eval_fraction, seed)

    records: list[Demonstration] = []
    for b in tqdm(items, desc="demonstrations", unit="behaviour", disable=not progress or None,
                  leave=False):
        rng = random.Random(f"{seed}|inputs|{b.id}")
        demo_inputs, test_queries = domain.sample_inputs(cfg, b, demos, test_inputs, rng)
        for use, queries in (("train", demo_inputs), ("test", test_queries)):
            for q in queries:
                ex = domain.execute(b, q)
                records.append(Demonstration(b.id, q, ex.output, ex.trace, use))
    return DataSet(None, domain, cfg, seed, items, records)


def _sha256(path: Path) -> str:
    return feed_file(hashlib.sha256(), path).hexdigest()


def manifest(ds: DataSet, files: dict[str, str], extra: dict | None = None) -> dict:
    counts = {"behaviours": len(ds.behaviours), "train_behaviours": len(ds.split("train")),
              "eval_behaviours": len(ds.split("eval")),
              "demonstrations": sum(d.use == "train" for d in ds.demonstrations),
              "test_inputs": sum(d.use == "test" for d in ds.demonstrations)}
    return {"format_version": FORMAT_VERSION, "domain": ds.domain.name,
            "config": ds.domain_config.model_dump(mode="json"), "seed": ds.seed,
            "counts": counts, **(extra or {}), "pbb_version": __version__,
            "files": {name: {"sha256": digest} for name, digest in files.items()}}


def save(ds: DataSet, out: Path, *, force: bool = False, extra: dict | None = None,
         extra_files: dict[str, list[dict]] | None = None) -> Path:
    """Write the three files (and ``extra_files``, e.g. a report) to ``out``, all or nothing.

    ``out`` must be new, empty, or a data set pbb wrote (replaced only with ``force``):
    :mod:`pbb.folders`."""
    out = Path(out)
    with directory_in_place(out, folders.check_out(out, "data", force=force)) as tmp:
        folders.mark(tmp, "data")
        write_jsonl(tmp / BEHAVIOURS, (b.to_record() for b in ds.behaviours))
        write_jsonl(tmp / DEMONSTRATIONS, (d.to_record() for d in ds.demonstrations))
        for name, records in (extra_files or {}).items():
            write_jsonl(tmp / name, records)
        files = {n: _sha256(tmp / n) for n in (BEHAVIOURS, DEMONSTRATIONS)}
        atomic_write_json(tmp / MANIFEST, manifest(ds, files, extra))
    ds.path = out
    return out


def load(path: Path) -> DataSet:
    """Read a data set directory; any broken record is a ``file:line`` error."""
    path = Path(path)
    if not path.is_dir():
        raise PbbError(f"{path}: not a data set directory")
    man = check(DataManifest, read_json(path / MANIFEST), str(path / MANIFEST))
    try:
        domain = get_domain(man["domain"])
    except PbbError as e:
        raise PbbError(f"{path / MANIFEST}: field domain: {e}") from None
    cfg = parse_domain_config(domain, man.get("config") or {}, where=f"{path / MANIFEST}: config")
    behaviours = [Behaviour.from_record(check(BehaviourRecord, rec, f"{path / BEHAVIOURS}:{n}"))
                  for n, rec in enumerate(iter_jsonl(path / BEHAVIOURS), start=1)]
    ids = {b.id for b in behaviours}
    if len(ids) != len(behaviours):
        raise PbbError(f"{path / BEHAVIOURS}: duplicate behaviour ids")
    demos = []
    for lineno, rec in enumerate(iter_jsonl(path / DEMONSTRATIONS, _DEMO_FIELDS), start=1):
        if rec["behaviour_id"] not in ids:
            raise PbbError(f"{path / DEMONSTRATIONS}:{lineno}: unknown behaviour_id "
                           f"{rec['behaviour_id']!r}")
        if rec["use"] not in ("train", "test"):
            raise PbbError(f"{path / DEMONSTRATIONS}:{lineno}: use must be train or test")
        demos.append(Demonstration(rec["behaviour_id"], str(rec["input"]), str(rec["output"]),
                                   str(rec.get("trace") or ""), rec["use"]))
    return DataSet(path, domain, cfg, int(man.get("seed", 0)), behaviours, demos)


def validate(ds: DataSet, progress: bool = True) -> list[str]:
    """Re-execute every demonstration; return one line per mismatch (empty list = valid)."""
    problems: list[str] = []
    by_id = {b.id: b for b in ds.behaviours}
    names = [b.name for b in ds.behaviours]
    if len(set(names)) != len(names):
        problems.append("duplicate pointer names among behaviours")
    for lineno, d in enumerate(tqdm(ds.demonstrations, desc="validate", unit="demo",
                                    disable=not progress or None, leave=False), start=1):
        where = f"{DEMONSTRATIONS}:{lineno}"
        try:
            ex = ds.domain.execute(by_id[d.behaviour_id], d.input)
        except PbbError as e:
            problems.append(f"{where}: {e}")
            continue
        if ex.output != d.output:
            problems.append(f"{where}: {d.input} gives {ex.output}, file says {d.output}")
        elif d.trace and ex.trace != d.trace:
            problems.append(f"{where}: trace of {d.input} differs from re-execution")
        elif ds.domain.score(by_id[d.behaviour_id], d.input, d.output) != 1.0:
            problems.append(f"{where}: the verifier rejects {d.output!r} for {d.input}")
    tests = ds.by_behaviour("test")
    for b_id, demos in ds.by_behaviour("train").items():
        held_out = {d.input for d in tests[b_id]}
        leaked = [d.input for d in demos if d.input in held_out]
        if leaked:
            problems.append(f"{b_id}: test input {leaked[0]} is also a demonstration input")
    if ds.path is not None and (ds.path / MANIFEST).is_file():
        recorded = read_json(ds.path / MANIFEST).get("files", {})
        for name, info in recorded.items():
            if (ds.path / name).is_file() and _sha256(ds.path / name) != info.get("sha256"):
                problems.append(f"{name}: content differs from the sha256 in {MANIFEST}")
    return problems
