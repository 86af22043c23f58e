"""What every training stage shares: models to start from, precision, the stage directory.

SFT stages train in :mod:`pbb.training.sft` (a plain loop), RL stages in :mod:`pbb.training.grpo` (TRL's
GRPOTrainer). bf16 autocast is used wherever the hardware supports it (CUDA with bf16, or a CPU
with AVX512-BF16 / AMX), with fp32 master weights.

A stage directory holds ``trainer/`` (checkpoints, deleted when the stage is done), ``model/``
(full weights, or the LoRA adapter), ``metrics.jsonl`` (one line per logged step) and
``done.json`` (written last: its presence means the stage is finished). An interrupted stage
resumes from its last checkpoint.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from rich.console import Console

from pbb import dist
from pbb.jsonio import (
    atomic_write_json,
    iter_jsonl,
    read_json,
    repair_jsonl,
    torn_tail_note,
    write_jsonl,
)

DONE = "done.json"
MODEL = "model"
METRICS = "metrics.jsonl"
console = Console(stderr=True)


def is_done(stage_dir: Path) -> bool:
    return (Path(stage_dir) / DONE).is_file()


def checkpoint_step(stage_dir: Path) -> int | None:
    """The step of the latest resumable checkpoint of a stage, or None."""
    trainer_dir = Path(stage_dir) / "trainer"
    if not trainer_dir.is_dir():
        return None
    steps = [int(p.name.split("-", 1)[1]) for p in trainer_dir.iterdir()
             if p.name.startswith("checkpoint-") and p.name.split("-", 1)[1].isdigit()
             and ((p / "trainer_state.json").is_file() or (p / "state.json").is_file())]
    return max(steps, default=None)


def keep_logs_until(path: Path, step: int) -> None:
    """Drop log lines of steps after ``step``: they are trained again on resume.

    A torn last line (a kill in the middle of a write) is cut first, and logged; any other bad
    line is an error naming ``path:line`` (not a kill's doing, and skipping it would drop every
    line after it).
    """
    path = Path(path)
    if not path.is_file():
        return
    dropped = repair_jsonl(path)
    if dropped:
        console.print(torn_tail_note(path, dropped), markup=False,
                      highlight=False, soft_wrap=True)
    kept = [rec for rec in iter_jsonl(path) if rec.get("step", 0) <= step]
    write_jsonl(path, kept)  # records come back byte for byte: pbb wrote them with dumps


def save_model_atomic(model, tokenizer, stage_dir: Path, state_dict=None) -> Path:
    """Write ``stage_dir/model`` (full weights or a LoRA adapter) through a temporary sibling;
    ``state_dict``: the weights gathered from sharded processes, when the model holds a shard."""
    model_dir = Path(stage_dir) / MODEL
    tmp = Path(stage_dir) / f".{MODEL}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp), safe_serialization=True, state_dict=state_dict)
    tokenizer.save_pretrained(str(tmp))
    shutil.rmtree(model_dir, ignore_errors=True)
    os.replace(tmp, model_dir)
    return model_dir


def finish_stage(stage_dir: Path, info: dict) -> dict:
    """Mark a stage done (``done.json``, written last) and drop its resume checkpoints.

    Under a launcher the main process writes, and no process goes on before it has.
    """
    if dist.is_main():
        atomic_write_json(Path(stage_dir) / DONE, info)
        shutil.rmtree(Path(stage_dir) / "trainer", ignore_errors=True)
    dist.barrier()
    return info


def start_stage(stage_dir: Path, logs: tuple[str, ...] = (METRICS,)) -> Path | None:
    """Create the stage directory; return the checkpoint an interrupted run left, if any.

    Only complete checkpoints count (one cut short by a kill has no ``trainer_state.json``).
    The stage's per-step ``logs`` are cut back to the checkpoint (a torn last line first, see
    :func:`keep_logs_until`), or removed on a fresh start, so a resumed stage logs every step
    exactly once. Under a launcher the main process prepares the directory and every process
    gets the same checkpoint.
    """
    stage_dir = Path(stage_dir)
    step = None
    if dist.is_main():
        stage_dir.mkdir(parents=True, exist_ok=True)
        step = checkpoint_step(stage_dir)
        for name in logs:
            if step is None:
                (stage_dir / name).unlink(missing_ok=True)
            else:
                keep_logs_until(stage_dir / name, step)
    step = dist.broadcast(step)
    return None if step is None else stage_dir / "trainer" / f"checkpoint-{step}"


def stage_info(stage_dir: Path) -> dict:
    return read_json(Path(stage_dir) / DONE)
