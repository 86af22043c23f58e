"""Running sweep points at once: on this machine (``pbb sweep CONFIG --jobs N``) or as Slurm
jobs (``--executor slurm``, through submitit).

Local jobs share the machine's cores: each is given its share as threads (:func:`job_threads`)
unless the user set a thread count (``OMP_NUM_THREADS``, MKL's, OpenBLAS's), and once jobs
have ended with none left to start, the ones still running share their cores (each follows
``<sweep>/job_threads``, :func:`pbb.dist.follow_share`).

Each point is its own ``pbb run`` process (the point's resolved config written to
``<sweep>/points/<point>.yaml``), up to N at a time, with its output in ``<sweep>/logs/<point>.log``
and its pid, start, end and exit code in ``<sweep>/jobs.json`` (points of an earlier run of the
command keep their records there; a point started again gets a new one). ``start_work`` and
``end_work`` are the start and end less the time the sweep's process had been stopped before
them (``kill -STOP`` of the sweep's process group, its jobs with it; :mod:`pbb.clock`): on
them, jobs that ran at once span their work, not the stop, which is what the claims' wall clock
adds up (``claims.wall``). On a machine with GPUs each job sees one (``CUDA_VISIBLE_DEVICES``,
recorded as ``gpu`` in ``jobs.json``), and at most
``--jobs-per-device K`` jobs share a GPU (default 1; ``auto``: as many as fit the GPU's free
memory by :func:`run_memory_estimate`). A job goes to the GPU running the fewest (the lowest
number among equals), so ``--jobs`` up to the GPU count means one GPU each. More jobs than
GPUs x K do not all start: at most GPUs x K run at once, the others wait for a place (said once
at the start). Without GPUs jobs run on the CPU and K does nothing. All points share one stage
store (the sweep's own, or the one ``--stages-root`` names, e.g. the claims' store); a stage two
of them need is trained once under a file lock
(:func:`pbb.store.stage_lock`) while the other waits. Running the same command again resumes:
finished points are skipped, unfinished ones start over from their last checkpoints.

With ``--executor slurm`` each point is one job submitted through ``submitit`` (partition,
account, time, GPUs and CPUs per job from the sweep's ``slurm:`` keys); submitit's own files
(scripts, stdout, stderr, pickles) go to ``<sweep>/slurm/``, job ids to ``jobs.json``. pbb waits
for the jobs and then writes the sweep's report. :data:`SUBMITIT_CLUSTER` names submitit's
executor (the tests set it to ``local`` to run the same path without a cluster).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from pbb import clock, interrupts
from pbb.config import dump_config
from pbb.dist import JOB_THREADS, JOB_THREADS_FILE, THREAD_VARIABLES, usable_cores
from pbb.errors import PbbError, first_line
from pbb.jsonio import (
    atomic_write_json,
    atomic_write_text,
    cut_torn_tail,
    torn_tail_note,
)
from pbb.store import SweepStore, read_jobs

console = Console(soft_wrap=True)  # a message is one line in a log file


GIB = 2**30
AUTO = "auto"
#: submitit's ``cluster`` for ``--executor slurm``: None lets submitit choose (Slurm where there
#: is one); "local" runs the jobs as local processes through the same path
SUBMITIT_CLUSTER: str | None = None


def _gpus() -> list[str]:
    """The GPUs jobs go to, as a job's ``CUDA_VISIBLE_DEVICES`` names them: this process's own
    ``CUDA_VISIBLE_DEVICES`` entries where it is set (a job stays inside the set the sweep was
    given), else ``0 .. n-1``. ``torch.cuda.device_count`` creates no CUDA context here."""
    try:
        import torch

        n = torch.cuda.device_count()
    except Exception:  # noqa: BLE001 - no usable torch.cuda: CPU jobs
        return []
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [v.strip() for v in visible.split(",") if v.strip()][:n]
    return [str(i) for i in range(n)]


def _free_memory() -> list[tuple[int, int]]:
    """(free, total) bytes of each GPU of :func:`_gpus`, in that order, asked in a short child
    process (so that the sweep's own process never holds a CUDA context on any GPU)."""
    code = ("import json, torch; print(json.dumps([torch.cuda.mem_get_info(i) "
            "for i in range(torch.cuda.device_count())]))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       check=False)
    if r.returncode != 0:
        said = r.stderr.strip().splitlines()[-1][:160] if r.stderr.strip() else f"exit {r.returncode}"
        raise PbbError(f"--jobs-per-device auto: could not read the GPUs' free memory ({said}); "
                       "give a number instead")
    return [tuple(x) for x in json.loads(r.stdout.strip().splitlines()[-1])]


def parse_jobs_per_device(value: str | int) -> int | str:
    """``--jobs-per-device``: a whole number >= 1, or ``auto``."""
    text = str(value).strip().lower()
    if text == AUTO:
        return AUTO
    try:
        k = int(text)
    except ValueError:
        k = 0
    if k < 1:
        raise PbbError(f"--jobs-per-device {value!r}: expected a whole number >= 1, or auto")
    return k


def _model_shape(model: str, trust_remote_code: bool = False) -> dict:
    """Parameter count and the sizes the estimate needs, from the model's config (the weights
    are not loaded: the model is built on the meta device)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from pbb.models import resolve_model_path

    c = AutoConfig.from_pretrained(resolve_model_path(model), trust_remote_code=trust_remote_code)
    with torch.device("meta"):
        m = AutoModelForCausalLM.from_config(c, trust_remote_code=trust_remote_code)
    n = sum(p.numel() for p in m.parameters())  # tied weights once
    text = c.get_text_config() if hasattr(c, "get_text_config") else c
    heads = text.num_attention_heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    return {"params": n, "hidden": text.hidden_size, "layers": text.num_hidden_layers,
            "intermediate": getattr(text, "intermediate_size", 4 * text.hidden_size),
            "vocab": text.vocab_size, "kv": (getattr(text, "num_key_value_heads", None) or heads) * head_dim}


PROMPT_TOKENS = 384  # a generous PBB prompt (instruction + CoT prompt), for the KV cache term
OVERHEAD = 1.5 * GIB  # CUDA context, cuBLAS workspace, kernels
MARGIN = 1.25  # the caching allocator's fragmentation, and what the estimate leaves out


def run_memory_estimate(cfg, shape: dict | None = None) -> tuple[int, float]:
    """A rough estimate of the GPU memory one ``pbb run`` of ``cfg`` needs at its peak: bytes,
    and the fraction of a GPU's total memory vLLM reserves on top (0 without vLLM).

    The larger of training and generation, times ``MARGIN``, plus ``OVERHEAD``:

    * training (``train.method: full``): weights, gradients and AdamW's two moments, 16 bytes a
      parameter (8 with ``model_dtype: bf16``); LoRA: the frozen weights (qlora ~0.6 bytes a
      parameter); plus activations of one forward pass of ``train.max_batch_tokens`` tokens
      under bf16 autocast, per layer and token ``22 x hidden + 8 x intermediate`` bytes, and the
      completion logits (10 bytes a vocabulary entry a token);
    * generation (evaluation, recall checks, GRPO rollouts): the model in bf16 after loading in
      fp32 (4 bytes a parameter), the KV cache of ``batch x (PROMPT_TOKENS + max new tokens)``
      tokens in bf16, and one step's fp32 logits.
    """
    shape = shape or _model_shape(cfg.model, cfg.trust_remote_code)
    n, h, layers = shape["params"], shape["hidden"], shape["layers"]
    t = cfg.train
    weight = 2 if cfg.model_dtype == "bf16" else 4
    if t.method == "full":
        state = 4 * weight * n
    else:
        state = (0.6 if t.method == "qlora" else weight) * n * 1.05  # + the adapters' own state
    tokens = t.max_batch_tokens
    if not isinstance(tokens, int):  # ``auto``: what a stage resolves it to on a GPU
        from pbb.training import sft

        tokens = sft.max_batch_tokens(tokens, "cuda")
    train = state + tokens * layers * (22 * h + 8 * shape["intermediate"]) + tokens * shape["vocab"] * 10
    rl = getattr(cfg, "rl", None)
    batch = max(cfg.eval.batch_size, rl.batch_size if rl else 0)
    new = max([*cfg.eval.max_new_tokens.values(), rl.max_completion_length if rl else 0])
    kv = batch * (PROMPT_TOKENS + new) * layers * 2 * shape["kv"] * 2
    gen = 4 * n + kv + batch * shape["vocab"] * 4 * 2
    vllm = 0.0
    if cfg.eval.backend == "vllm":
        vllm = cfg.eval.vllm.gpu_memory_utilization
    if rl is not None and rl.use_vllm and rl.vllm_mode == "colocate":
        vllm = max(vllm, rl.vllm_gpu_memory_utilization)
    return int(MARGIN * max(train, gen) + OVERHEAD), vllm


def device_places(gpus: list[str], jobs_per_device: int | str, points: list[dict]) -> list[int]:
    """How many jobs each GPU takes: ``jobs_per_device`` each, or for ``auto`` as many runs
    as fit 90% of the GPU's free memory now (the largest estimate over ``points``; at least
    one a GPU)."""
    if jobs_per_device != AUTO:
        return [int(jobs_per_device)] * len(gpus)
    estimates = {}
    for p in points:
        cfg = p["config"]
        key = (cfg.model, cfg.model_dtype, cfg.train.method, cfg.train.max_batch_tokens,
               cfg.eval.batch_size, tuple(sorted(cfg.eval.max_new_tokens.items())),
               cfg.eval.backend, cfg.rl.batch_size, cfg.rl.max_completion_length, cfg.rl.use_vllm)
        if key not in estimates:
            try:
                estimates[key] = run_memory_estimate(cfg)
            except PbbError:
                raise
            except Exception as e:  # noqa: BLE001 - a config transformers cannot build...
                raise PbbError(f"--jobs-per-device auto: no memory estimate for model {cfg.model} "
                               f"({first_line(e)}); give a number instead") from None
    need, vllm = max(e[0] for e in estimates.values()), max(e[1] for e in estimates.values())
    places = []
    for gpu, (free, total) in zip(gpus, _free_memory()):
        per_run = need + vllm * total
        k = max(1, int(0.9 * free // per_run))
        places.append(k)
        console.print(f"--jobs-per-device auto: gpu {gpu}: {free / GIB:.1f} of {total / GIB:.1f} "
                      f"GiB free, a run needs about {per_run / GIB:.1f} GiB: {k} job(s)"
                      + (" (it may not fit)" if per_run > 0.9 * free else ""))
    return places


#: in the sweep's folder while its local jobs run: their share of the cores now, in threads
SHARE_FILE = "job_threads"


def job_threads(jobs: int) -> dict[str, str]:
    """Each of ``jobs`` jobs at once its share of this process's cores, as threads, unless the
    user set any of :data:`THREAD_VARIABLES` (then nothing: their setting stands). Why: each
    job's torch would otherwise start a thread per core, N jobs N threads a core; on the 2-core
    machine two one-thread processes at once trained 1.1-1.4x the rows a second of one process
    on both cores (benchmarks/bench_cpu_jobs.py). A job starts on this share; once jobs end with
    none left to start, the others take their cores (:meth:`_LocalJobs.rebalance`)."""
    if any(os.environ.get(name) for name in THREAD_VARIABLES):
        return {}
    share = str(max(1, usable_cores() // max(1, jobs)))
    return {**{name: share for name in THREAD_VARIABLES}, JOB_THREADS: share}


def point_command(cfg_file: Path, run_dir: Path, stages: Path) -> list[str]:
    return [sys.executable, "-m", "pbb", "run", str(cfg_file), "--out", str(run_dir),
            "--stages-root", str(stages), "--no-progress"]


def run_local(points: list[dict], out: Path, jobs: int, jobs_per_device: int | str = 1,
              stages: Path | None = None,
              after_point: Callable[[str], None] | None = None) -> None:
    """Run ``points`` (sweep points with ``name`` and ``config``) ``jobs`` at a time, at most
    ``jobs_per_device`` on each GPU (a number, or ``auto``), their stages in ``stages``
    (default the sweep's own store); ``after_point(name)`` once each has finished (exit 0)."""
    out = Path(out)
    jobs_per_device = parse_jobs_per_device(jobs_per_device)
    gpus = _gpus()
    places = device_places(gpus, jobs_per_device, points) if gpus else []
    jobs = _jobs_at_once(jobs, gpus, places, jobs_per_device)
    sweep = SweepStore(out)
    for d in (sweep.points, sweep.logs):
        d.mkdir(parents=True, exist_ok=True)
    queue = list(points)
    # no more at once than there are points (--jobs 8 for 2 points: 2 at once)
    pool = _LocalJobs(sweep, gpus, places, Path(stages) if stages else sweep.stages,
                      at_once=min(jobs, len(points)), after_point=after_point)
    try:
        while queue or pool.running:
            while queue and len(pool.running) < jobs:
                pool.start(queue.pop(0), jobs)
            pool.rebalance()
            time.sleep(0.5)
            pool.reap()
    except BaseException as e:  # Ctrl-C, SIGTERM, or an error here: no point is left running
        _stop(pool.running.values(), interrupts.received if isinstance(e, KeyboardInterrupt)
              else signal.SIGTERM)
        raise
    finally:
        pool.share_file.unlink(missing_ok=True)
    if pool.failed:
        raise PbbError(f"{len(pool.failed)} sweep point(s) failed: {', '.join(pool.failed)} (their "
                       f"logs are in {sweep.logs}); run the same command again to retry them")


def _jobs_at_once(jobs: int, gpus: list[str], places: list[int], jobs_per_device) -> int:
    """``--jobs``, cut to the places the GPUs have (and said so); a word where
    ``--jobs-per-device`` does nothing."""
    if gpus and jobs > sum(places):
        console.print(f"--jobs {jobs}: {len(gpus)} GPU(s) x "
                      + (f"{places[0]}" if len(set(places)) == 1 else "(" + "+".join(map(str, places)) + ")")
                      + f" job(s) per GPU (--jobs-per-device {jobs_per_device}) = {sum(places)} "
                      f"run at once; the other points wait for a place")
        return sum(places)
    if not gpus and jobs_per_device != 1:
        console.print(f"no GPU here: --jobs-per-device {jobs_per_device} does nothing, the jobs "
                      "run on the CPU")
    return jobs


def _work_time() -> float:
    """Now, less the time this process has spent stopped: one timeline for the jobs of one
    sweep process that leaves its stops out (a later process's times all come after it)."""
    return time.time() - clock.paused()


class _LocalJobs:
    """The sweep points running now, one ``pbb run`` process each: started in a free slot (on
    the GPU running the fewest jobs that has room), reaped when they exit; ``jobs.json``
    records both."""

    def __init__(self, sweep: SweepStore, gpus: list[str], places: list[int], stages: Path,
                 at_once: int = 1, after_point: Callable[[str], None] | None = None):
        self.sweep, self.gpus, self.places, self.stages = sweep, gpus, places, stages
        self.after_point = after_point
        self.threads = job_threads(at_once)  # each job's share of the cores
        self.share_file = sweep.root / SHARE_FILE
        self.share = self.threads.get(JOB_THREADS)
        # CPU jobs follow their share as others end (dist.follow_share); a GPU job's speed is
        # its GPU's (and a share changed mid-stage would cost it its rates for nothing)
        if self.share and not gpus:
            self.threads[JOB_THREADS_FILE] = str(self.share_file.resolve())
            atomic_write_text(self.share_file, self.share + "\n")  # not a killed sweep's
        else:
            self.share = None
        self.busy = [0] * len(gpus)  # running jobs per GPU
        #: pid -> (process, point, slot, its open log, its GPU's index or None)
        self.running: dict[int, tuple[subprocess.Popen, dict, int, object, int | None]] = {}
        self.record = read_jobs(sweep.jobs)  # the points it skips keep theirs
        self.failed: list[str] = []

    def start(self, p: dict, jobs: int) -> None:
        """Start point ``p`` in the lowest of the ``jobs`` slots that is free."""
        sweep, gpus = self.sweep, self.gpus
        cfg_file = sweep.point_config(p["name"])
        atomic_write_text(cfg_file, dump_config(p["config"]))
        slot = next(s for s in range(jobs) if s not in {v[2] for v in self.running.values()})
        env = {**os.environ, **self.threads}
        gpu = None
        if gpus:  # the GPU running the fewest jobs that has room (lowest first)
            gpu = min((d for d in range(len(gpus)) if self.busy[d] < self.places[d]),
                      key=lambda d: (self.busy[d], d))
            self.busy[gpu] += 1
            env["CUDA_VISIBLE_DEVICES"] = gpus[gpu]
        log_path = sweep.point_log(p["name"])
        # a point killed mid-write left half a line: the rerun starts on a line of its own
        dropped = cut_torn_tail(log_path)
        if dropped:
            console.print(torn_tail_note(log_path, dropped), markup=False, highlight=False)
        log = open(log_path, "ab")  # noqa: SIM115 - closed when it ends
        proc = subprocess.Popen(point_command(cfg_file, sweep.run_dir(p["name"]), self.stages),
                                stdout=log, stderr=subprocess.STDOUT, env=env)
        self.running[proc.pid] = (proc, p, slot, log, gpu)
        self.record[p["name"]] = {"pid": proc.pid, "slot": slot,
                                  "gpu": gpus[gpu] if gpu is not None else None,
                                  "log": os.path.relpath(log_path, sweep.root),
                                  "started": time.time(), "start_work": _work_time(),
                                  "exit_code": None}
        atomic_write_json(sweep.jobs, self.record)
        console.print(f"[bold]sweep point[/] {p['name']}: started (pid {proc.pid}, "
                      f"slot {slot}{', gpu ' + gpus[gpu] if gpus else ''})")

    def rebalance(self) -> None:
        """Give the running jobs the cores of those that have ended: each its share of them
        (written to :data:`SHARE_FILE`, which each job follows). Where the user set the threads,
        nothing."""
        if self.share is None or not self.running:
            return
        share = str(max(1, usable_cores() // len(self.running)))
        if share != self.share:
            atomic_write_text(self.share_file, share + "\n")
            console.print(f"sweep: {len(self.running)} job(s) running, {share} thread(s) each")
            self.share = share

    def reap(self) -> None:
        """Record the points that have exited (and free their slots and GPUs)."""
        for pid, (proc, p, _, log, gpu) in list(self.running.items()):
            code = proc.poll()
            if code is None:
                continue
            log.close()
            del self.running[pid]
            if gpu is not None:
                self.busy[gpu] -= 1
            self.record[p["name"]].update(exit_code=code, ended=time.time(),
                                          end_work=_work_time())
            atomic_write_json(self.sweep.jobs, self.record)
            console.print(f"sweep point {p['name']}: "
                          + ("done" if code == 0 else f"[red]failed (exit {code})[/]"))
            if code != 0:
                self.failed.append(p["name"])
            elif self.after_point:
                self.after_point(p["name"])


#: how long a stopped sweep waits for each point before it kills it: more than a point's own
#: clean-up (a ``vllm serve`` it started gets 30 s to stop, :mod:`pbb.evaluation.served`; a
#: training step is finished and checkpointed), so that no point is killed before it has
#: stopped its server (which would keep the GPU)
POINT_STOP_SECONDS = 90


def _stop(jobs, sig: int) -> None:
    """Ctrl-C or SIGTERM in the sweep: pass the same signal ``sig`` on to every running point
    (each stops as an interrupted ``pbb run`` does, resumable; after an error in the sweep,
    SIGTERM), then wait for them, killing any that will not stop. SIGTERM must be passed on: it
    reached this process alone (``kill PID``), and a point started from a background shell
    ignores SIGINT."""
    jobs = list(jobs)
    for proc, *_ in jobs:
        if proc.poll() is None:
            proc.send_signal(sig)
    for proc, _, _, log, _ in jobs:
        try:
            proc.wait(timeout=POINT_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def run_point(cfg_file: str, run_dir: str, stages: str) -> int:
    """One sweep point in a job (what submitit pickles and calls): a plain ``pbb run``."""
    return subprocess.run(point_command(Path(cfg_file), Path(run_dir), Path(stages))).returncode


def run_slurm(points: list[dict], out: Path, slurm, stages: Path | None = None) -> None:
    """Submit ``points`` as jobs (one each) through submitit, their stages in ``stages``
    (default the sweep's own store); wait for them all."""
    try:
        import submitit
    except ModuleNotFoundError:
        raise PbbError("--executor slurm needs the submitit package (pip install "
                       "'pbb[slurm]')") from None
    out, sweep = Path(out), SweepStore(out)
    sweep.points.mkdir(parents=True, exist_ok=True)
    try:
        ex = submitit.AutoExecutor(folder=str(sweep.slurm / "%j"), cluster=SUBMITIT_CLUSTER)
    except Exception as e:  # noqa: BLE001 - no sbatch here, a bad cluster name...
        raise PbbError(f"--executor slurm: {first_line(e)}") from None
    params = {"timeout_min": slurm.time_min, "cpus_per_task": slurm.cpus_per_job,
              "gpus_per_node": slurm.gpus_per_job, "name": "pbb-sweep"}
    if ex.cluster == "slurm":
        params.update({f"slurm_{k}": v for k, v in (("partition", slurm.partition),
                                                     ("account", slurm.account)) if v})
        params.update({f"slurm_{k}": v for k, v in slurm.extra.items()})
    if slurm.mem_gb:
        params["mem_gb"] = slurm.mem_gb
    ex.update_parameters(**params)
    record = read_jobs(sweep.jobs)  # the points it skips keep theirs
    submitted, store = [], str(stages or sweep.stages)
    for p in points:
        cfg_file = sweep.point_config(p["name"])
        atomic_write_text(cfg_file, dump_config(p["config"]))
        job = ex.submit(run_point, str(cfg_file), str(sweep.run_dir(p["name"])), store)
        record[p["name"]] = {"job_id": str(job.job_id), "cluster": ex.cluster,
                             "log": os.path.relpath(job.paths.stdout, out), "exit_code": None}
        submitted.append((p, job))
        console.print(f"[bold]sweep point[/] {p['name']}: submitted as job {job.job_id}")
    atomic_write_json(sweep.jobs, record)
    failed = []
    for p, job in submitted:
        try:
            code = job.result()
        except Exception as e:  # noqa: BLE001 - the job itself failed (killed, timed out...)
            code = f"{type(e).__name__}"
        record[p["name"]]["exit_code"] = code
        atomic_write_json(sweep.jobs, record)
        if code != 0:
            failed.append(p["name"])
    if failed:
        raise PbbError(f"{len(failed)} sweep job(s) failed: {', '.join(failed)} (logs in "
                       f"{sweep.slurm}); run the same command again to retry them")
