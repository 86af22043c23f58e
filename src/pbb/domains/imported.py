"""Domain ``imported``: users' own Python functions, executed only inside the sandbox.

Data sets of this domain come from ``pbb data import FILE --out DIR`` (:mod:`pbb.data.importers`
reads the file, runs every function in :mod:`pbb.domains.sandbox` and says what it skipped and why);
this module executes and scores their queries. Outputs are rendered with ``repr``; predictions
are compared with them as Python literals.

There is no step-by-step trace for arbitrary code: a CoT completion is the recalled code followed
by the answer line.
"""

from __future__ import annotations

import functools
import json
import random
from typing import TYPE_CHECKING, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from pbb.domains.base import ANSWER_PREFIX, Behaviour, Execution
from pbb.domains.values import CallQueries
from pbb.errors import PbbError

if TYPE_CHECKING:
    from pbb.domains.sandbox import Limits


#: the size knobs; recorded in a behaviour's meta only where not at their default, so that data
#: imported with the defaults keeps the bytes (and fingerprints) it had before they existed
_SIZES = ("max_source_chars", "max_input_chars", "max_output_chars")


class ImportedConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    call_seconds: float = Field(2.0, gt=0, description="sandbox: time limit per call")
    wall_seconds: float = Field(20.0, gt=0, description="sandbox: wall clock per function")
    memory_mb: int = Field(1024, ge=64, description="sandbox: address space per worker")
    max_source_chars: int = Field(100_000, ge=1, description="sandbox: longest function code")
    max_input_chars: int = Field(10_000, ge=1, description="sandbox: longest input (argument list)")
    max_output_chars: int = Field(100_000, ge=1, description="sandbox: longest output (its repr)")
    workers: int = Field(2, ge=1, le=64, description="sandbox processes in parallel")

    def limits(self) -> Limits:
        """The sandbox's :class:`~pbb.domains.sandbox.Limits` for these knobs."""
        from pbb.domains.sandbox import Limits

        return Limits(call_seconds=self.call_seconds, wall_seconds=self.wall_seconds,
                      memory_bytes=self.memory_mb << 20,
                      **{k: getattr(self, k) for k in _SIZES})

    def recorded_limits(self) -> dict:
        """What a behaviour's meta ``limits`` keeps, to re-run it under the same limits."""
        defaults = ImportedConfig()
        return {"call_seconds": self.call_seconds, "wall_seconds": self.wall_seconds,
                "memory_mb": self.memory_mb,
                **{k: getattr(self, k) for k in _SIZES if getattr(self, k) != getattr(defaults, k)}}


@functools.lru_cache(maxsize=1)
def _sandbox(workers: int, limits):
    import atexit

    from pbb.domains.sandbox import Sandbox

    sb = Sandbox(workers, limits)
    atexit.register(sb.close)
    return sb


def _sandbox_for(meta: dict):
    return _sandbox(1, ImportedConfig(**meta).limits())


class ImportedDomain(CallQueries):
    name: ClassVar[str] = "imported"
    Config: ClassVar[type[ImportedConfig]] = ImportedConfig

    def generate(self, cfg: ImportedConfig, n: int, rng: random.Random) -> list[Behaviour]:
        raise PbbError("domain imported has no generator: use `pbb data import FILE --out DIR`")

    def sample_inputs(self, cfg, behaviour, demos, test_inputs, rng):
        raise PbbError("domain imported has no generator: use `pbb data import FILE --out DIR`")

    @staticmethod
    def args_of(behaviour: Behaviour, query: str) -> str:
        q = query.strip()
        if not (q.startswith(behaviour.name + "(") and q.endswith(")")):
            raise PbbError(f"query {query!r}: expected a call of {behaviour.name}(...)")
        return q[len(behaviour.name) + 1:-1]

    def execute(self, behaviour: Behaviour, query: str) -> Execution:
        output = _execute(behaviour.instruction, behaviour.name, self.args_of(behaviour, query),
                          json.dumps(behaviour.meta.get("limits", {}), sort_keys=True))
        return Execution(output=output, trace=f"{ANSWER_PREFIX} {output}")



@functools.lru_cache(maxsize=65536)
def _execute(code: str, name: str, args_src: str, limits_json: str) -> str:
    out = _sandbox_for(json.loads(limits_json)).run(code, name, [args_src])
    if out.outputs is None:
        raise PbbError(f"{name}({args_src}): {out.error}")
    return out.outputs[0]
