"""Knobs of the grammars domain."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class GrammarsConfig(BaseModel):
    """Size and shape of the random grammars, the sampler's bounds and the verifier's limits."""

    model_config = ConfigDict(extra="forbid")

    min_nonterminals: int = Field(2, ge=1, le=8, description="fewest nonterminals (S included)")
    max_nonterminals: int = Field(3, ge=1, le=8, description="most nonterminals")
    max_alternatives: int = Field(3, ge=1, le=6, description="most alternatives per nonterminal")
    max_rule_length: int = Field(3, ge=1, le=6, description="most symbols in one alternative")
    terminals: int = Field(4, ge=2, le=12, description="terminal vocabulary size per grammar")
    terminal_style: Literal["tokens", "chars"] = Field(
        "tokens", description="tokens: nonsense syllables written with spaces (`ka lo mi`); "
        "chars: single letters written together (`abba`)")
    recursion_prob: float = Field(0.35, ge=0, le=1,
                                  description="chance a nonterminal slot may refer back (recursion)")
    min_length: int = Field(1, ge=1, le=40, description="shortest sampled string (terminals)")
    max_length: int = Field(10, ge=2, le=40, description="longest sampled string (terminals)")
    min_language: int = Field(8, ge=2, description="least number of strings up to max_length "
                              "(rejects tiny finite languages)")
    max_universal_share: float = Field(0.5, gt=0, lt=1, description="largest share of all strings "
                                       "of length <= 4 over the terminals a language may hold")
    constraint: Literal["none", "length"] = Field(
        "none", description="none: queries ask for any string; length: for a string of an exact "
        "length (test lengths are held out from demonstration lengths where possible)")
    file: str | None = Field(None, description="read the grammars from this file (the text "
                             "format of docs/domains.md) instead of generating them")
    max_tokens: int = Field(64, ge=1, description="verifier: longer predictions score 0.0 unparsed")
    time_limit: float = Field(1.0, gt=0, description="verifier: seconds per membership check")
    trace: Literal["forms", "named", "pick"] = Field(
        "forms", description="CoT derivation: forms (the sentential forms of a leftmost "
        "derivation, `=> \"bo\" A`), named (each step names the rule it applies first, "
        "`A -> \"bo\": \"bo\" \"bo\"`, so that a derivation is copied from the recalled rules) "
        "or pick (each step copies the leftmost nonterminal's whole rule line from the grammar, "
        "then picks one alternative: `A -> \"bo\" | S \"ze\" pick \"bo\": \"bo\" \"bo\"`)")

    @model_validator(mode="after")
    def _ranges(self) -> GrammarsConfig:
        if self.min_nonterminals > self.max_nonterminals:
            raise ValueError("min_nonterminals is larger than max_nonterminals")
        if self.min_length > self.max_length:
            raise ValueError("min_length is larger than max_length")
        if self.terminal_style == "chars" and self.terminals > 26:
            raise ValueError("chars style has 26 letters")
        return self
