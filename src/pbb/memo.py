"""Work a plan of many points would repeat for each of them, done once inside :func:`memoized`.

Why: ``pbb claims --gpu --plan`` plans each point of each claim as ``pbb run`` would run it, and
most points of a claim share their data set: it was generated again for each point, each
point's curricula and every curriculum its stage settings might name were built again from
the same rows (a seeded RNG a row), and each evaluation's key hashed the whole data set again.
That repetition was most of a two-minute plan of one claim. Inside the block each of these is
made once and handed to every later caller, who must not change it; outside it (every run)
nothing is kept. A value made for an object (a data set) is kept with that object, so the
object's ``id`` is never taken for another's.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")

#: what :func:`once` made in the current block, by (owner's id, key): (owner, value)
_MEMO: dict[tuple, tuple[object, object]] | None = None


@contextmanager
def memoized() -> Iterator[None]:
    """Within the block, :func:`once` makes each value once; released at the outermost end."""
    global _MEMO
    outer = _MEMO is not None
    if not outer:
        _MEMO = {}
    try:
        yield
    finally:
        if not outer:
            _MEMO = None


def once(owner: object, key: tuple[Hashable, ...], make: Callable[[], T]) -> T:
    """``make()``; inside :func:`memoized`, the value it made before for ``owner`` (an object
    the value derives from, or None) and ``key``."""
    if _MEMO is None:
        return make()
    full = (None if owner is None else id(owner), *key)
    kept = _MEMO.get(full)
    if kept is None or kept[0] is not owner:
        kept = _MEMO[full] = (owner, make())
    return kept[1]  # type: ignore[return-value]
