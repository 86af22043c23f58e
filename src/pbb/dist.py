"""One run across several processes: ``accelerate launch [--config_file F] -m pbb run CONFIG``.

Under the launcher (``WORLD_SIZE`` > 1) every process runs the same ``pbb run``; this module is
what they agree through (torch.distributed, the process group accelerate sets up: NCCL on GPUs,
gloo on CPUs):

* the main process (rank 0) prepares the run directory and the data set, the others wait and
  then read it; only the main process writes run files, stage directories, logs and trackers;
* an SFT stage is trained by all processes together, data parallel (:mod:`pbb.training.sft`): every
  optimizer step takes the same rows it would take in one process, each process the rows
  ``rank::world`` of every batch, and the gradients are summed across processes, so the update
  is the one-process update (tested against a single-process run);
* evaluation is sharded: each process answers the queries ``rank::world`` and the main process
  gathers them, so each query is answered and written exactly once;
* each process uses its own device (``cuda:LOCAL_RANK``, or the CPU).

A plain ``pbb run`` is one process and none of this does anything.
"""

from __future__ import annotations

import os
import time
from pathlib import Path


def world() -> int:
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def launched() -> bool:
    return world() > 1


def rank() -> int:
    return int(os.environ.get("RANK", "0")) if launched() else 0


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0")) if launched() else 0


def is_main() -> bool:
    return rank() == 0


_STATE = None


def init() -> None:
    """Join the launcher's process group (once; nothing without a launcher)."""
    global _STATE
    if launched() and _STATE is None:
        import torch
        from accelerate import PartialState

        # cpu=True on a machine without GPUs: accelerate's multi-CPU state (gloo), which its
        # Accelerator then prepares DDP for (pbb.training.engine)
        _STATE = PartialState(cpu=not torch.cuda.is_available())


def close() -> None:
    """Leave the process group at the end of a launched command (NCCL warns of leaked
    resources otherwise); nothing in a plain run."""
    import sys

    if "torch.distributed" not in sys.modules:
        return
    import torch.distributed as td

    if td.is_available() and td.is_initialized():  # every process is past run()'s last barrier
        td.destroy_process_group()


#: set in a sweep's job given its share of the cores as threads
#: (:func:`pbb.experiments.executors.job_threads`): the rates it measures are a share's
JOB_THREADS = "PBB_JOB_THREADS"
#: the thread-count variables a job is given its share of the cores in (torch's intra-op
#: threads follow OMP_NUM_THREADS, and MKL's where MKL is its BLAS)
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
#: the file a sweep writes its jobs' share of the cores to as jobs end (:func:`follow_share`)
JOB_THREADS_FILE = "PBB_JOB_THREADS_FILE"
#: how often a job reads that file, at most (seconds)
FOLLOW_EVERY = 5.0
_share = {"read": None, "changes": 0}  # when the file was read last; shares taken so far


def follow_share() -> None:
    """In a sweep's job: take the share of the cores the sweep gives it now, as threads. Why:
    a share is set when a job starts (two jobs on 2 cores, one thread each), and a sweep's last
    point, once the others have ended, trained on one core while the other stood idle (the
    ciphers claim's third seed, ~1 h 20 min). Called from the main thread between training
    steps and generation batches (OpenMP's thread count is the calling thread's own); reads
    the file at most every :data:`FOLLOW_EVERY` seconds. Nothing outside a sweep's job."""
    path = os.environ.get(JOB_THREADS_FILE)
    now = time.monotonic()
    if not path or (_share["read"] is not None and now - _share["read"] < FOLLOW_EVERY):
        return
    _share["read"] = now
    try:
        share = int(Path(path).read_text())
    except (OSError, ValueError):  # not written yet, or the sweep has ended: the share stands
        return
    if share < 1 or str(share) == os.environ.get(JOB_THREADS):
        return
    import torch

    torch.set_num_threads(share)
    # the rates this job measures next are this share's; a process it starts gets the share too
    os.environ.update({name: str(share) for name in (JOB_THREADS, *THREAD_VARIABLES)})
    _share["changes"] += 1


def share_changes() -> int:
    """How many times this process took a new share of the cores (:func:`follow_share`): a
    stage or evaluation during which it changed measured no one share's rate."""
    return _share["changes"]


def usable_cores() -> int:
    """The cores this process may run on (its affinity where the OS has one, e.g. a cgroup's
    share on Linux; else the machine's)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def device() -> str:
    import torch

    return f"cuda:{local_rank()}" if torch.cuda.is_available() else "cpu"


def barrier() -> None:
    if launched():
        import torch.distributed as td

        td.barrier()


def broadcast(obj):
    """The main process's ``obj``, on every process."""
    if not launched():
        return obj
    import torch.distributed as td

    box = [obj]
    td.broadcast_object_list(box, src=0)
    return box[0]


def gather(obj) -> list | None:
    """Every process's ``obj``, in rank order, on the main process (None on the others)."""
    if not launched():
        return [obj]
    import torch.distributed as td

    box = [None] * world() if is_main() else None
    td.gather_object(obj, box, dst=0)
    return box


def sum_float(x: float) -> float:
    """``x`` summed over the processes (itself in one process)."""
    if not launched():
        return x
    import torch
    import torch.distributed as td

    t = torch.tensor([x], dtype=torch.float64, device=device())
    td.all_reduce(t)
    return float(t.item())


def on_main(fn) -> None:
    """Run ``fn`` on the main process while the others wait; an error there (a bad config, a
    run directory that holds another run, a disk that is full, a bug) is raised on every
    process, not left to hang them in the broadcast until its timeout: the main process raises
    its own error, the others a :class:`PbbError` that names it."""
    from pbb.errors import PbbError, first_line

    problem, error = None, None
    if is_main():
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - passed on to the other processes, then raised
            if not launched():
                raise
            error = e
            problem = str(e) if isinstance(e, PbbError) else \
                f"the main process failed: {type(e).__name__}: {first_line(e)}"
    problem = broadcast(problem)
    if error is not None:
        raise error
    if problem is not None:
        raise PbbError(problem)
