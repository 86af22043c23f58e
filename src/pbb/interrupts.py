"""SIGTERM stops pbb as Ctrl-C does, and one stop is one interrupt.

``kill PID``, ``timeout``, ``docker stop``, a scheduler's preemption and a sweep stopping its
points all send SIGTERM, and by default it ends Python on the spot: no ``finally`` runs, so a
``pbb sweep --jobs N`` left its points training as orphans (a rerun then ran each point twice at
once) and a ``vllm serve`` it had started kept its GPU. :func:`install` turns the first SIGTERM
into the ``KeyboardInterrupt`` Ctrl-C raises, so the same clean-up runs and the same "run the
same command again" line is printed; :data:`received` says which signal it was (the exit code
is 128 + its number, as a shell reports it).

The clean-up the first signal starts (a checkpoint, a lock let go, a server stopped) is not cut
short by the signals that follow it: every later SIGTERM is ignored (a process group signalled,
then each process again), and so is a SIGINT within :data:`REPEAT_SECONDS` of the first signal,
which is the same Ctrl-C again: a terminal signals the whole process group, so a ``--jobs``
sweep's points get it from the terminal and once more from the sweep passing it on. A Ctrl-C
pressed later still interrupts the clean-up (the way to give up on one that hangs), and SIGKILL
ends any of it.

Some work must not be cut in the middle: an optimizer step stopped between its parameters'
updates leaves weights no checkpoint can describe, so a stop there cost every step since the
last checkpoint. Inside :func:`deferred` the first stop signal is kept, not raised; the work
asks :func:`take_pending` once the step is whole, saves where it stands, and raises the stop
itself. A Ctrl-C pressed again later still interrupts at once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time

#: the signal that stopped pbb: SIGINT (Ctrl-C) unless :func:`install`'s handler saw SIGTERM
received = signal.SIGINT

#: a SIGINT this soon after the first stop signal is that stop delivered again, not a new one
REPEAT_SECONDS = 2.0

#: when the first stop signal came (``time.monotonic``), None before it
_stopped_at: float | None = None

#: inside :func:`deferred`: a first stop signal is kept for :func:`take_pending`, not raised
_deferring = False

#: a stop signal came inside :func:`deferred` and was not raised yet
_pending = False


def _in_finalizer(frame) -> bool:
    """Whether ``frame`` runs inside a ``__del__``, where an exception is printed and dropped
    ("Exception ignored in ..."): a stop raised there would be lost and the run go on."""
    while frame is not None:
        if frame.f_code.co_name == "__del__":
            return True
        frame = frame.f_back
    return False


def _on_signal(signum, frame) -> None:
    global received, _stopped_at, _pending
    if _stopped_at is None and _in_finalizer(frame):  # the same signal again, a moment later
        threading.Timer(0.05, os.kill, (os.getpid(), signum)).start()
        return
    if _stopped_at is None:
        received, _stopped_at = signal.Signals(signum), time.monotonic()
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if _deferring:
            _pending = True  # raised by the work once its step is whole (see deferred)
            return
        raise KeyboardInterrupt
    if signum == signal.SIGINT and time.monotonic() - _stopped_at >= REPEAT_SECONDS:
        _pending = False  # raised now: the work deferring it is given up too
        raise KeyboardInterrupt  # a Ctrl-C pressed again: give up on the clean-up


def install() -> None:
    """Make the first SIGTERM or SIGINT raise ``KeyboardInterrupt`` in this process, and the
    repeats of it not. A SIGINT ignored at start (a process started from a background shell)
    stays ignored."""
    global received, _stopped_at, _pending
    received, _stopped_at, _pending = signal.SIGINT, None, False
    signal.signal(signal.SIGTERM, _on_signal)
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, _on_signal)


@contextlib.contextmanager
def deferred(enabled: bool = True):
    """Within the block, the first stop signal is kept for :func:`take_pending`, not raised
    (where :func:`install` set the handlers; without them Ctrl-C raises as Python's default
    does). ``enabled=False`` is a plain block: the signal interrupts as anywhere else."""
    global _deferring
    before, _deferring = _deferring, enabled or _deferring
    try:
        yield
    finally:
        _deferring = before


def take_pending() -> bool:
    """Whether a stop came inside :func:`deferred` and was not raised: the caller now owns it,
    saves its work and raises ``KeyboardInterrupt`` (the stop is cleared, so a later run in the
    same process, through the Python API, is not stopped by it)."""
    global _pending
    was, _pending = _pending, False
    return was


def exit_code() -> int:
    """What a shell reports for a process ended by :data:`received`: 130 or 143."""
    return 128 + int(received)
