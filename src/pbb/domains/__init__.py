"""Domains by name. A plain dict: adding a domain means adding one entry here."""

from __future__ import annotations

from pbb.domains.algorithms import AlgorithmsDomain
from pbb.domains.arithmetic import ArithmeticDomain
from pbb.domains.base import Behaviour, Demonstration, Domain, Execution, extract_answer
from pbb.domains.ciphers import CiphersDomain
from pbb.domains.grammars import GrammarsDomain
from pbb.domains.imported import ImportedDomain
from pbb.errors import PbbError

DOMAINS: dict[str, Domain] = {
    ArithmeticDomain.name: ArithmeticDomain(),
    AlgorithmsDomain.name: AlgorithmsDomain(),
    CiphersDomain.name: CiphersDomain(),
    GrammarsDomain.name: GrammarsDomain(),
    ImportedDomain.name: ImportedDomain(),
}


def get_domain(name: str) -> Domain:
    try:
        return DOMAINS[name]
    except KeyError:
        raise PbbError(f"unknown domain {name!r}; known: {', '.join(sorted(DOMAINS))}") from None


__all__ = ["DOMAINS", "Behaviour", "Demonstration", "Domain", "Execution", "extract_answer",
           "get_domain"]
