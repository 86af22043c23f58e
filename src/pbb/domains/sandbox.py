"""Run untrusted Python functions on inputs, contained: the parent side of the sandbox.

Each worker is a separate ``python -I`` process (:mod:`pbb.domains.sandbox_worker`) in its own throwaway
directory, with CPU-time, memory, file-size and output limits, an audit hook that refuses
process creation, sockets, native code and writes outside that directory, and blockers on the
clocks and entropy sources. The parent adds a wall-clock watchdog: a worker that does not
answer in time is killed, the function is reported as timed out, and a fresh worker takes the
next one. A worker that dies (``os._exit``, a crash, a limit) is reported the same way. Nothing
a function does can stop the run: every function ends with outputs or with a reason.

Workers are reused, so every budget is per function, fresh for each: the wall clock starts when
its request is sent (after the worker's own start-up) and the worker moves its CPU limit to "what
it has used so far plus ``cpu_seconds``" before each request. No function pays for another.

This is containment for honest mistakes and careless code (infinite loops, fork bombs, huge
allocations, stray writes, network calls), not a security boundary against a determined
attacker; run imports of code you do not trust inside a container or VM as well.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

WORKER = Path(__file__).with_name("sandbox_worker.py")
STARTUP_SECONDS = 60  # for a worker to start (not charged to any function)


@dataclass(frozen=True)
class Limits:
    call_seconds: float = 2.0          # per call (the worker's timer)
    wall_seconds: float = 10.0         # per function, all its inputs (the parent's watchdog)
    cpu_seconds: int = 120             # per function, all its inputs (fresh for each function)
    memory_bytes: int = 1 << 30        # address space of a worker
    file_bytes: int = 1 << 20          # largest file a function may write (in its directory)
    print_chars: int = 1 << 20         # printed output per call
    max_source_chars: int = 100_000    # a function's code
    max_input_chars: int = 10_000      # one input (an argument list)
    max_output_chars: int = 100_000    # repr of one result
    recursion: int = 2000

    def size_problem(self, code: str, inputs: list[str]) -> str | None:
        """Why the code or an input is too long to run, or None. The import checks it before
        parsing anything: a 50 MB "function" would otherwise be parsed, run and stored in full.
        (Not again when stored code is re-run: ``ast.unparse`` may have lengthened it a little.)"""
        if len(code) > self.max_source_chars:
            return (f"the code is {len(code):,} characters, over "
                    f"max_source_chars={self.max_source_chars:,}")
        for k, args in enumerate(inputs):
            if len(args) > self.max_input_chars:
                return (f"input {k + 1} is {len(args):,} characters, over "
                        f"max_input_chars={self.max_input_chars:,}")
        return None


@dataclass
class Outcome:
    """The outputs of one function (reprs, one per input), or why there are none."""

    outputs: list[str] | None
    error: str | None = None


class _Worker:
    def __init__(self, limits: Limits):
        self.limits = limits
        self.dir = tempfile.mkdtemp(prefix="pbb-sandbox-")
        env = {"PATH": "/usr/bin:/bin", "PYTHONHASHSEED": "0", "LC_ALL": "C.UTF-8",
               "HOME": self.dir, "TMPDIR": self.dir}
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-S", str(WORKER), json.dumps(asdict(limits))],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            cwd=self.dir, env=env, start_new_session=True)
        self.buffer = b""
        self.started = False  # the worker says "ready" once, when its set-up is done

    def _line(self, seconds: float) -> bytes | None:
        """The worker's next line; b"" if it died, None (and it is killed) after ``seconds``."""
        deadline = time.monotonic() + seconds
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                self.close()
                return None
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    return b""
                self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line

    def ask(self, code: str, name: str, inputs: list[str]) -> Outcome:
        if not self.started:  # wait for the start-up here, so that no function's clock counts it
            line = self._line(STARTUP_SECONDS)
            if not line:
                return Outcome(None, self._death() if line == b"" else
                               f"the sandbox worker did not start within {STARTUP_SECONDS} s")
            self.started = True
        request = json.dumps({"code": code, "name": name, "inputs": inputs}) + "\n"
        try:
            self.proc.stdin.write(request.encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            return Outcome(None, self._death())
        line = self._line(self.limits.wall_seconds)
        if line is None:
            return Outcome(None, f"timed out (more than {self.limits.wall_seconds:g} s of wall "
                                 "clock for its inputs)")
        if not line:
            return Outcome(None, self._death())
        results = json.loads(line)["results"]
        errors = [r["error"] for r in results if not r["ok"]]
        if errors:
            return Outcome(None, errors[0])
        return Outcome([r["output"] for r in results])

    def _death(self) -> str:
        try:
            rc = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            rc = None
        self.close()
        if rc == -signal.SIGXCPU:
            return (f"used more than {self.limits.cpu_seconds} s of CPU time (the CPU limit per "
                    "function)")
        if rc is not None and rc < 0:
            return f"the process was killed by signal {-rc} (a crash or a resource limit)"
        return f"the process exited with code {rc} (os._exit or a crash)"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, 9)
            except ProcessLookupError:
                pass
            self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)


class Sandbox:
    """A pool of workers; :meth:`run_many` keeps going whatever the functions do."""

    def __init__(self, workers: int | None = None, limits: Limits = Limits()):
        self.limits = limits
        self.n = max(1, workers or min(4, os.cpu_count() or 1))
        self._free: list[_Worker] = []

    def _worker(self) -> _Worker:
        while self._free:
            w = self._free.pop()
            if w.alive():
                return w
            w.close()
        return _Worker(self.limits)

    def run(self, code: str, name: str, inputs: list[str]) -> Outcome:
        w = self._worker()
        out = w.ask(code, name, inputs)
        if w.alive():
            self._free.append(w)
        else:
            w.close()
        return out

    def run_many(self, jobs: list[tuple[str, str, list[str]]], progress=None) -> list[Outcome]:
        """Outcomes of many (code, name, inputs) jobs, in order, on ``workers`` processes."""
        results: list[Outcome | None] = [None] * len(jobs)

        def work(i: int) -> None:
            results[i] = self.run(*jobs[i])
            if progress:
                progress()

        with ThreadPoolExecutor(self.n) as pool:
            list(pool.map(work, range(len(jobs))))
        return results  # type: ignore[return-value]

    def close(self) -> None:
        while self._free:
            self._free.pop().close()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
