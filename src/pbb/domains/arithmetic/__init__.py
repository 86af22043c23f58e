"""Domain ``arithmetic``: random integer programs that no model has seen in pretraining."""

from __future__ import annotations

import ast
import itertools
import random
from typing import ClassVar

from pbb.domains.arithmetic.compose import (
    make_composites,
    part_groups,
    trace_composite,
    valid_inputs,
)
from pbb.domains.arithmetic.config import ArithmeticConfig
from pbb.domains.arithmetic.describe import describe
from pbb.domains.arithmetic.execute import plan_for, trace_call
from pbb.domains.arithmetic.generate import (
    bounded,
    build_function,
    compile_function,
    every_statement_matters,
    probe_inputs,
    uses_every_argument,
)
from pbb.domains.base import Behaviour, Execution, draw_distinct
from pbb.domains.names import pointer_name
from pbb.domains.templates import PROGRAM_NL_TEMPLATES
from pbb.domains.values import CallQueries, same_literal
from pbb.errors import PbbError

#: candidates drawn per requested behaviour before giving up (the knobs may be too tight)
_MAX_TRIES_PER_BEHAVIOUR = 500
#: below this many input tuples the space is enumerated and shuffled instead of rejection-sampled
_ENUMERATE_LIMIT = 4096
#: predictions longer than this are wrong by definition (and not worth parsing)
_MAX_PREDICTION_CHARS = 200


def same_value(prediction: str | None, target: str) -> bool:
    """Compare as Python values (``7`` == ``7 ``, ``True`` != ``1``), never as strings."""
    return same_literal(prediction, target, _MAX_PREDICTION_CHARS)


class ArithmeticDomain(CallQueries):
    name: ClassVar[str] = "arithmetic"
    Config: ClassVar[type[ArithmeticConfig]] = ArithmeticConfig
    #: templates for ``data.instruction_format: nl`` (the description is exactly the code)
    nl_templates: ClassVar[dict[str, list[str]]] = PROGRAM_NL_TEMPLATES

    # --- behaviours -------------------------------------------------------------------------
    def check_counts(self, cfg: ArithmeticConfig, demos: int, test_inputs: int) -> None:
        smallest = (cfg.input_max - cfg.input_min + 1) ** cfg.min_args
        if test_inputs >= smallest:
            raise PbbError(
                f"{test_inputs} test inputs leave no demonstration input for a {cfg.min_args}-argument "
                f"function over [{cfg.input_min}, {cfg.input_max}] ({smallest} possible inputs); "
                "widen the input range, raise min_args or ask for fewer test inputs")

    def generate(self, cfg: ArithmeticConfig, n: int, rng: random.Random) -> list[Behaviour]:
        if cfg.compositions:
            if cfg.compositions >= n - 1:
                raise PbbError(f"arithmetic: {cfg.compositions} compositions need at least "
                               f"{cfg.compositions + 2} behaviours")
            names: set[str] = set()
            base = self._generate(cfg, n - cfg.compositions, rng, names)
            return base + make_composites(base, cfg.compositions, rng, names,
                                          (cfg.input_min, cfg.input_max), cfg.max_abs_value,
                                          start=len(base), trace=cfg.composite_trace)
        return self._generate(cfg, n, rng, set())

    def _generate(self, cfg: ArithmeticConfig, n: int, rng: random.Random,
                  names: set[str]) -> list[Behaviour]:
        lo, hi = cfg.input_min, cfg.input_max
        probes = {k: probe_inputs(k, lo, hi) for k in range(cfg.min_args, cfg.max_args + 1)}
        fingerprints: set[tuple] = set()

        def draw(k: int) -> Behaviour | None:
            fn = build_function(cfg, rng, "f")
            if not bounded(fn, lo, hi, cfg.max_abs_value):
                return None
            f = compile_function(ast.unparse(fn), "f")
            arity = len(fn.args.args)
            if not uses_every_argument(f, probes[arity], lo, hi):
                return None
            fingerprint = (arity, tuple(f(*p) for p in probes[arity]))
            if fingerprint in fingerprints or not every_statement_matters(fn, probes[arity]):
                return None
            fingerprints.add(fingerprint)
            fn.name = pointer_name(rng, names)
            meta = {"arity": arity, "statements": len(fn.body) - 1,
                    "branches": sum(isinstance(s, ast.If) for s in fn.body),
                    "loops": sum(isinstance(s, ast.For) for s in fn.body),
                    "max_abs_value": cfg.max_abs_value}
            source = ast.unparse(fn)
            return Behaviour(id=f"{self.name}-{k:05d}", domain=self.name, name=fn.name,
                             instruction=source, description=describe(source), meta=meta)

        return draw_distinct(n, draw, tries_per_item=_MAX_TRIES_PER_BEHAVIOUR, too_tight=(
            "arithmetic: found only {found} of {n} distinct functions; the knobs are too tight "
            "(more statements or a wider input range help)"))

    # --- inputs -----------------------------------------------------------------------------
    def sample_inputs(self, cfg: ArithmeticConfig, behaviour: Behaviour, demos: int,
                      test_inputs: int, rng: random.Random) -> tuple[list[str], list[str]]:
        """Distinct test inputs first; demonstration inputs from the rest of the input space.

        Demonstration inputs are distinct while the space allows; when a small space (one
        argument over a short range) holds fewer than ``demos`` remaining inputs they repeat.
        Test inputs never appear among the demonstration inputs.
        """
        if behaviour.meta.get("composite"):
            space = [(a,) for a in valid_inputs(behaviour.meta)]
            rng.shuffle(space)
            test, rest = space[:test_inputs], space[test_inputs:]
            if not rest:
                raise PbbError(f"{behaviour.id}: {len(space)} valid inputs leave none for "
                               "demonstrations")
            demo = [rest[k % len(rest)] for k in range(demos)]
            return ([self.format_call(behaviour.name, t) for t in demo],
                    [self.format_call(behaviour.name, t) for t in test])
        arity = behaviour.meta["arity"]
        lo, hi = cfg.input_min, cfg.input_max
        size = (hi - lo + 1) ** arity
        if size <= max(_ENUMERATE_LIMIT, 2 * (demos + test_inputs)):
            space = list(itertools.product(range(lo, hi + 1), repeat=arity))
            rng.shuffle(space)
            test, rest = space[:test_inputs], space[test_inputs:]
            demo = [rest[k % len(rest)] for k in range(demos)]
        else:
            seen: set[tuple[int, ...]] = set()
            test, demo = [], []
            for bucket, count in ((test, test_inputs), (demo, demos)):
                while len(bucket) < count:
                    t = tuple(rng.randint(lo, hi) for _ in range(arity))
                    if t not in seen:
                        seen.add(t)
                        bucket.append(t)
        call = self.format_call
        return ([call(behaviour.name, t) for t in demo],
                [call(behaviour.name, t) for t in test])

    # --- execution and scoring --------------------------------------------------------------
    def _plan(self, behaviour: Behaviour):
        limit = int(behaviour.meta.get("max_abs_value", ArithmeticConfig().max_abs_value))
        return plan_for(behaviour.instruction, behaviour.name, limit)

    def parse_call(self, query: str, name: str) -> tuple[int, ...]:
        args = super().parse_call(query, name)
        if any(type(a) is not int for a in args):
            raise PbbError(f"query {query!r}: arguments must be integers")
        return args

    def execute(self, behaviour: Behaviour, query: str) -> Execution:
        if behaviour.meta.get("composite"):
            args = self.parse_call(query, behaviour.name)
            if len(args) != 1:
                raise PbbError(f"query {query!r}: {behaviour.name} takes 1 argument")
            output, trace = trace_composite(behaviour, args[0])
            return Execution(output=repr(output), trace=trace)
        output, trace = trace_call(self._plan(behaviour), self.parse_call(query, behaviour.name))
        return Execution(output=repr(output), trace=trace)

    max_prediction_chars = _MAX_PREDICTION_CHARS

    def composite_parts(self, behaviour: Behaviour, splits: dict[str, str]) -> str | None:
        return part_groups(behaviour, splits) if behaviour.meta.get("composite") else None
