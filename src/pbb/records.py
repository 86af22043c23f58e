"""The records pbb writes, as types: a training row, an evaluation query, a scored sample, a
finished stage's ``done.json`` and a run's ``summary.json``.

Why types and not prose: these files are read by other tools (a notebook, a plotting script,
``pbb report`` of a later version), and a field renamed in one module but not in another would
go unnoticed until someone's analysis broke. Each record is a ``TypedDict`` (the code keeps
building and reading plain dicts, as JSON gives them back) checked by pydantic where it is
written: a summary that does not match :class:`Summary` is an error before it reaches disk. The
JSON Schema of ``summary.json`` is generated from :class:`Summary`
(``python scripts/summary_schema.py``, shipped as ``docs/summary.schema.json``).

Records allow extra keys where a domain or a trainer adds its own (a domain's sample metrics,
RL statistics in ``done.json``); the keys named here are always present unless marked
``NotRequired``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, NotRequired

from pydantic import ConfigDict, TypeAdapter, ValidationError, with_config
from typing_extensions import TypedDict

from pbb.errors import PbbError
from pbb.jsonio import iter_jsonl, read_json

Split = Literal["train", "eval"]
OPEN = ConfigDict(extra="allow")
CLOSED = ConfigDict(extra="forbid")


@with_config(OPEN)
class Message(TypedDict):
    role: str
    content: str


@with_config(OPEN)
class Row(TypedDict):
    """One training row (:func:`pbb.rows.render.make_row`): a user turn, the assistant turn the
    loss is on, the row kind (declarative, demonstration, cot...) and what it is about."""
    prompt: list[Message]
    completion: list[Message]
    kind: str
    behaviour_id: str
    input: str


@with_config(OPEN)
class Query(TypedDict):
    """One evaluation question (:func:`pbb.evaluation.evaluate.build_queries`)."""
    behaviour_id: str
    split: Split
    mode: str
    input: str
    prompt: str
    target: str


@with_config(OPEN)
class Sample(Query):
    """A query with the model's completion and its score (one line of ``samples.jsonl``);
    ``recall_exact`` on CoT samples, and a domain's own metrics, are extra keys."""
    curriculum: str
    completion: str
    prediction: str | None
    score: float


@with_config(OPEN)
class BehaviourRecord(TypedDict):
    """One line of a data set's ``behaviours.jsonl`` (:class:`pbb.domains.Behaviour`)."""
    id: str
    domain: str
    name: str
    instruction: str
    split: Split
    description: NotRequired[str | None]
    meta: NotRequired[dict[str, Any] | None]


@with_config(OPEN)
class FileDigest(TypedDict):
    sha256: NotRequired[str | None]


@with_config(OPEN)
class DataManifest(TypedDict):
    """A data set's ``manifest.json`` (:func:`pbb.data.manifest`): the fields read back."""
    domain: str
    config: NotRequired[dict[str, Any] | None]
    seed: NotRequired[int]
    counts: NotRequired[dict[str, int] | None]
    files: NotRequired[dict[str, FileDigest]]


@with_config(OPEN)
class SweepPoint(TypedDict):
    name: str
    overrides: dict[str, Any]
    dir: str


@with_config(OPEN)
class SweepRecord(TypedDict):
    """A sweep's ``sweep.json`` (:func:`pbb.experiments.sweep.sweep_record`): the name as its
    YAML gave it (``name: 2024`` is a number there)."""
    name: NotRequired[Any]
    base: NotRequired[dict[str, Any]]
    analysis: NotRequired[dict[str, Any]]
    points: list[SweepPoint]


@with_config(OPEN)
class StageRecord(TypedDict):
    """A finished stage's ``done.json`` (SFT stages; RL stages add their own statistics).
    ``seconds``: training time over all its lives; ``seconds_before``: the lives before the
    last one, up to their last checkpoint (a stage resumed across sessions costs all of it)."""
    seconds: float
    seconds_before: NotRequired[float]
    resumed: bool
    processes: int
    rows: NotRequired[int]
    steps: NotRequired[int]
    epochs: NotRequired[float]
    train_loss: NotRequired[float | None]
    tokens: NotRequired[int]
    learning_rate: NotRequired[float]
    recall: NotRequired[list[dict[str, Any]]]
    #: the saved weights' sha256 (pbb.store.weights_digest); absent in records written before it
    weights_sha256: NotRequired[str]


@with_config(OPEN)
class StageEntry(StageRecord):
    """A stage of a curriculum in the summary: its name, directory and ``done.json``."""
    stage: str
    dir: str


@with_config(OPEN)
class Interval(TypedDict):
    ci_low: float
    ci_high: float
    n_behaviours: int


@with_config(OPEN)
class Result(Interval):
    """Accuracy of one curriculum, mode and split: a mean over behaviours with its 95% interval;
    a domain's sample metrics are extra keys."""
    curriculum: str
    mode: str
    split: Split
    accuracy: float
    n_samples: int


@with_config(OPEN)
class Comparison(Interval):
    """A paired difference (curriculum - control) over the same behaviours."""
    curriculum: str
    control: str
    meaning: str
    mode: str
    split: Split
    difference: float


@with_config(OPEN)
class CompositionResult(Interval):
    """Accuracy on eval composites h = f(g(a)), grouped by the splits of their parts."""
    curriculum: str
    mode: str
    parts: str
    accuracy: float


@with_config(CLOSED)
class DataIdentity(TypedDict):
    """Which data set the numbers are about: its path, domain, counts, seed, files' sha256."""
    path: str | None
    domain: str
    counts: dict[str, int] | None
    seed: int
    sha256: dict[str, str | None]


@with_config(CLOSED)
class KeptEvaluation(TypedDict):
    """Where a curriculum's evaluation in one mode is kept for other runs, and its cost."""
    dir: str
    seconds: float


@with_config(OPEN)
class Summary(TypedDict):
    """``summary.json``: every figure of a run, recomputable from its samples files. Open to
    keys it does not name, so that ``pbb report`` rebuilds a summary an older or newer version
    wrote; the keys named here are checked."""
    name: str
    model: str
    domain: str
    seed: int
    data: NotRequired[DataIdentity]
    results: list[Result]
    comparisons: list[Comparison]
    composition: NotRequired[list[CompositionResult]]
    stages: NotRequired[dict[str, list[StageEntry]]]
    evals: NotRequired[dict[str, KeptEvaluation]]
    timing: NotRequired[dict[str, float]]
    peak_rss_mib: NotRequired[float]
    processes: NotRequired[int]
    served_models: NotRequired[dict[str, str]]
    scored_from: NotRequired[str]
    ignored_completions: NotRequired[int]


_ADAPTERS: dict[type, TypeAdapter] = {}


def check(kind: type, record: dict, where: str) -> dict:
    """``record`` if it is a ``kind``; else a one-line error naming ``where`` and the field."""
    adapter = _ADAPTERS.get(kind) or _ADAPTERS.setdefault(kind, TypeAdapter(kind))
    try:
        adapter.validate_python(record, strict=False)
    except ValidationError as e:
        err = e.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "(top level)"
        raise PbbError(f"{where}: {kind.__name__} record, field {field}: {err['msg']}") from None
    return record


def read_samples(path: Path) -> list[dict]:
    """The scored samples of one finished evaluation (``samples.jsonl``), each checked as a
    :class:`Sample` (``path:line`` names the first that is not). An empty file is no error: an
    evaluation with no query (the untuned model on a data set without eval behaviours) writes
    one."""
    return [check(Sample, rec, f"{path}:{n}") for n, rec in enumerate(iter_jsonl(path), 1)]


def read_summary(path: Path) -> dict:
    """A run's ``summary.json`` as the sweep's and the claims' analyses read it: a JSON object
    with a list of results (one an older version wrote, with fewer fields, still reads)."""
    summary = read_json(path)
    if not isinstance(summary, dict) or not isinstance(summary.get("results"), list):
        raise PbbError(f"{path}: not a run summary (a JSON object with a list of results); "
                       f"`pbb report {Path(path).parent}` writes it anew from the samples")
    return summary


def summary_schema() -> dict:
    """The JSON Schema of ``summary.json``, generated from :class:`Summary`."""
    schema = TypeAdapter(Summary).json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema,
            "title": "pbb summary.json"}
