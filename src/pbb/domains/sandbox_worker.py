"""The child side of :mod:`pbb.domains.sandbox`: runs untrusted functions, one request per line.

Started as ``python -I sandbox_worker.py LIMITS_JSON`` in a throwaway working directory; imports
only the standard library. Before any user code runs it installs, for good:

* resource limits: address space, CPU seconds, file size, no core files; the CPU limit is moved
  before each request to what the process has used plus the budget, so that every function gets
  the whole budget however many ran in this worker before it;
* an audit hook (cannot be removed) that refuses process creation (fork, exec, spawn,
  subprocess, os.system), sockets, ctypes/native loading, signals to other processes, and any
  write, delete, rename, chmod or mkdir outside the working directory;
* blockers on every clock and entropy source (``time.time``, ``time.clock_gettime``,
  ``time.perf_counter``, ``os.urandom``, ``os.getrandom``, ``datetime.now``, the global
  ``random`` functions (``random.seed`` too), ``random.Random()`` without a seed,
  ``random.SystemRandom``...): reading one raises ``Nondeterministic`` naming it. They are
  installed after the worker's own set-up, which needs none of them afterwards. Each call also
  runs twice in fresh namespaces and must give the same ``repr`` both times (which misses coarse
  reads such as ``clock_gettime() // 100000``: hence the blockers);
* a per-call timer (``SIGALRM``) and a cap on printed output; ``sys.exit`` is just an error.

Protocol: once set up, the worker writes ``{"ready": true}`` (the parent starts no function's
clock before it); then a request line is ``{"code": ..., "name": ..., "inputs": [...]}``, and
the reply line ``{"results": [{"ok": true, "output": "<repr>"} | {"ok": false, "error": "..."}]}``.
Replies go to a private duplicate of the original stdout; fds 1 and 2 point at /dev/null while
user code runs. A crash that kills this process (``os._exit``, a segfault, the memory or CPU
limit) is seen by the parent, which reports it and starts a new worker.
"""

import builtins
import io
import json
import math
import os
import resource
import signal
import sys


class Blocked(BaseException):
    """An operation the sandbox refuses (a BaseException: user ``except Exception`` can't eat it)."""


class Nondeterministic(BaseException):
    pass


class TimeUp(BaseException):
    pass


class OutputLimit(BaseException):
    pass


_FORBIDDEN_EVENTS = {
    "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty",
    "os.kill", "os.killpg", "subprocess.Popen", "pty.spawn", "socket.__new__", "socket.connect",
    "socket.bind", "socket.getaddrinfo", "socket.gethostbyname", "ctypes.dlopen",
    "ctypes.dlsym", "ctypes.cdata", "ctypes.call_function", "os.chdir", "os.fchdir",
    "sys.setprofile", "sys.settrace", "sys.addaudithook", "os.startfile", "os.truncate",
    "os.setuid", "os.putenv", "os.unsetenv", "resource.setrlimit", "resource.prlimit",
    "signal.pthread_kill", "mmap.__new__",
}
_PATH_EVENTS = {"os.remove", "os.rmdir", "os.rename", "os.mkdir", "os.chmod", "os.chown",
                "os.symlink", "os.link", "shutil.rmtree", "shutil.copyfile", "shutil.move",
                "os.utime", "os.chflags"}
_BLOCKED_MODULES = {"ctypes", "_ctypes", "multiprocessing", "subprocess", "socket", "_socket",
                    "ssl", "asyncio", "threading", "_thread", "concurrent", "mmap", "signal",
                    "resource", "pty", "fcntl", "builtins", "gc", "_signal", "faulthandler",
                    "posix", "_random", "_datetime"}  # the last three: ways around the blockers


def _inside(path, root):
    try:
        full = os.path.realpath(os.path.join(root, os.fsdecode(path)))
    except (TypeError, ValueError):
        return False
    return full == root or full.startswith(root + os.sep)


def _install_hook(root, armed):
    def hook(event, args):
        if not armed[0]:
            return
        if event in _FORBIDDEN_EVENTS:
            raise Blocked(f"{event} is not allowed in the sandbox")
        if event == "import" and args and str(args[0]).split(".")[0] in _BLOCKED_MODULES:
            raise Blocked(f"import {args[0]} is not allowed in the sandbox")
        if event == "open" and args:
            path, mode = args[0], args[1] if len(args) > 1 else "r"
            flags = args[2] if len(args) > 2 and isinstance(args[2], int) else 0
            writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC))
            if writes and not (isinstance(path, int) or _inside(path, root)):
                raise Blocked(f"writing {path!r} outside the sandbox directory")
        if event in _PATH_EVENTS:
            for p in args[:2]:
                if isinstance(p, (str, bytes, os.PathLike)) and not _inside(p, root):
                    raise Blocked(f"{event} on {p!r} outside the sandbox directory")

    sys.addaudithook(hook)


def _block_nondeterminism():
    """Make every read of a clock or of entropy raise: its value differs between runs, and the
    run-twice check misses coarse reads (``clock_gettime() // 100000`` is the same twice)."""
    import datetime
    import random
    import time

    def blocker(what):
        def f(*a, **k):
            raise Nondeterministic(f"{what} reads the clock or random state")
        return f

    for name in ("time", "time_ns", "perf_counter", "perf_counter_ns", "monotonic",
                 "monotonic_ns", "process_time", "process_time_ns", "thread_time",
                 "thread_time_ns", "clock_gettime", "clock_gettime_ns", "ctime", "localtime",
                 "gmtime", "asctime", "strftime"):
        if hasattr(time, name):
            setattr(time, name, blocker(f"time.{name}"))
    for name in ("random", "randint", "randrange", "choice", "choices", "shuffle", "sample",
                 "uniform", "gauss", "normalvariate", "getrandbits", "randbytes", "triangular",
                 "betavariate", "expovariate", "lognormvariate", "vonmisesvariate",
                 "paretovariate", "weibullvariate", "getstate", "binomialvariate"):
        if hasattr(random, name):
            setattr(random, name, blocker(f"random.{name}"))
    seed = random.Random.seed

    def seed_given(self, a=None, version=2):  # random.Random(5) is fine; random.Random() is not
        if a is None:
            raise Nondeterministic("random.Random() without a seed reads the clock or random state")
        seed(self, a, version)

    random.Random.seed = seed_given
    random.seed = blocker("random.seed")  # the global state: its other functions are blocked
    for name in ("__init__", "random", "getrandbits", "randbytes"):
        setattr(random.SystemRandom, name, blocker("random.SystemRandom"))
    random._urandom = os.urandom = blocker("os.urandom")
    os.getrandom = blocker("os.getrandom")
    os.times = blocker("os.times")

    class FrozenDatetime(datetime.datetime):
        now = classmethod(blocker("datetime.now"))
        utcnow = classmethod(blocker("datetime.utcnow"))
        today = classmethod(blocker("datetime.today"))

    class FrozenDate(datetime.date):
        today = classmethod(blocker("date.today"))

    datetime.datetime = FrozenDatetime
    datetime.date = FrozenDate


class _CappedText(io.TextIOBase):
    def __init__(self, cap):
        self.left = cap

    def write(self, s):
        self.left -= len(s)
        if self.left < 0:
            raise OutputLimit("printed more than the sandbox's output limit")
        return len(s)

    def writable(self):
        return True


def _guarded_import(name, globals=None, locals=None, fromlist=(), level=0):
    if name.split(".")[0] in _BLOCKED_MODULES:  # also those already loaded (no audit event then)
        raise Blocked(f"import {name} is not allowed in the sandbox")
    return _real_import(name, globals, locals, fromlist, level)


_real_import = builtins.__import__
#: loaded before user code runs, so importing them costs nothing per call
_PRELOADED = ("math", "itertools", "collections", "functools", "heapq", "bisect", "string", "re",
              "operator", "fractions", "decimal", "statistics", "copy", "typing", "dataclasses",
              "enum", "textwrap", "unicodedata", "array", "numbers", "cmath", "hashlib", "base64")


def _call(code, name, args_src, limits):
    """One call in a fresh namespace: the repr of the result, or raises."""
    # a fresh copy per call: one function cannot rebind a builtin for the next
    namespace = {"__name__": "__sandbox__",
                 "__builtins__": {**vars(builtins), "__import__": _guarded_import}}
    exec(compile(code, "<function>", "exec"), namespace)
    if not callable(namespace.get(name)):
        raise NameError(f"the code defines no function {name!r}")
    call = compile(f"{name}({args_src})", "<input>", "eval")
    result = eval(call, namespace)
    text = repr(result)
    if len(text) > limits["max_output_chars"]:
        raise OutputLimit(f"the result's repr is {len(text):,} characters, over "
                          f"max_output_chars={limits['max_output_chars']:,}")
    return text


def _on_alarm(signum, frame):
    raise TimeUp("took longer than the per-call time limit")


def _fresh_cpu_budget(seconds):
    """Let the next request use ``seconds`` of CPU time. RLIMIT_CPU counts the whole process,
    and a worker serves many functions: a fixed limit would charge each for its predecessors."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)  # kept: it could not be raised again
    soft = math.ceil(usage.ru_utime + usage.ru_stime + seconds)
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def _run_one(code, name, args_src, limits):
    outs = []
    for _ in range(2):  # twice in fresh namespaces: the same repr or it is non-deterministic
        signal.setitimer(signal.ITIMER_REAL, limits["call_seconds"])
        try:
            outs.append(_call(code, name, args_src, limits))
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    if outs[0] != outs[1]:
        raise Nondeterministic(f"two runs gave {outs[0][:60]} and {outs[1][:60]}")
    return outs[0]


def main():
    limits = json.loads(sys.argv[1])
    root = os.path.realpath(os.getcwd())
    mem = limits["memory_bytes"]
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    _fresh_cpu_budget(limits["cpu_seconds"])  # for the set-up; again before each request
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits["file_bytes"], limits["file_bytes"]))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an oversized write fails instead of killing
    signal.signal(signal.SIGALRM, _on_alarm)
    sys.setrecursionlimit(limits["recursion"])
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    requests = os.fdopen(os.dup(0), "r")
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):  # user code sees an empty stdin and prints into the void
        os.dup2(devnull, fd)
    sys.stdin = io.StringIO("")
    armed = [False]
    for module in _PRELOADED:
        __import__(module)
    _block_nondeterminism()
    _install_hook(root, armed)
    replies.write(json.dumps({"ready": True}) + "\n")
    for line in requests:
        req = json.loads(line)
        _fresh_cpu_budget(limits["cpu_seconds"])
        results = []
        for args_src in req["inputs"]:
            sys.stdout = sys.stderr = _CappedText(limits["print_chars"])
            armed[0] = True
            try:
                results.append({"ok": True, "output": _run_one(req["code"], req["name"], args_src,
                                                               limits)})
            except SystemExit as e:
                results.append({"ok": False, "error": f"called sys.exit({e.code!r})"})
            except RecursionError:
                results.append({"ok": False, "error": "RecursionError: recursion too deep"})
            except MemoryError:
                results.append({"ok": False, "error": "MemoryError: over the memory limit"})
            except BaseException as e:  # noqa: BLE001 - anything user code raises is a result
                results.append({"ok": False, "error": f"{type(e).__name__}: {str(e)[:200]}"})
            finally:
                armed[0] = False
                sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
                sys.stdin = io.StringIO("")
        replies.write(json.dumps({"results": results}) + "\n")


if __name__ == "__main__":
    main()
