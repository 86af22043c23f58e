"""Context-free grammars: the data structure and its text format (the instruction a model learns).

The text format, one grammar per block (also the format of ``pbb data import-grammars`` files)::

    grammar blorp_3
    S -> "ka" A "lo" | B "mi"
    A -> "mi" A | "ka"
    B -> "lo" | "lo" B

The first rule's left side is the start symbol. Nonterminals are identifiers starting with an
upper-case letter; terminals are double-quoted and contain no whitespace or quotes. A line that
starts with ``|`` continues the previous rule; ``#`` starts a comment.

Strings of a language are sequences of terminals. Written out, they are joined by spaces, except
in grammars whose terminals are all single characters, which are written without separators
(``abba``); :func:`tokenize` reads both forms back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pbb.errors import PbbError

_NONTERMINAL = re.compile(r"[A-Z][A-Za-z0-9_]*\Z")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_SYMBOL = re.compile(r'\s*(?:"([^"\s]+)"|([A-Za-z_][A-Za-z0-9_]*)|(\S+))')

Production = tuple[str, ...]  # terminals are stored quoted ('"ka"'), nonterminals bare ('A')


def is_terminal(symbol: str) -> bool:
    return symbol.startswith('"')


def unquote(symbol: str) -> str:
    return symbol[1:-1]


@dataclass(frozen=True)
class Grammar:
    """Rules in definition order; ``start`` is the left side of the first rule."""

    rules: tuple[tuple[str, tuple[Production, ...]], ...]

    @property
    def start(self) -> str:
        return self.rules[0][0]

    @property
    def table(self) -> dict[str, tuple[Production, ...]]:
        return dict(self.rules)

    @property
    def nonterminals(self) -> list[str]:
        return [lhs for lhs, _ in self.rules]

    @property
    def terminals(self) -> list[str]:
        """Terminal tokens (unquoted), in order of first appearance."""
        seen: dict[str, None] = {}
        for _, alts in self.rules:
            for prod in alts:
                for s in prod:
                    if is_terminal(s):
                        seen.setdefault(unquote(s), None)
        return list(seen)

    @property
    def char_level(self) -> bool:
        return all(len(t) == 1 for t in self.terminals)

    def productions(self) -> list[tuple[str, Production]]:
        return [(lhs, p) for lhs, alts in self.rules for p in alts]

    def join(self, tokens: list[str]) -> str:
        return ("" if self.char_level else " ").join(tokens)


def tokenize(grammar: Grammar, text: str) -> list[str]:
    """A string of the language back to its terminals (see the module docstring)."""
    if grammar.char_level:
        return [c for c in text if not c.isspace()]
    return text.split()


def rule_line(lhs: str, alts: tuple[Production, ...]) -> str:
    """One rule as the instruction writes it, ``A -> "bo" | S "ze"`` (also what the ``pick``
    trace copies and what its checker compares with)."""
    return f"{lhs} -> " + " | ".join(" ".join(p) for p in alts)


def render(grammar: Grammar, name: str) -> str:
    """The instruction text: the grammar in the format above."""
    return "\n".join([f"grammar {name}", *(rule_line(lhs, alts) for lhs, alts in grammar.rules)])


def _parse_alternatives(text: str, where: str) -> list[Production]:
    alts: list[Production] = []
    for part in text.split("|"):
        symbols: list[str] = []
        pos = 0
        part = part.rstrip()
        while pos < len(part):
            m = _SYMBOL.match(part, pos)
            if m is None:
                break
            term, ident, junk = m.groups()
            if junk is not None:
                raise PbbError(f"{where}: unexpected {junk!r} (terminals are double-quoted, "
                               "nonterminals start with an upper-case letter)")
            if ident is not None and not _NONTERMINAL.match(ident):
                raise PbbError(f"{where}: nonterminal {ident!r} must start with an upper-case letter")
            symbols.append(f'"{term}"' if term is not None else ident)
            pos = m.end()
        if not symbols:
            raise PbbError(f"{where}: empty alternative (empty strings are not supported)")
        alts.append(tuple(symbols))
    return alts


def parse_grammars(text: str, source: str = "grammar") -> list[tuple[str, Grammar]]:
    """Parse one or more ``grammar NAME`` blocks; every problem is one ``source:line:`` error."""
    blocks: list[tuple[str, int, list[tuple[int, str, list[Production]]]]] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        where = f"{source}:{lineno}"
        if not line:
            continue
        if line.startswith("grammar"):
            parts = line.split()
            if len(parts) != 2 or parts[0] != "grammar" or not _NAME.match(parts[1]):
                raise PbbError(f"{where}: expected `grammar NAME` with NAME an identifier")
            blocks.append((parts[1], lineno, []))
            continue
        if not blocks:
            raise PbbError(f"{where}: rule before any `grammar NAME` line")
        rules = blocks[-1][2]
        if line.startswith("|"):
            if not rules:
                raise PbbError(f"{where}: `|` continues a rule, but there is none yet")
            rules[-1][2].extend(_parse_alternatives(line[1:], where))
            continue
        if "->" not in line:
            raise PbbError(f"{where}: expected `Nonterminal -> alternatives`")
        lhs, rhs = (s.strip() for s in line.split("->", 1))
        if not _NONTERMINAL.match(lhs):
            raise PbbError(f"{where}: left side {lhs!r} must be a nonterminal (upper-case first letter)")
        rules.append((lineno, lhs, _parse_alternatives(rhs, where)))

    out = []
    names: set[str] = set()
    for name, lineno, rules in blocks:
        where = f"{source}:{lineno}"
        if name in names:
            raise PbbError(f"{where}: grammar {name!r} is defined twice")
        names.add(name)
        if not rules:
            raise PbbError(f"{where}: grammar {name!r} has no rules")
        merged: dict[str, list[Production]] = {}
        for _, lhs, alts in rules:
            merged.setdefault(lhs, []).extend(alts)
        for rule_line, _, alts in rules:
            for prod in alts:
                for s in prod:
                    if not is_terminal(s) and s not in merged:
                        raise PbbError(f"{source}:{rule_line}: nonterminal {s!r} has no rule")
        for lhs, alts in merged.items():
            if len(set(alts)) != len(alts):
                raise PbbError(f"{where}: grammar {name!r}: {lhs} lists an alternative twice")
        out.append((name, Grammar(tuple((lhs, tuple(alts)) for lhs, alts in merged.items()))))
    if not out:
        raise PbbError(f"{source}: no `grammar NAME` block found")
    return out


def parse_grammar(text: str, source: str = "grammar") -> tuple[str, Grammar]:
    """Exactly one grammar (an instruction)."""
    grammars = parse_grammars(text, source)
    if len(grammars) != 1:
        raise PbbError(f"{source}: expected one grammar, found {len(grammars)}")
    return grammars[0]
