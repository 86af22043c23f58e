"""The CoT traces of the ciphers domain: ``compact`` (the default), ``indexed``, ``lookup``,
``walk`` and ``countdown``.

``compact``: one line per letter, ``v: (6 - 22) % 26 = 10 -> x``.

``indexed``: every lookup and every reduction written out. Why: with the compact trace the
model must find a letter's position in a *shuffled* alphabet, reduce modulo 26 and find the
letter at a position, all silently. Measured on one H200 (``configs/ciphers_robustness.yaml``
as it was then, with 32 demonstrations per cipher and 8 epochs; the instruction curriculum's
model on the train ciphers, docs/results/LOG.md): the recalled alphabet was right in 77% of
the traces, but the letter's position was right in 3% of the shift and Vigenère steps (chance:
4%), the arithmetic in 25%, the letter at the position in 12% — so 0% of train ciphers executed.

This trace turns each silent step into a copy the model can make from its own context:

* ``positions: k=0 w=1 o=2 ...`` — the alphabet spelled out with each letter's position (for
  keyword ciphers also ``table positions: ...``), written once after the key line;
* one ``step`` line per letter: the letter's entry copied from the list, the arithmetic with the
  reduction into 0..25 as its own step, the result's entry copied back from the list:
  ``step v=6: 6 - 22 = -16, -16 + 26 = 10 -> x=10``.

``lookup``: the indexed trace with both lookups made *forward* copies. Measured on the CPU
(seed 0 of ``configs/claims/ciphers_robustness.yaml``'s stage 1, the indexed trace, 139 step
lines): the letter's position, copied forward from ``v=6``, was right in 56% of the steps, but
the letter at the result's position, a *backward* copy (find ``=10``, write the letter before
it), in 24%; and since the letter came before its position (``-> x=10``), the position agreed
with the arithmetic in only 32%. So this trace adds a second list, ``letters: 0=k 1=w 2=o ...``
(keyword ciphers: of the table or the alphabet, whichever the result is copied from), and ends a step
with the position first, then the letter copied after ``10=``: ``... = 10 -> 10=x``. It also
spells the text (``spelled: z x p u``): a step's letter was the query's next one in only 51% of
the steps, and the query's text is in BPE pieces (``'zxpu'`` is ``z``, ``x``, ``pu``).

``walk`` (shift and Vigenère only): no lookup keyed by a number. Measured with the lookup trace
(stage 1 alone at seed 0 of ``configs/claims/ciphers_robustness.yaml``, 7 epochs, recall 100%):
the lookups keyed by a *letter* held (the letter's position, ``v=6``, right in 87% of the steps),
the one keyed by a *number* failed (the letter after ``22=`` in 9%, near chance). The tokenizer
writes ``22`` as ``2 2``, so ``22=``, ``12=`` and ``2=`` end on the same tokens. This trace
writes the alphabet as a ``ring: k w o ...`` (one letter a token; backwards when decrypting) and
each step as a walk of ``k`` hops along it, each hop the letter after the last one, counted:
``step z: b1 c2 ... m13 -> m``. A Vigenère step first reads its key letter's position from
``positions`` (``key e=9``), a lookup keyed by a letter. Affine and keyword ciphers have no such
walk (a product, a table) and are refused with this trace.

``countdown``: the walk, each hop written with the hops *left* rather than those made:
``step z, k=13: b12 c11 ... m0 -> m`` (a Vigenère step: ``step z, key e=9: ... 0``). Measured
with the walk (stage 1 alone at seed 0, 8 epochs): a hop was right in 93% of the hops, but the
walk stopped after the shift's number of hops in 62%: counting up, the stop needs the count
compared with the shift, a number of one or two digit tokens, at every hop; counting down, the
shift is copied once at the step's head and the stop is always the same, at ``0``.

Any trace may also write the output so far after each step (``running_output``, :func:`out_line`):
spaced one letter a token (``out: o r``) or as the quoted string (``out = 'or'``).

Every line is computed from the behaviour's parameters, never from the instruction text; the
output equals the compact trace's (``tests/test_ciphers.py`` checks all of them on random calls).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

#: a family's trace: (its opening lines, the step of one letter ``(ch, n) -> (out, line)``)
Trace = tuple[list[str], Callable[[str, int], tuple[str, str]]]


def keyword_table(word: str, alphabet: str) -> str:
    """A keyword cipher's table: the keyword's letters, then the alphabet's others, each once."""
    table = ""
    for ch in word + alphabet:
        if ch not in table:
            table += ch
    return table


def keyword_lists(word: str, alphabet: str, enc: bool) -> tuple[str, str]:
    """(the list a keyword step finds its letter in, the list it copies the result from at the
    same position): alphabet to table when encrypting, table to alphabet when decrypting."""
    table = keyword_table(word, alphabet)
    return (alphabet, table) if enc else (table, alphabet)


# --- compact: one line per letter ---------------------------------------------------------------

def compact_shift(alphabet: str, enc: bool, text: str, key: tuple) -> Trace:
    (k,) = key
    sign = "+" if enc else "-"

    def step(ch: str, n: int) -> tuple[str, str]:
        i = alphabet.index(ch)
        j = (i + k) % 26 if enc else (i - k) % 26
        return alphabet[j], f"{ch}: ({i} {sign} {k}) % 26 = {j} -> {alphabet[j]}"

    return [f"text = {text!r}, k = {k}"], step


def compact_affine(alphabet: str, enc: bool, text: str, key: tuple) -> Trace:
    a, b = key
    inv = pow(a, -1, 26)  # also when encrypting: a key without an inverse is refused either way
    lines = [f"text = {text!r}, a = {a}, b = {b}"]
    if not enc:
        lines.append(f"inverse = pow({a}, -1, 26) = {inv}")

    def step(ch: str, n: int) -> tuple[str, str]:
        i = alphabet.index(ch)
        if enc:
            j = (a * i + b) % 26
            return alphabet[j], f"{ch}: ({a} * {i} + {b}) % 26 = {j} -> {alphabet[j]}"
        j = (inv * (i - b)) % 26
        return alphabet[j], f"{ch}: ({inv} * ({i} - {b})) % 26 = {j} -> {alphabet[j]}"

    return lines, step


def compact_keyword(alphabet: str, enc: bool, text: str, key: tuple) -> Trace:
    (keyword,) = key
    table = keyword_table(keyword, alphabet)

    def step(ch: str, n: int) -> tuple[str, str]:
        if enc:
            i = alphabet.index(ch)
            return table[i], f"{ch}: alphabet position {i} -> table[{i}] = {table[i]}"
        i = table.index(ch)
        return alphabet[i], f"{ch}: table position {i} -> alphabet[{i}] = {alphabet[i]}"

    return [f"text = {text!r}, keyword = {keyword!r}", f"table = {table!r}"], step


def compact_vigenere(alphabet: str, enc: bool, text: str, key: tuple) -> Trace:
    (k,) = key
    sign = "+" if enc else "-"

    def step(ch: str, n: int) -> tuple[str, str]:
        s = alphabet.index(k[n % len(k)])
        i = alphabet.index(ch)
        j = (i + s) % 26 if enc else (i - s) % 26
        return alphabet[j], f"{ch}: key {k[n % len(k)]} = {s}, ({i} {sign} {s}) % 26 = {j} -> {alphabet[j]}"

    return [f"text = {text!r}, key = {k!r}"], step


# --- indexed: the compact opening lines, the positions list(s), one written-out step a letter ---

def positions(label: str, letters: str) -> str:
    """``label: k=0 w=1 ...``: each letter with its position, in order."""
    return f"{label}: " + " ".join(f"{c}={i}" for i, c in enumerate(letters))


def reduce(value: int) -> tuple[int, str]:
    """``value`` reduced into 0..25, with the step written out ("" when it is already there)."""
    r = value % 26
    if r == value:
        return r, ""
    if value < 0:
        return r, f", {value} + 26 = {r}"
    return r, f", {value} - {value - r} = {r}"


def shift(alphabet: str, enc: bool, text: str, key: tuple) -> Trace:
    (k,) = key
    sign = "+" if enc else "-"

    def step(ch: str, n: int) -> tuple[str, str]:
        i = alphabet.index(ch)
        value = i + k if enc else i - k
        j, red = reduce(value)
        return alphabet[j], f"step {ch}={i}: {i} {sign} {k} = {value}{red} -> {alphabet[j]}={j}"

    return [*compact_shift(alphabet, enc, text, key)[0], positions("positions", alphabet)], step


def affine(alphabet: str, enc: bool, text: str, key: tuple) -> Trace:
    a, b = key
    inv = pow(a, -1, 26)
    lines = compact_affine(alphabet, enc, text, key)[0]

    def step(ch: str, n: int) -> tuple[str, str]:
        i = alphabet.index(ch)
        if enc:
            j, red = reduce(a * i + b)
            line = f"step {ch}={i}: {a} * {i} + {b} = {a * i + b}{red} -> {alphabet[j]}={j}"
            return alphabet[j], line
        d, red_d = reduce(i - b)  # (inv * (i - b)) % 26 == (inv * ((i - b) % 26)) % 26
        j, red = reduce(inv * d)
        return alphabet[j], (f"step {ch}={i}: {i} - {b} = {i - b}{red_d}, {inv} * {d} = {inv * d}"
                             f"{red} -> {alphabet[j]}={j}")

    return lines + [positions("positions", alphabet)], step


def keyword(alphabet: str, enc: bool, text: str, key: tuple) -> Trace:
    source, target = keyword_lists(key[0], alphabet, enc)

    def step(ch: str, n: int) -> tuple[str, str]:
        i = source.index(ch)
        return target[i], f"step {ch}={i} -> {target[i]}={i}"

    lines = [*compact_keyword(alphabet, enc, text, key)[0], positions("positions", alphabet),
             positions("table positions", keyword_table(key[0], alphabet))]
    return lines, step


def vigenere(alphabet: str, enc: bool, text: str, key: tuple) -> Trace:
    (k,) = key
    sign = "+" if enc else "-"

    def step(ch: str, n: int) -> tuple[str, str]:
        kc = k[n % len(k)]
        s, i = alphabet.index(kc), alphabet.index(ch)
        value = i + s if enc else i - s
        j, red = reduce(value)
        return alphabet[j], (f"step {ch}={i}: key {kc}={s}, {i} {sign} {s} = {value}{red}"
                             f" -> {alphabet[j]}={j}")

    return [*compact_vigenere(alphabet, enc, text, key)[0], positions("positions", alphabet)], step


# --- lookup: the indexed trace with both lookups forward copies ---------------------------------

def letters(label: str, alphabet: str) -> str:
    """``label: 0=k 1=w ...``: each position with its letter, in order (the forward copy of a
    letter from its position)."""
    return f"{label}: " + " ".join(f"{i}={c}" for i, c in enumerate(alphabet))


def one_a_token(text: str, alphabet: str) -> str:
    """``z x p u``: a text one character a token, a character outside the alphabet as its
    literal (``' '``)."""
    return " ".join(c if c in alphabet else repr(c) for c in text)


def spelled(text: str, alphabet: str) -> str:
    """``spelled: z x p u``: the query's text one character a token, since it comes in BPE
    pieces (``'zxpu'`` is ``z x pu``) and a step must start from one letter."""
    return "spelled: " + one_a_token(text, alphabet)


#: the running output's line (``running_output``). Why: with the walk trace and 24
#: demonstrations a train cipher (stage 1 alone at seed 0) every step's letter was right in 20 of
#: 48 queries, but the ``return`` line joined them right in 5 of those 20 (letters dropped,
#: swapped, added): it gathers one letter from each step line, the first of them hundreds of
#: tokens up. Written after each step, the output so far is the ``out`` line two above plus the
#: step's letter, and ``return`` copies the line just above it. Measured (the same stage 1 with
#: these lines): right in 99.4%, and the return joined them in 27%: the join is what fails.
OUT_PREFIX = "out:"

#: the quoted running output's line (``running_output: quoted``): ``out = 'or'``, the code's own
#: variable as it grows. Why: the spaced lines were right (99.4%) and the ``return`` still joined
#: them in 27%, since ``' o r'`` is letters with a leading space each and ``'or'`` one BPE piece;
#: written quoted, each line is the one two above with one letter added inside the same string, so
#: the map from spaced letters to the string's pieces is made one letter at a time, and ``return``
#: copies the last line's string token for token.
QUOTED_PREFIX = "out = "


def out_line(out: str, alphabet: str, quoted: bool = False) -> str:
    """``out: o r``: the output so far one character a token (``'or'`` is one BPE piece, and a
    step adds one letter); with ``quoted``, ``out = 'or'``: the string as ``return`` writes it."""
    if quoted:
        return f"{QUOTED_PREFIX}{out!r}"
    return f"{OUT_PREFIX} " + one_a_token(out, alphabet)


def _flip(step: Callable[[str, int], tuple[str, str]]) -> Callable[[str, int], tuple[str, str]]:
    """An indexed step with its result written position first: ``-> 10=x``, not ``-> x=10``."""
    def forward(ch: str, n: int) -> tuple[str, str]:
        out, line = step(ch, n)
        head, result = line.rsplit(" -> ", 1)
        c, j = result.split("=")
        return out, f"{head} -> {j}={c}"

    return forward


def _forward(indexed: Callable[..., Trace], alphabet: str, enc: bool, text: str,
             key: tuple) -> Trace:
    """The indexed family's trace with the text spelled and a ``letters`` list after its
    positions, and each step's result written position first."""
    lines, step = indexed(alphabet, enc, text, key)
    lines = [*lines[:-1], spelled(text, alphabet), lines[-1]]  # before the positions list
    return [*lines, letters("letters", alphabet)], _flip(step)


def lookup_keyword(alphabet: str, enc: bool, text: str, key: tuple) -> Trace:
    """The positions of the list a step reads from (the alphabet, or the table when
    decrypting) and the letters of the one it copies from."""
    source, target = keyword_lists(key[0], alphabet, enc)
    lines = [*compact_keyword(alphabet, enc, text, key)[0], spelled(text, alphabet),
             positions("positions" if enc else "table positions", source),
             letters("table letters" if enc else "letters", target)]
    return lines, _flip(keyword(alphabet, enc, text, key)[1])


def _lookup(indexed: Callable[..., Trace]) -> Callable[..., Trace]:
    return lambda alphabet, enc, text, key: _forward(indexed, alphabet, enc, text, key)


# --- walk: no lookup keyed by a number; a shift is walked one letter at a time -------------------

def walk_order(alphabet: str, enc: bool) -> str:
    """The order a walk step hops along: the alphabet, or the alphabet backwards to decrypt."""
    return alphabet if enc else alphabet[::-1]


def ring(alphabet: str, enc: bool) -> str:
    """``ring: k w o ...``: the order a step walks (the alphabet, or backwards when decrypting),
    one letter a token, written twice and its first letter once more, so that a walk of up to
    25 hops from any letter is a plain copy of what follows it (no wrap to find) and every
    letter's successor is the same at each of its places but the very last."""
    order = walk_order(alphabet, enc)
    return ("ring: " if enc else "ring back: ") + " ".join(order * 2 + order[0])


def hops(alphabet: str, enc: bool, ch: str, k: int, down: bool = False) -> tuple[str, str]:
    """(the letter ``k`` hops after ``ch`` on the ring, the hops written ``b1 c2 ... m13``, or
    with ``down`` ``b12 c11 ... m0``): each hop the letter after the last on the ring, counted,
    so the walk stops at ``k`` (``down``: at 0)."""
    order = walk_order(alphabet, enc)
    i = order.index(ch)
    return order[(i + k) % 26], " ".join(f"{order[(i + h) % 26]}{k - h if down else h}"
                                         for h in range(1, k + 1))


def _walk_line(head: str, walked: str, out: str) -> str:
    return f"{head}: {walked} -> {out}" if walked else f"{head}: -> {out}"


def walk_shift(alphabet: str, enc: bool, text: str, key: tuple, down: bool = False) -> Trace:
    """``down`` (the countdown trace): the shift copied to the step's head, ``step z, k=13``."""
    (k,) = key

    def step(ch: str, n: int) -> tuple[str, str]:
        out, walked = hops(alphabet, enc, ch, k, down)
        return out, _walk_line(f"step {ch}, k={k}" if down else f"step {ch}", walked, out)

    return [*compact_shift(alphabet, enc, text, key)[0], spelled(text, alphabet),
            ring(alphabet, enc)], step


def walk_vigenere(alphabet: str, enc: bool, text: str, key: tuple, down: bool = False) -> Trace:
    """The key letter's position read from ``positions`` (a lookup keyed by a letter, which the
    lookup trace's steps got right in 87%), then walked like a shift."""
    (k,) = key

    def step(ch: str, n: int) -> tuple[str, str]:
        kc = k[n % len(k)]
        s = alphabet.index(kc)
        out, walked = hops(alphabet, enc, ch, s, down)
        return out, _walk_line(f"step {ch}, key {kc}={s}", walked, out)

    return [*compact_vigenere(alphabet, enc, text, key)[0], spelled(text, alphabet),
            positions("positions", alphabet), ring(alphabet, enc)], step


TRACES = {"compact": {"shift": compact_shift, "affine": compact_affine, "keyword": compact_keyword,
                      "vigenere": compact_vigenere},
          "indexed": {"shift": shift, "affine": affine, "keyword": keyword, "vigenere": vigenere},
          "lookup": {"shift": _lookup(shift), "affine": _lookup(affine), "keyword": lookup_keyword,
                     "vigenere": _lookup(vigenere)},
          "walk": {"shift": walk_shift, "vigenere": walk_vigenere},
          "countdown": {"shift": partial(walk_shift, down=True),
                        "vigenere": partial(walk_vigenere, down=True)}}

#: the traces that walk, and the families they write (a walk has no way to write a product or a
#: table lookup without a position looked up by its number)
WALKS = ("walk", "countdown")
WALKABLE = tuple(TRACES["walk"])
