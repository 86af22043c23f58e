"""CPU throughput of SFT: one process on every core against one process a core, at once.

Why: a sweep's points are independent runs, and on a CPU machine `pbb sweep --jobs N` runs N of
them at once. Whether that pays depends on how well one process's matrix products use all the
cores (torch's intra-op threads) against several processes of one thread each, which only a
measurement says. Each worker trains the same rows (stage 1 of a quickstart-like arithmetic data
set, :func:`bench_sft.rows_for`) with pbb's loop, one epoch; workers wait for each other after
loading the model and encoding the rows, and rows/s counts the training only (and the model's
save at its end, ~0.3 s): for several workers, all their rows over the span from the first one's
start to the last one's end.

It also times one process alone on one job's share of the cores: the last job of a sweep whose
others have ended, had it kept its share (before jobs followed theirs, pbb.dist.follow_share).

Usage: python benchmarks/bench_cpu_jobs.py [--model smollm2-135m-instruct] [--rows 96]
       [--batch 8] [--jobs 2] [--repeat 2]
Prints one line per layout and try, and the ratio of their best (the layouts run one after the
other, alternated: run it with nothing else busy on the machine).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def worker(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    from bench_sft import rows_for

    from pbb.config import TrainConfig
    from pbb.models import load_tokenizer, resolve_model_path
    from pbb.training.sft import SFTRun

    path = resolve_model_path(args.model)
    tok = load_tokenizer(path)
    rows = rows_for(args.rows)
    cfg = TrainConfig(epochs=1, batch_size=args.batch, save_steps=10**9, packing="off")
    with tempfile.TemporaryDirectory() as out:
        run = SFTRun(rows, init=path, base=path, tokenizer=tok, cfg=cfg, stage_dir=out, seed=0,
                     progress=False)  # the model loaded and the rows encoded: not timed
        Path(args.ready).touch()
        deadline = time.time() + 600
        while len(list(Path(args.ready).parent.glob("ready-*"))) < args.of:  # the others too
            if time.time() > deadline:
                sys.exit("the other workers never got ready")
            time.sleep(0.05)
        t0 = time.time()
        run.run()  # the epoch, and the model saved at its end (~0.3 s)
        end = time.time()
    print(json.dumps({"start": t0, "end": end, "rows": len(rows)}), flush=True)


def layout(args, jobs: int, threads: int) -> float:
    """Rows a second of ``jobs`` workers of ``threads`` threads each, run at once."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        procs = [subprocess.Popen(
            [sys.executable, __file__, "--worker", "--threads", str(threads), "--of", str(jobs),
             "--ready", f"{tmp}/ready-{i}", "--model", args.model, "--rows", str(args.rows),
             "--batch", str(args.batch)], stdout=subprocess.PIPE, text=True, env=env)
            for i in range(jobs)]
        outs = [p.communicate()[0] for p in procs]
    if any(p.returncode for p in procs):
        sys.exit("a worker failed")
    spans = [json.loads(o.strip().splitlines()[-1]) for o in outs]
    wall = max(s["end"] for s in spans) - min(s["start"] for s in spans)
    rate = sum(s["rows"] for s in spans) / wall
    print(f"{jobs} process(es) x {threads} thread(s): {rate:.2f} rows/s "
          f"({sum(s['rows'] for s in spans)} rows in {wall:.1f} s)", flush=True)
    return rate


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--rows", type=int, default=96)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--worker", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--of", type=int, default=1)
    ap.add_argument("--ready", default="")
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    cores = os.cpu_count() or 1
    one, many, tail = [], [], []
    for _ in range(args.repeat):  # alternated: a slow spell of the machine hits every layout
        one.append(layout(args, 1, cores))
        many.append(layout(args, args.jobs, max(1, cores // args.jobs)))
        tail.append(layout(args, 1, max(1, cores // args.jobs)))
    print(f"ratio: {max(many) / max(one):.2f} ({args.jobs} processes at once over one on {cores} "
          f"cores, the best of {args.repeat} each)")
    print(f"a sweep's last job, alone: {max(one) / max(tail):.2f}x the rows a second on every "
          f"core as on its share of {max(1, cores // args.jobs)} thread(s) (what following its "
          "share gives it once the other jobs have ended)")


if __name__ == "__main__":
    main()
