"""Domain ``algorithms``: familiar procedures (sorting, strings, number theory, DP, graphs...).

Where ``arithmetic`` gives procedures no model has seen, this domain gives ones every model has
seen many times — written here from scratch — so the two can be contrasted. A behaviour is one
library function (:mod:`~pbb.domains.algorithms.library`) renamed to a pointer name
(recursive calls included; ``names: familiar`` keeps the library's own name); inputs are small
and drawn per kind (:mod:`~pbb.domains.algorithms.inputs`); ``description`` is an English
statement of what the function computes (``data.instruction_format: nl``).

Execution runs the library's own source, never a data file's text: ``execute`` checks that the
behaviour's instruction is exactly the renamed library source. There is no step trace: a CoT
completion is the recalled code followed by the answer line.
"""

from __future__ import annotations

import ast
import functools
import random
from typing import ClassVar, Literal

from pydantic import ConfigDict, Field

from pbb.domains.algorithms.inputs import draw
from pbb.domains.algorithms.library import LIBRARY, Algorithm
from pbb.domains.base import ANSWER_PREFIX, Behaviour, Execution, LaterOptions
from pbb.domains.names import pointer_name
from pbb.domains.templates import PROGRAM_NL_TEMPLATES
from pbb.domains.values import CallQueries, Rename
from pbb.errors import PbbError

BY_KEY = {a.key: a for a in LIBRARY}
CATEGORIES = sorted({a.category for a in LIBRARY})
_MAX_TRIES = 200


class AlgorithmsConfig(LaterOptions):
    model_config = ConfigDict(extra="forbid")
    LATER: ClassVar[dict] = {"names": "pointers"}

    categories: list[Literal[tuple(CATEGORIES)]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: list(CATEGORIES), min_length=1,
        description="which parts of the library to draw behaviours from")
    names: Literal["pointers", "familiar"] = Field(
        "pointers", description="pointers: each function renamed to a pointer name, so only "
        "its code says which algorithm it is; familiar: the library's own names (`gcd`, "
        "`bubble_sort`), so that a model may know it from pretraining by its name alone. The "
        "same functions and inputs either way (docs/domains.md)")


@functools.lru_cache(maxsize=4096)
def source_for(key: str, name: str) -> str:
    """The library function ``key`` renamed to ``name``."""
    return ast.unparse(Rename("f", name).visit(ast.parse(BY_KEY[key].source)))


@functools.lru_cache(maxsize=256)
def _compiled(key: str):
    namespace: dict = {}
    exec(compile(BY_KEY[key].source, f"<algorithm {key}>", "exec"), namespace)  # noqa: S102 - ours
    return namespace["f"]


def _too_big(value) -> bool:
    if isinstance(value, int) and not isinstance(value, bool):
        return abs(value) > 10**6
    if isinstance(value, (str, list, tuple)):
        return len(value) > 200 or any(_too_big(v) for v in value if not isinstance(value, str))
    return False


class AlgorithmsDomain(CallQueries):
    name: ClassVar[str] = "algorithms"
    Config: ClassVar[type[AlgorithmsConfig]] = AlgorithmsConfig
    nl_templates: ClassVar[dict[str, list[str]]] = PROGRAM_NL_TEMPLATES

    def generate(self, cfg: AlgorithmsConfig, n: int, rng: random.Random) -> list[Behaviour]:
        pool = [a for a in LIBRARY if a.category in cfg.categories]
        if n > len(pool):
            raise PbbError(f"algorithms: the library has {len(pool)} functions in "
                           f"{', '.join(cfg.categories)}; {n} behaviours requested")
        names: set[str] = set()
        out = []
        for k, alg in enumerate(rng.sample(pool, n)):
            name = pointer_name(rng, names)  # drawn either way: the same inputs follow
            if cfg.names == "familiar":
                name = alg.key
            out.append(Behaviour(id=f"{self.name}-{k:05d}", domain=self.name, name=name,
                                 instruction=source_for(alg.key, name),
                                 description=f"Function {name}: {alg.description}",
                                 meta={"algorithm": alg.key, "category": alg.category,
                                       "inputs": alg.inputs}))
        return out

    def sample_inputs(self, cfg: AlgorithmsConfig, behaviour: Behaviour, demos: int,
                      test_inputs: int, rng: random.Random) -> tuple[list[str], list[str]]:
        """Distinct test inputs; demonstration inputs distinct from them (and from each other
        while the input kind allows; a small space repeats demonstration inputs)."""
        kind = behaviour.meta["inputs"]
        tests: list[str] = []
        for _ in range(_MAX_TRIES * test_inputs):
            if len(tests) == test_inputs:
                break
            q = self.format_call(behaviour.name, draw(kind, rng))
            if q not in tests:
                tests.append(q)
        if len(tests) < test_inputs:
            raise PbbError(f"algorithms: {behaviour.meta['algorithm']} has too few distinct inputs "
                           f"for {test_inputs} test inputs")
        held, demo_inputs, misses = set(tests), [], 0
        for _ in range(_MAX_TRIES * max(1, demos)):
            if len(demo_inputs) == demos:
                break
            q = self.format_call(behaviour.name, draw(kind, rng))
            if q in held:
                continue
            if q not in demo_inputs:
                demo_inputs.append(q)
            else:
                misses += 1
                if misses > 50:  # the space is used up: repeat demonstration inputs
                    demo_inputs.append(q)
        if len(demo_inputs) < demos:
            raise PbbError(f"algorithms: {behaviour.meta['algorithm']} has too few inputs left for "
                           f"{demos} demonstrations besides {test_inputs} test inputs")
        return demo_inputs, tests

    def execute(self, behaviour: Behaviour, query: str) -> Execution:
        key = behaviour.meta.get("algorithm")
        if key not in BY_KEY or behaviour.instruction != source_for(key, behaviour.name):
            raise PbbError(f"{behaviour.id}: instruction is not the library's {key!r}")
        args = self.parse_call(query, behaviour.name)
        if any(_too_big(a) for a in args):
            raise PbbError(f"query {query!r}: arguments larger than this library's inputs")
        try:
            output = repr(_compiled(key)(*args))
        except Exception as e:  # noqa: BLE001 - a bad input from a data file
            raise PbbError(f"query {query!r}: {type(e).__name__}: {e}") from None
        return Execution(output=output, trace=f"{ANSWER_PREFIX} {output}")



__all__ = ["LIBRARY", "Algorithm", "AlgorithmsConfig", "AlgorithmsDomain"]
