"""Working time: a monotonic clock that leaves out the time the process was stopped.

Why: a stage's and an evaluation's seconds feed the plan's rates (:mod:`pbb.experiments.rates`)
and the claims table's CPU cost, and a run stopped with SIGSTOP (``kill -STOP``, Ctrl-Z, a
scheduler suspending a job) kept counting on ``time.time()``: a claims seed paused ~43 min while
the test suite ran recorded its code stage at 3,824 s for ~19 min of work, and this machine's
SFT rate at a quarter of its speed. A stopped process runs no thread, so a thread that wakes
every :data:`TICK` seconds sees a gap far longer than a tick after it is continued: that gap,
less a tick, is taken off. (A machine's suspend already stops ``time.monotonic`` on Linux.)

Use :func:`now` for durations only (``b - a``), never as a date.
"""

from __future__ import annotations

import os
import threading
import time

#: seconds between the watching thread's looks at the clock
TICK = 1.0
#: a gap between two looks this long is a stop, not a busy process: a tick waits milliseconds for
#: the interpreter's lock, and torch and the tokenizers release it while they work
PAUSE = 30.0

_lock = threading.Lock()
_state: dict = {"last": None, "paused": 0.0, "thread": None}


def now() -> float:
    """Seconds of working time since an arbitrary origin: the difference of two calls is the
    time between them less the time this process spent stopped (stops of over :data:`PAUSE`;
    a shorter one counts, to within a tick)."""
    if _state["thread"] is None:
        with _lock:
            if _state["thread"] is None:  # one watching thread, however many first calls
                _state["thread"] = threading.Thread(target=_watch, name="pbb-clock",
                                                    daemon=True)
                _state["thread"].start()
    return _look()


def paused() -> float:
    """Seconds this process has spent stopped, as far as the clock has seen."""
    now()
    return _state["paused"]


def _look() -> float:
    """Read the monotonic clock; a gap since the last look longer than :data:`PAUSE` was a
    stop (a call right after a continue sees it before the watching thread does)."""
    with _lock:
        t = time.monotonic()
        last = _state["last"]
        if last is not None and t - last > PAUSE:
            _state["paused"] += t - last - TICK
        _state["last"] = t
        return t - _state["paused"]


def _watch() -> None:
    while True:
        time.sleep(TICK)
        _look()


def _forked() -> None:
    """A forked child has no watching thread: its first :func:`now` starts one (or a long
    stretch of its work between two calls would read as a stop); a new lock, which a thread of
    the parent may have held at the fork; and the parent's stops kept, so a time read before the
    fork still subtracts right after it."""
    global _lock
    _lock = threading.Lock()
    _state.update(last=None, thread=None)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)
