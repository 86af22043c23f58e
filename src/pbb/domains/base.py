"""What every domain provides, and the records it produces.

A domain knows its behaviours and nothing about training: it generates them from (config, seed),
draws inputs, executes them (ground truth and a chain-of-thought trace), and scores a prediction.
The scoring function (the *verifier*) is the single source of truth for correctness: evaluation
and RL rewards both call it, so a metric and a reward can never disagree.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, model_serializer

from pbb.errors import PbbError

ANSWER_PREFIX = "Answer:"
_ANSWER_RE = re.compile(r"^[\s*#>]*Answer\s*\**\s*[:=]\s*\**\s*(.+?)\s*$", re.IGNORECASE | re.MULTILINE)


class LaterOptions(BaseModel):
    """A domain config whose options added after data sets were made stay out of the dumps
    (manifests, data blocks, eval keys) at their defaults: each key of ``LATER`` is left out
    where it has that value, so those data sets keep the same bytes and keys."""

    LATER: ClassVar[dict[str, Any]] = {}

    @model_serializer(mode="wrap")
    def _dump(self, handler) -> dict:
        out = handler(self)
        for key, default in self.LATER.items():
            if key in out and out[key] == default:
                del out[key]
        return out


@dataclass
class Behaviour:
    """One procedure to learn: its pointer name and its instruction (the declarative text)."""

    id: str
    domain: str
    name: str
    instruction: str
    split: str = "train"
    description: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def to_record(self) -> dict:
        # Key order is part of the file format (byte-identical output).
        return {"id": self.id, "domain": self.domain, "name": self.name,
                "instruction": self.instruction, "description": self.description,
                "split": self.split, "meta": self.meta}

    @classmethod
    def from_record(cls, rec: dict) -> Behaviour:
        return cls(id=rec["id"], domain=rec["domain"], name=rec["name"],
                   instruction=rec["instruction"], split=rec["split"],
                   description=rec.get("description"), meta=rec.get("meta") or {})


@dataclass
class Demonstration:
    """One execution example: the query (``input``), the gold ``output`` and a CoT ``trace``."""

    behaviour_id: str
    input: str
    output: str
    trace: str
    use: str  # "train" (a demonstration) or "test" (held-out test input)

    def to_record(self) -> dict:
        return asdict(self)


@dataclass
class Execution:
    output: str
    trace: str


T = TypeVar("T")


def draw_distinct(n: int, draw: Callable[[int], T | None], *, tries_per_item: int,
                  too_tight: str) -> list[T]:
    """``n`` results of ``draw(k)`` (k: how many are kept so far), which returns None for a
    candidate it rejects; after ``tries_per_item * n`` tries, the error ``too_tight`` says why.
    The one loop of every generator that rejects candidates (duplicates, unbounded values)."""
    out: list[T] = []
    tries = 0
    while len(out) < n:
        tries += 1
        if tries > tries_per_item * n:
            raise PbbError(too_tight.format(found=len(out), n=n))
        item = draw(len(out))
        if item is not None:
            out.append(item)
    return out


def extract_answer(completion: str) -> str | None:
    """The value on the last ``Answer: ...`` line of a completion, or None.

    Tolerates junk around it (markdown bold, trailing chat tokens stripped by the caller, text
    after the value is kept and left to the verifier to reject).
    """
    matches = _ANSWER_RE.findall(completion or "")
    return matches[-1].strip().strip("`").strip() if matches else None


class Domain:
    """What every entry of :data:`pbb.domains.DOMAINS` is.

    A domain defines the class attributes and the methods that raise ``NotImplementedError``
    here; the optional hooks below them have defaults that mean "nothing extra", so a domain
    writes only what it has. Adding a domain: docs/domains.md, "Adding a domain".
    """

    name: ClassVar[str]
    Config: ClassVar[type[BaseModel]]
    #: paraphrase templates keyed by row kind, used by :mod:`pbb.rows.render`
    templates: ClassVar[dict[str, list[str]]]
    #: the answer-format line appended to prompts, keyed by row kind
    hints: ClassVar[dict[str, str]]

    # --- required -------------------------------------------------------------------------
    def generate(self, cfg: BaseModel, n: int, rng: random.Random) -> list[Behaviour]:
        """Draw ``n`` distinct behaviours (ids, names, instructions, meta)."""
        raise NotImplementedError

    def sample_inputs(self, cfg: BaseModel, behaviour: Behaviour, demos: int, test_inputs: int,
                      rng: random.Random) -> tuple[list[str], list[str]]:
        """Demonstration inputs and disjoint test inputs, rendered as query strings."""
        raise NotImplementedError

    def execute(self, behaviour: Behaviour, query: str) -> Execution:
        """Ground truth for one query, with a trace that ends in the answer line."""
        raise NotImplementedError

    def score(self, behaviour: Behaviour, query: str, prediction: str | None) -> float:
        """The verifier: a float in [0, 1] for an extracted prediction."""
        raise NotImplementedError

    def pointer(self, behaviour: Behaviour) -> str:
        """How text refers to the behaviour without revealing it (e.g. "`zorp_17`")."""
        raise NotImplementedError

    def render_query(self, query: str) -> str:
        """How a prompt writes a query (e.g. "`zorp_17(3, 5)`")."""
        raise NotImplementedError

    # --- optional, with defaults ----------------------------------------------------------
    #: natural-language paraphrase templates by row kind, for ``data.instruction_format: nl``
    #: (behaviours then need a ``description``); empty: the code templates serve
    nl_templates: ClassVar[dict[str, list[str]]] = {}
    #: per-sample fields :meth:`sample_fields` adds, and the names their averages get in a
    #: summary's ``generation`` entry (generation domains: validity, novelty, chance)
    sample_metrics: ClassVar[dict[str, str]] = {}

    def check_counts(self, cfg: BaseModel, demos: int, test_inputs: int) -> None:
        """Raise PbbError when the input space cannot hold the requested inputs (default: it
        always can)."""

    def extract(self, completion: str) -> str | None:
        """Pull the prediction out of a model completion: the last ``Answer:`` line."""
        return extract_answer(completion)

    def sample_fields(self, behaviour: Behaviour, query: str, prediction: str | None,
                      train_outputs: list[str], test_outputs: list[str]) -> dict:
        """Extra fields of one evaluation sample, named in :attr:`sample_metrics`."""
        return {}

    def composite_parts(self, behaviour: Behaviour, splits: dict[str, str]) -> str | None:
        """For a behaviour composed of others, the splits its parts come from (``train+eval``),
        which the report groups eval accuracy by; None for a behaviour of one piece."""
        return None
