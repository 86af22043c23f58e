"""Running sweep points at once: on this machine (``pbb sweep CONFIG --jobs N``) or as Slurm
jobs (``--executor slurm``, through submitit).

Each point is its own ``pbb run`` process (the point's resolved config written to
``<sweep>/points/<point>.yaml``), up to N at a time, with its output in ``<sweep>/logs/<point>.log``
and its pid, start, end and exit code in ``<sweep>/jobs.json``. On a machine with GPUs each
job sees one (``CUDA_VISIBLE_DEVICES``, round robin over the job slots). All points share the
sweep's stage store; a stage two of them need is trained once under a file lock
(:func:`pbb.run.stage_lock`) while the other waits. Running the same command again resumes:
finished points are skipped, unfinished ones start over from their last checkpoints.

With ``--executor slurm`` each point is one job submitted through ``submitit`` (partition,
account, time, GPUs and CPUs per job from the sweep's ``slurm:`` keys); submitit's own files
(scripts, stdout, stderr, pickles) go to ``<sweep>/slurm/``, job ids to ``jobs.json``. pbb waits
for the jobs and then writes the sweep's report. ``PBB_SUBMITIT_CLUSTER=local`` runs the same
path with submitit's local executor (how the tests run it without a cluster).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console

from pbb.config import dump_config
from pbb.errors import PbbError, first_line
from pbb.jsonio import (
    atomic_write_json,
    atomic_write_text,
    cut_torn_tail,
    torn_tail_note,
)

console = Console()
JOBS = "jobs.json"


def _gpus() -> list[str]:
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:  # noqa: BLE001 - no usable torch.cuda: CPU jobs
        return []


def point_command(cfg_file: Path, run_dir: Path, stages: Path) -> list[str]:
    return [sys.executable, "-m", "pbb.cli", "run", str(cfg_file), "--out", str(run_dir),
            "--stages-root", str(stages), "--no-progress"]


def run_local(points: list[dict], out: Path, jobs: int) -> None:
    """Run ``points`` (sweep points with ``name`` and ``config``) ``jobs`` at a time."""
    out = Path(out)
    for d in ("points", "logs"):
        (out / d).mkdir(parents=True, exist_ok=True)
    gpus = _gpus()
    queue = list(points)
    running: dict[int, tuple[subprocess.Popen, dict, int, object]] = {}
    record: dict[str, dict] = {}
    failed = []
    try:
        while queue or running:
            while queue and len(running) < jobs:
                p = queue.pop(0)
                safe = p["name"].replace("/", "_")
                cfg_file = out / "points" / f"{safe}.yaml"
                atomic_write_text(cfg_file, dump_config(p["config"]))
                slot = next(s for s in range(jobs) if s not in {v[2] for v in running.values()})
                env = dict(os.environ)
                if gpus:
                    env["CUDA_VISIBLE_DEVICES"] = gpus[slot % len(gpus)]
                log_path = out / "logs" / f"{safe}.log"
                # a point killed mid-write left half a line: the rerun starts on a line of its own
                dropped = cut_torn_tail(log_path)
                if dropped:
                    console.print(torn_tail_note(log_path, dropped), markup=False,
                                  highlight=False, soft_wrap=True)
                log = open(log_path, "ab")  # noqa: SIM115 - closed when it ends
                proc = subprocess.Popen(point_command(cfg_file, out / "runs" / p["name"], out / "stages"),
                                        stdout=log, stderr=subprocess.STDOUT, env=env)
                running[proc.pid] = (proc, p, slot, log)
                record[p["name"]] = {"pid": proc.pid, "slot": slot, "gpu": env.get("CUDA_VISIBLE_DEVICES"),
                                     "log": f"logs/{safe}.log", "started": time.time(), "exit_code": None}
                atomic_write_json(out / JOBS, record)
                console.print(f"[bold]sweep point[/] {p['name']}: started (pid {proc.pid}, "
                              f"slot {slot}{', gpu ' + gpus[slot % len(gpus)] if gpus else ''})")
            time.sleep(0.5)
            for pid, (proc, p, _, log) in list(running.items()):
                code = proc.poll()
                if code is None:
                    continue
                log.close()
                del running[pid]
                record[p["name"]].update(exit_code=code, ended=time.time())
                atomic_write_json(out / JOBS, record)
                console.print(f"sweep point {p['name']}: "
                              + ("done" if code == 0 else f"[red]failed (exit {code})[/]"))
                if code != 0:
                    failed.append(p["name"])
    except KeyboardInterrupt:
        _stop(running.values())
        raise
    if failed:
        raise PbbError(f"{len(failed)} sweep point(s) failed: {', '.join(failed)} (their logs are "
                       f"in {out / 'logs'}); run the same command again to retry them")


def _stop(jobs) -> None:
    """Ctrl-C in the sweep: pass it on to every running point (each stops as an interrupted
    ``pbb run`` does, resumable), then wait for them, killing any that will not stop."""
    jobs = list(jobs)
    for proc, *_ in jobs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    for proc, _, _, log in jobs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def run_point(cfg_file: str, run_dir: str, stages: str) -> int:
    """One sweep point in a job (what submitit pickles and calls): a plain ``pbb run``."""
    return subprocess.run(point_command(Path(cfg_file), Path(run_dir), Path(stages))).returncode


def run_slurm(points: list[dict], out: Path, slurm) -> None:
    """Submit ``points`` as jobs (one each) through submitit; wait for them all."""
    try:
        import submitit
    except ModuleNotFoundError:
        raise PbbError("--executor slurm needs the submitit package (pip install "
                       "'pbb[slurm]')") from None
    out = Path(out)
    (out / "points").mkdir(parents=True, exist_ok=True)
    cluster = os.environ.get("PBB_SUBMITIT_CLUSTER") or None
    try:
        ex = submitit.AutoExecutor(folder=str(out / "slurm" / "%j"), cluster=cluster)
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
    record: dict[str, dict] = {}
    submitted = []
    for p in points:
        safe = p["name"].replace("/", "_")
        cfg_file = out / "points" / f"{safe}.yaml"
        atomic_write_text(cfg_file, dump_config(p["config"]))
        job = ex.submit(run_point, str(cfg_file), str(out / "runs" / p["name"]), str(out / "stages"))
        record[p["name"]] = {"job_id": str(job.job_id), "cluster": ex.cluster,
                             "log": os.path.relpath(job.paths.stdout, out), "exit_code": None}
        submitted.append((p, job))
        console.print(f"[bold]sweep point[/] {p['name']}: submitted as job {job.job_id}")
    atomic_write_json(out / JOBS, record)
    failed = []
    for p, job in submitted:
        try:
            code = job.result()
        except Exception as e:  # noqa: BLE001 - the job itself failed (killed, timed out...)
            code = f"{type(e).__name__}"
        record[p["name"]]["exit_code"] = code
        atomic_write_json(out / JOBS, record)
        if code != 0:
            failed.append(p["name"])
    if failed:
        raise PbbError(f"{len(failed)} sweep job(s) failed: {', '.join(failed)} (logs in "
                       f"{out / 'slurm'}); run the same command again to retry them")
