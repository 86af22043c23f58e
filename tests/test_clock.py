"""pbb.clock: working time leaves out the time a process spent stopped (SIGSTOP), so stage and
evaluation seconds, the plan's rates and the claims' CPU cost count work, not pauses."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from types import SimpleNamespace

import pytest

from pbb import clock


@pytest.fixture
def fake_time(monkeypatch):
    """The clock on a monotonic time the test sets (its module's only: nothing else's time
    moves), with no watching thread."""
    now = {"t": 1000.0}
    monkeypatch.setattr(clock, "time", SimpleNamespace(monotonic=lambda: now["t"],
                                                       sleep=time.sleep))
    monkeypatch.setattr(clock, "_state", {"last": None, "paused": 0.0, "thread": "none"})
    return now


def test_a_gap_longer_than_a_pause_is_taken_off(fake_time):
    start = clock.now()
    for _ in range(5):  # the watching thread's looks, a tick apart
        fake_time["t"] += clock.TICK
        clock.now()
    fake_time["t"] += 600.0  # stopped for ten minutes
    assert clock.now() - start == pytest.approx(5 * clock.TICK + clock.TICK)
    assert clock.paused() == pytest.approx(600.0 - clock.TICK)


def test_a_busy_gap_shorter_than_a_pause_counts(fake_time):
    start = clock.now()
    fake_time["t"] += clock.PAUSE - 1.0  # a tick delayed by a busy process: still working time
    assert clock.now() - start == pytest.approx(clock.PAUSE - 1.0)
    assert clock.paused() == 0.0


CHILD = textwrap.dedent("""
    import sys, time
    from pbb import clock
    clock.TICK, clock.PAUSE = 0.1, 1.5
    start, wall = clock.now(), time.monotonic()
    print("ready", flush=True)
    while time.monotonic() - wall < float(sys.argv[1]):
        time.sleep(0.02)
    working = clock.now()
    paused = clock._state["paused"]  # what that look left: working + paused is its monotonic
    print(working + paused - wall, working - start, paused, flush=True)
""")


def _child(seconds: float, stop_for: float | None) -> tuple[float, float, float]:
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(seconds)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "ready"
    if stop_for is not None:
        time.sleep(0.3)
        os.kill(proc.pid, signal.SIGSTOP)
        time.sleep(stop_for)
        os.kill(proc.pid, signal.SIGCONT)
    out, _ = proc.communicate(timeout=60)
    wall, working, paused = map(float, out.split())
    return wall, working, paused


@pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="no SIGSTOP on this platform")
def test_a_stopped_process_counts_its_work_only():
    wall, working, paused = _child(3.0, stop_for=4.0)
    assert wall >= 4.0  # the stop fell inside the measured span
    assert paused == pytest.approx(4.0, abs=0.6)
    assert working == pytest.approx(wall - paused, abs=0.01)
    assert working < wall - 3.0


@pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="no SIGSTOP on this platform")
def test_a_running_process_counts_all_its_time():
    wall, working, paused = _child(1.0, stop_for=None)
    assert paused == 0.0
    assert working == pytest.approx(wall, abs=0.01)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_forked_child_starts_its_own_clock_and_keeps_the_stops(fake_time):
    start = clock.now()
    fake_time["t"] += 600.0  # a stop the parent has seen
    clock.now()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no thread of the parent's came with it, the parent's stop did
        try:
            fake_time["t"] += 1.0
            ok = clock._state["thread"] is None and clock.now() - start < 10.0
            os.write(write, b"1" if ok else b"0")
        finally:
            os._exit(0)
    try:
        os.waitpid(pid, 0)
        assert os.read(read, 1) == b"1"
    finally:
        os.close(read)
        os.close(write)
