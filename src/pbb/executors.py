"""Running sweep points at once (``pbb sweep CONFIG --jobs N``).

Each point is its own ``pbb run`` process (the point's resolved config written to
``<sweep>/points/<point>.yaml``), up to N at a time, with its output in ``<sweep>/logs/<point>.log``
and its pid, start, end and exit code in ``<sweep>/jobs.json``. On a machine with GPUs each
job sees one (``CUDA_VISIBLE_DEVICES``, round robin over the job slots). All points share the
sweep's stage store; a stage two of them need is trained once under a file lock
(:func:`pbb.run.stage_lock`) while the other waits. Running the same command again resumes:
finished points are skipped, unfinished ones start over from their last checkpoints.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console

from pbb.config import dump_config
from pbb.errors import PbbError
from pbb.jsonio import atomic_write_json, atomic_write_text

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
            log = open(out / "logs" / f"{safe}.log", "ab")  # noqa: SIM115 - closed when it ends
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
    if failed:
        raise PbbError(f"{len(failed)} sweep point(s) failed: {', '.join(failed)} (their logs are "
                       f"in {out / 'logs'}); run the same command again to retry them")
