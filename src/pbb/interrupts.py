"""SIGTERM stops pbb as Ctrl-C does.

``kill PID``, ``timeout``, ``docker stop``, a scheduler's preemption and a sweep stopping its
points all send SIGTERM, and by default it ends Python on the spot: no ``finally`` runs, so a
``pbb sweep --jobs N`` left its points training as orphans (a rerun then ran each point twice at
once) and a ``vllm serve`` it had started kept its GPU. :func:`install` turns the first SIGTERM
into the ``KeyboardInterrupt`` Ctrl-C raises, so the same clean-up runs and the same "run the
same command again" line is printed; :data:`received` says which signal it was (the exit code
is 128 + its number, as a shell reports it). Later SIGTERMs are ignored, so a second one (a
process group signalled, then each process again) cannot cut that clean-up short; SIGKILL still
ends it.
"""

from __future__ import annotations

import signal

#: the signal that stopped pbb: SIGINT (Ctrl-C) unless :func:`install`'s handler saw SIGTERM
received = signal.SIGINT


def _on_sigterm(signum, frame) -> None:
    global received
    received = signal.Signals(signum)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


def install() -> None:
    """Make SIGTERM raise ``KeyboardInterrupt`` (once) in this process."""
    signal.signal(signal.SIGTERM, _on_sigterm)


def exit_code() -> int:
    """What a shell reports for a process ended by :data:`received`: 130 or 143."""
    return 128 + int(received)
