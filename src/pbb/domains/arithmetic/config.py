"""Knobs of the random-arithmetic domain."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import ConfigDict, Field, model_validator

from pbb.domains.base import LaterOptions


class ArithmeticConfig(LaterOptions):
    """Difficulty knobs. Defaults give short programs a small model can learn to trace."""

    model_config = ConfigDict(extra="forbid")
    LATER: ClassVar[dict] = {"composite_trace": "calls"}

    min_args: int = Field(1, ge=1, le=3, description="fewest integer arguments")
    max_args: int = Field(3, ge=1, le=3, description="most integer arguments")
    min_statements: int = Field(2, ge=1, le=8, description="fewest statements before the return")
    max_statements: int = Field(4, ge=1, le=8, description="most statements before the return")
    branch_prob: float = Field(0.2, ge=0, le=1, description="chance a statement is an if/else")
    loop_prob: float = Field(0.1, ge=0, le=1, description="chance a statement is a for loop")
    max_loop_iters: int = Field(3, ge=2, le=6, description="largest range() of a loop")
    expr_depth: int = Field(1, ge=1, le=2, description="operators nested per expression")
    max_const: int = Field(9, ge=2, le=99, description="largest literal constant")
    input_min: int = Field(0, ge=-1000, le=1000, description="smallest argument value")
    input_max: int = Field(20, ge=-1000, le=1000, description="largest argument value")
    max_abs_value: int = Field(999_999, ge=10, description="bound on every intermediate value")
    compositions: int = Field(0, ge=0, description="how many of the behaviours are composites "
                              "h(a) = f(g(a)) of two one-argument behaviours of the set")
    composite_trace: Literal["calls", "nested"] = Field(
        "calls", description="a composite's CoT trace: calls (each part evaluated in one line, "
        "`g(7) = 2`) or nested (each part's definition recalled and traced in turn, the way "
        "every other function is executed: pbb.domains.arithmetic.compose)")

    @model_validator(mode="after")
    def _ranges(self) -> ArithmeticConfig:
        for lo, hi in (("min_args", "max_args"), ("min_statements", "max_statements"),
                       ("input_min", "input_max")):
            if getattr(self, lo) > getattr(self, hi):
                raise ValueError(f"{lo} ({getattr(self, lo)}) is larger than {hi} ({getattr(self, hi)})")
        if self.branch_prob + self.loop_prob > 1:
            raise ValueError("branch_prob + loop_prob must be at most 1")
        return self
